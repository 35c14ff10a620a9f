"""Generated protobuf code for the Restate service protocol (do not edit; see scripts/gen_proto.sh)."""
