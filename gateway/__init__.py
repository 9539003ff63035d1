"""tokenwire's transcoding gateway: OpenAI-shaped REST and SSE over the gRPC contract."""
