"""The Location of a redirect to a non-ASCII target: the host in IDNA, the rest percent-encoded (#13 item 12)."""

from __future__ import annotations

from tests.integration.test_qrcodes_api import create
from tests.integration.test_redirect import dynamic_code, scan


def test_a_non_ascii_host_is_sent_in_punycode(gateway, alice):
    code = dynamic_code(gateway, alice, target="https://bücher.example:8443/straße?q=ä#teil-ü")
    response = scan(gateway, code["slug"])
    assert response.status_code == 302
    assert response.headers["location"] == "https://xn--bcher-kva.example:8443/stra%C3%9Fe?q=%C3%A4#teil-%C3%BC"


def test_an_ascii_target_is_sent_as_it_is(gateway, alice):
    code = dynamic_code(gateway, alice, target="https://Example.com/Path?q=1")
    assert scan(gateway, code["slug"]).headers["location"] == "https://Example.com/Path?q=1"


def test_a_host_that_is_no_domain_name_is_refused(gateway, alice):
    response = create(gateway, alice, {"kind": "url", "data": {"url": f"https://{'ü' * 70}.example/"}})
    assert response.status_code == 422 and "domain name" in response.text
