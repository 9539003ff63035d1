"""Rate limits per API key, per organization and per client IP.

base      Rate, Check, Verdict and the `Limiter` protocol
in_process  the in-process limiter (one replica)
redis_limiter  the Redis limiter (one limit across replicas; fail open or closed)
headers   OpenAI's `x-ratelimit-*` headers from a verdict
stage     `LimitStage`: check before the call, count tokens after it
"""
