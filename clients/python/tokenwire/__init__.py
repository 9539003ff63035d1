"""Generated protobuf and gRPC stubs of tokenwire."""
