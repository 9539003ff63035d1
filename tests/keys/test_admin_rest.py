"""The admin service over REST (`/v1/admin/...`), through the gateway in-process and over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.keys.harness import ADMIN_HEADERS, Served


@pytest.fixture(params=["in-process", "channel"])
async def http(request: pytest.FixtureRequest, served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.http(request.param) as client:
        yield client


async def new_key(
    http: httpx.AsyncClient, org: str = "acme", **fields: object
) -> dict[str, object]:
    body = {"organization_id": org, "create_organization": True, **fields}
    response = await http.post("/v1/admin/keys", json=body, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    created: dict[str, object] = response.json()
    return created


async def test_the_key_lifecycle_over_rest(http: httpx.AsyncClient) -> None:
    org = await http.post(
        "/v1/admin/organizations",
        json={
            "id": "acme",
            "name": "Acme",
            "rate_limit": {"requests": 100, "window_seconds": 3600},
        },
        headers=ADMIN_HEADERS,
    )
    assert org.status_code == 200
    assert org.json()["object"] == "organization" and org.json()["rate_limit"]["requests"] == 100
    created = await new_key(http, name="ci", allowed_models=["fake-echo"], budget_usd=1.5)
    key = created["key"]
    assert isinstance(key, dict) and isinstance(created["secret"], str)
    assert key["object"] == "api_key" and key["state"] == "active" and key["budget_usd"] == 1.5
    assert isinstance(key["create_time"], int)  # int64 as a JSON number

    listed = await http.get("/v1/admin/keys?organization_id=acme", headers=ADMIN_HEADERS)
    got = await http.get(f"/v1/admin/keys/{key['id']}", headers=ADMIN_HEADERS)
    assert listed.json()["data"] == [key] and got.json() == key
    assert created["secret"] not in listed.text + got.text

    rotated = await http.post(f"/v1/admin/keys/{key['id']}:rotate", headers=ADMIN_HEADERS)
    assert (
        rotated.json()["key"]["id"] == key["id"] and rotated.json()["secret"] != created["secret"]
    )

    deleted = await http.delete(f"/v1/admin/keys/{key['id']}", headers=ADMIN_HEADERS)
    assert deleted.status_code == 200 and deleted.json()["state"] == "revoked"
    again = await http.post(f"/v1/admin/keys/{key['id']}:revoke", headers=ADMIN_HEADERS)
    assert again.json()["revoke_time"] == deleted.json()["revoke_time"]


async def test_no_admin_credential_is_401_with_a_challenge(http: httpx.AsyncClient) -> None:
    created = await new_key(http)
    for headers in ({}, {"Authorization": f"Bearer {created['secret']}"}):
        response = await http.get("/v1/admin/keys", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and set(error) == {
            "message",
            "type",
            "param",
            "code",
        }


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/admin/keys", {"organization_id": "nobody"}, 404),
        ("POST", "/v1/admin/keys", {"organization_id": "acme", "budget_usd": -1}, 400),
        ("POST", "/v1/admin/keys", {"organization_id": 42}, 400),
        ("POST", "/v1/admin/keys", {"organisation": "acme"}, 400),
        ("POST", "/v1/admin/organizations", {"id": "acme"}, 409),
        ("POST", "/v1/admin/organizations", {"id": "bad id!"}, 400),
        ("GET", "/v1/admin/keys/key_nope", None, 404),
        ("GET", "/v1/admin/keys?organization_id=nobody", None, 404),
        ("POST", "/v1/admin/keys/key_nope:rotate", {}, 404),
        ("DELETE", "/v1/admin/keys/key_nope", None, 404),
    ],
)
async def test_bad_requests_are_4xx_in_openai_shape(
    http: httpx.AsyncClient, method: str, path: str, body: object, status: int
) -> None:
    await http.post("/v1/admin/organizations", json={"id": "acme"}, headers=ADMIN_HEADERS)
    response = await http.request(method, path, json=body, headers=ADMIN_HEADERS)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
