"""Dates at the edges of what Python can represent are a 422, never a 500 (issue #13, item 9)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.integration.test_qrcodes_api import created


def forged_cursor(created_at: str) -> str:
    raw = json.dumps([created_at, str(uuid.uuid4())]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("instant", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_forged_cursor_at_the_edge_of_time_is_422(gateway, alice, instant):
    response = gateway.get("/v1/qrcodes", params={"cursor": forged_cursor(instant)}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "cursor"


EDGES = [
    {"from": "9999-12-30", "to": "9999-12-31T23:00", "tz": "Pacific/Kiritimati", "interval": "hour"},
    {"from": "9999-12-30", "to": "9999-12-31T23:00", "tz": "Pacific/Kiritimati", "interval": "day"},
    {"from": "0001-01-01T00:00", "to": "0001-01-02", "tz": "Pacific/Kiritimati", "interval": "hour"},
    {"from": "0001-01-01T00:00", "to": "0001-01-02", "tz": "Pacific/Pago_Pago", "interval": "day"},
    {"from": "9999-12-31T00:00", "to": "9999-12-31T23:59:59", "tz": "Etc/GMT+12", "interval": "hour"},
]


@pytest.mark.parametrize("params", EDGES)
@pytest.mark.parametrize("path", ["analytics", "analytics.csv"])
def test_analytics_at_the_edge_of_time_is_422_or_answered(gateway, alice, params, path):
    code = created(gateway, alice, {"kind": "url", "data": {"url": "https://example.com/edge"}})
    response = gateway.get(f"/v1/qrcodes/{code['id']}/{path}", params=params, headers=alice.headers)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["errors"][0]["field"] in ("from", "to")


@pytest.mark.parametrize("params", EDGES)
def test_workspace_analytics_at_the_edge_of_time_is_422_or_answered(gateway, alice, params):
    params = {key: value for key, value in params.items() if key != "interval"}
    response = gateway.get("/v1/analytics", params=params, headers=alice.headers)
    assert response.status_code in (200, 422), response.text
