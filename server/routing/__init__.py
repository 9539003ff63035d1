"""Which endpoint serves a request: catalog, ordering, circuit breakers, statistics, fallback."""
