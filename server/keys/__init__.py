"""API keys, organizations, and who may call what.

    secret      key generation, parsing and hashing (only a hash is stored)
    records     the organization and key records
    validate    checks on admin input (ids, names, limits) as clear 4xx errors
    orgs        organizations on a `Database`
    store       API keys on a `Database`: create, list, revoke, rotate, verify
    ledger      a key's budget and spend (`BudgetStage`'s ledger)
    quotas      a key's and its organization's rate limits (`LimitStage`'s quotas)
    auth        `KeyAuthenticator` (API keys) and `AdminCredential` (the admin token)
    stage       `AuthStage`: sets `ctx.principal`
    admin       the admin gRPC service (REST under /v1/admin)
    cli         `tokenwire keys create|list|revoke|rotate`

Organizations are explicit: created through the admin API
(`POST /v1/admin/organizations`), or together with a key when `CreateKey`
says `create_organization` (the CLI's `--create-org`). Naming an unknown one
anywhere else is a 404.
"""
