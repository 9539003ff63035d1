"""Usage records, budgets and the usage service.

migrations  schema of `usage_records` (component `usage`)
store       `UsageStore`: a `UsageSink` on a `Database`, with queries
writer      `UsageWriter`: records into the database in batches, a bad row or an outage
            costing no other record
journal     `Journal`: records on local disk until the database holds them (kill -9, outages)
rows        a record as a bounded row and back
query       filters and dimensions, as SQL for either dialect
csv_export  usage records as RFC 4180 CSV
tags        `TagStage`: `session_id` (128) and `user` (256): length and NUL checks
budget      `BudgetStage`: 402 when a key's budget is spent, charges after
service     the usage gRPC service (REST `GET /v1/usage`, `/v1/usage/export`)
terminal    a plain text table and time parsing for the CLIs
cli         `tokenwire usage`
"""
