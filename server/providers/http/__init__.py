"""Upstream providers over HTTP (OpenAI-compatible, Anthropic) and their shared exchange."""
