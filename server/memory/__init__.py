"""Organization memory: short texts recalled into the prompts of an organization's requests.

model       the plain data: `Memory`, `Scope`, `Scored`, `Settings`
retrieval   the `Retriever` interface; SQLite FTS5 (bm25) and PostgreSQL
            full-text (ts_rank_cd) implementations
store       memories and per-organization settings on `Database`
recall      the recall query, the token budget and the delimited block
service     the `MemoryService` gRPC servicer (REST under /v1/memories)
stage       the pipeline `Stage`: recall before, optional storage after
"""
