"""Generated protobuf modules (gen.sh); do not edit."""
