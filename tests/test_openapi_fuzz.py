"""schemathesis (`st run`, its default checks) against the running gateway's `/openapi.json`.

A real tokenwire with the fake provider, an admin token and one API key. Two
bounded runs (EXAMPLES cases per operation and phase, a fixed seed so CI
repeats itself, one worker, a hard timeout): the admin API with the admin
token, everything else with the key. Every failure is read from the run's
NDJSON report, response included. Allowed: none of `not_a_server_error`,
`response_schema_conformance`, `negative_data_rejection` and the rest;
`positive_data_acceptance` only where DOCUMENTED says why the document cannot
tell (rules across fields, state, or parameters not implemented yet), and
`use_after_free` only for the soft delete in SOFT_DELETES.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.providers.fake import FakeProvider
from tests.conftest import StartService

ADMIN = "admin-token-0123456789"
EXAMPLES = 10
SEED = 20261202
RUN_SECONDS = 300
ADMIN_PATHS = "^/v1/admin/"
CHAT = r"POST /(v1|api/ai)/chat/completions"

# (operation, the refusal's `param`) → why a schema-valid request is refused there.
DOCUMENTED: dict[tuple[str, str], str] = {
    (CHAT, r"top_logprobs"): "needs `logprobs: true`, a rule across two fields",
    (CHAT, r"messages\[\d+\]\.tool_call_id"): "tool messages need it, a rule across fields",
    (CHAT, r"messages\[\d+\]\.content"): "required unless an assistant message calls tools",
    (CHAT, r"messages\[\d+\]\.content\[\d+\]\.\w+"): "a part needs the field its `type` names",
    (CHAT, r"provider\.enforce_distillable_text"): "accepted by the contract, "
    "refused by this server until implemented (README: What the API accepts)",
    (CHAT, r"plugins"): "moderation, web and mistral-ocr need a service the config file "
    "names ([moderation], [search], [ocr]); a plugin's `pdf` and `engine` depend on the server",
    (CHAT, r"trace\.metadata.*"): "at most 16 pairs of at most 256 characters each",
    (CHAT, r"response_format\.json_schema\.schema"): "response-healing needs a valid JSON Schema",
    (CHAT, r"model"): "the auto-router may find no model that fits (README: Plugins)",
    (CHAT, r"provider\.(only|ignore|order|quantizations|max_price.*|data_collection|zdr|sort)"): (
        "preferences that leave no configured provider: they depend on the catalog"
    ),
    (CHAT, r"variables"): "`variables` needs a `template`",
    (CHAT, r"template"): "names a template that must exist",
    (CHAT, r"tool_choice"): "a named tool choice must name one of `tools`",
    (r"POST /v1/templates", r"messages"): "required on create, optional on update: one schema",
    (r"POST /v1/templates", r"messages\[\d+\]\..+"): "the chat message rules above",
    (r"POST /v1/templates", r"name"): "a template name must not be a UUID",
    (r"POST /v1/templates", r"parameters\..+"): "the chat request rules above",
    (r"POST /v1/templates", r"variables.*"): "declared once, and every {{slot}} declared",
    (r"GET /v1/usage(/export)?", r"filter\.end_time"): "must be after `filter.start_time`",
    (r"(POST|PATCH) /v1/agents.*", r"name"): "required on create (one schema with the "
    "update), never a UUID",
    (r"(POST|PATCH) /v1/agents.*", r"model"): "required on create, and never another agent",
    (r"(POST|PATCH) /v1/agents.*", r"tools.*"): "each tool once; `http_fetch` needs "
    "`allowed_hosts`, an MCP server exactly one of `command` and `url`",
    (r"GET /v1/memories", r"after"): "a cursor must name an existing memory",
    (r"POST /v1/admin/(keys|organizations)", r"name"): "printable characters only",
    (r"POST /v1/admin/keys", r"expire_time"): "must be in the future",
    (r"POST /v1/admin/keys/\{key_id\}:rotate", r"key_id"): "a revoked key cannot be rotated",
    (
        r"POST /v1/admin/keys",
        r"default_model|allowed_models|allowed_agents",
    ): "printable, and the default one of the allowed",
    (r".*", r"organization_id header"): "forwarded headers hold printable ASCII only "
    "(the error has no param: matched on its message)",
}


# Operations after which the resource is still readable on purpose (`use_after_free`).
SOFT_DELETES: dict[str, str] = {
    r"DELETE /v1/admin/keys/\{key_id\}": "DELETE revokes the key, as :revoke does (a soft "
    "delete, AIP-164): it stays readable with state `revoked`, its usage still its own",
}


@dataclass(frozen=True)
class Failure:
    check: str
    operation: str
    status: int | None
    param: str
    message: str


@pytest.fixture
async def base_url(start_service: StartService, fake: FakeProvider) -> str:
    service = await start_service([fake], admin_token=ADMIN)
    return f"http://127.0.0.1:{service.http_port}"


async def test_the_openapi_document_holds_against_the_gateway(
    base_url: str, tmp_path: Path
) -> None:
    key = await _api_key(base_url)
    tenant = await _st_run(
        base_url, tmp_path / "tenant", f"Authorization: Bearer {key}", "--exclude-path-regex"
    )
    admin = await _st_run(
        base_url, tmp_path / "admin", f"Authorization: Bearer {ADMIN}", "--include-path-regex"
    )
    failures = [*tenant, *admin]
    by_check = Counter(f.check for f in failures)
    print(f"\nschemathesis failures by check: {dict(by_check)}")
    unexplained = [f for f in failures if not _documented(f)]
    assert unexplained == [], "\n".join(map(str, unexplained[:20]))


async def _api_key(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as http:
        r = await http.post(
            "/v1/admin/keys",
            json={"organization_id": "acme", "create_organization": True},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
    assert r.status_code == 200, r.text
    secret: str = r.json()["secret"]
    return secret


async def _st_run(base_url: str, reports: Path, header: str, admin_paths: str) -> list[Failure]:
    """One bounded `st run`; its figures printed, its failures returned."""
    st = Path(sys.executable).parent / "st"
    reports.mkdir()  # also st's working directory: it keeps a cache there
    process = await asyncio.create_subprocess_exec(
        str(st), "run", f"{base_url}/openapi.json", "--header", header,
        admin_paths, ADMIN_PATHS, "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--no-shrink", "--continue-on-failure", "--request-timeout", "10",
        "--report", "json,ndjson", "--report-dir", str(reports),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=reports,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=RUN_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    summary = json.loads(next(reports.glob("json-*.json")).read_text(encoding="utf-8"))
    assert summary["operations"]["tested"] > 0, output.decode(errors="replace")[-3000:]
    assert summary["errors"] == [], summary["errors"]
    print(
        f"\nst run ({admin_paths} {ADMIN_PATHS}): operations {summary['operations']}, "
        f"cases {summary['test_cases']}, failures "
        f"{[(f['code'], f['title'], f['count']) for f in summary['failures']]}"
    )
    return _failures(next(reports.glob("ndjson-*.ndjson")))


def _failures(ndjson: Path) -> list[Failure]:
    """Every failed check of the run, with the refusal it got."""
    out = []
    for line in ndjson.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if "ScenarioFinished" not in event:
            continue
        recorder = event["ScenarioFinished"]["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            response = (recorder["interactions"].get(case_id) or {}).get("response") or {}
            for check in checks:
                if check["status"] != "success":
                    operation = check["failure_info"]["failure"]["operation"]
                    out.append(_failure(check["name"], operation, response))
    return out


def _failure(check: str, operation: str, response: dict[str, Any]) -> Failure:
    content = response.get("content") or {}
    text = base64.b64decode(content["$base64"]).decode() if "$base64" in content else ""
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        error = {"param": None, "message": text[:200]}
    return Failure(
        check, operation, response.get("status_code"), error["param"] or "", error["message"]
    )


def _documented(f: Failure) -> bool:
    if f.check == "use_after_free":
        return any(re.fullmatch(operation, f.operation) for operation in SOFT_DELETES)
    if f.check != "positive_data_acceptance" or f.status != 400:
        return False
    return any(
        re.fullmatch(operation, f.operation)
        and (re.fullmatch(param, f.param) or (not f.param and re.search(param, f.message)))
        for operation, param in DOCUMENTED
    )
