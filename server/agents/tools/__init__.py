"""Tools an agent runs on the server: built-ins (offline), `http_fetch`, MCP servers."""
