"""The gRPC face: servicers and the one boundary every call passes through."""
