"""tokenwire's gRPC server: auth, limits, templates, memory, routing, providers, usage."""
