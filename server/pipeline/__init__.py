"""One chat request from protobuf to protobuf: context, stages, conversion, assembly, usage."""
