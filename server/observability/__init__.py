"""Observability: Prometheus metrics, health and readiness, logs, traces."""
