from tests.conftest import wait_until_rendered


def test_create_and_render(gateway, alice):
    r = gateway.post("/v1/qrcodes", json={"kind": "text", "data": {"text": "hello"}}, headers=alice.headers)
    assert r.status_code == 202, r.text
    code = wait_until_rendered(gateway, alice, r.json()["id"])
    assert code["status"] == "ready"
