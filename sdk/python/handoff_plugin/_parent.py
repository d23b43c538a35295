"""The parent's pid, taken when the SDK is first imported, before its slow
imports (grpc, cryptography: a few hundred milliseconds): a host that dies
while they run is still noticed by serve()'s parent watch, which compares
against this pid."""

import os

PID = os.getppid()
