"""The Grafana dashboard under deploy/ asks only for metrics tokenwire serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.providers.fake import FakeProvider
from tests.conftest import StartService

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "tokenwire.json"
METRIC = re.compile(r"\b(?:gen_ai|tokenwire)_[a-z_]+\b")
SUFFIXES = ("", "_bucket", "_count", "_sum", "_total")


async def test_every_dashboard_query_names_a_served_metric(start_service: StartService) -> None:
    service = await start_service([FakeProvider()])
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{service.http_port}/metrics")).text
    served = {f.name + s for f in text_string_to_metric_families(text) for s in SUFFIXES}
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    labels = {"gen_ai_request_model", "gen_ai_provider_name", "gen_ai_token_type"}
    assert asked - labels, "the dashboard asks for no metric"
    assert not (asked - labels - served), asked - labels - served
