package pythonsdk
