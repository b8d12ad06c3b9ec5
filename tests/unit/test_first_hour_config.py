"""Issue #14's wrong results that need no running parts: production settings, compose's required
variables, and one contrast rule for every colour pair."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.kit.settings import Settings
from app.qrcodes.style import Style

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?[^}]+\}$")


def test_production_refuses_to_start_without_a_public_base_url(monkeypatch):
    monkeypatch.delenv("QRFLOW_PUBLIC_BASE_URL", raising=False)
    with pytest.raises(ValidationError, match="set QRFLOW_PUBLIC_BASE_URL in production"):
        Settings(_env_file=None, environment="production", api_host="0.0.0.0")
    given = Settings(_env_file=None, environment="production", public_base_url="https://qr.example.com/")
    assert given.public_base_url == "https://qr.example.com"
    # Development keeps its guess: the address `qrflow up` listens on.
    assert Settings(_env_file=None, api_port=18900).public_base_url == "http://127.0.0.1:18900"


def test_compose_requires_the_public_base_url_everywhere_and_the_metrics_token_for_the_api():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ours = {name: s for name, s in services.items() if s.get("image", "").startswith("qrflow")}
    for name, service in ours.items():
        value = service["environment"].get("QRFLOW_PUBLIC_BASE_URL", "")
        assert (m := REQUIRED.match(value)) and m["name"] == "QRFLOW_PUBLIC_BASE_URL", (name, value)
    token = ours["api"]["environment"].get("QRFLOW_METRICS_TOKEN", "")
    assert (m := REQUIRED.match(token)) and m["name"] == "QRFLOW_METRICS_TOKEN", token


@pytest.mark.parametrize(
    ("style", "field"),
    [
        ({"dark": "#eeeeee", "light": "#ffffff"}, "dark"),  # the unreadable code
        ({"dark": "#777777", "light": "#888888"}, "dark"),
        ({"dark": "#ffffff", "light": "#000000"}, "dark"),  # inverted: as refused as data_dark would be
        ({"data_dark": "#eeeeee"}, "data_dark"),  # the rule that was already there, unchanged
    ],
)
def test_every_colour_pair_has_the_same_contrast_rule(style, field):
    with pytest.raises(ValidationError) as refused:
        Style.model_validate(style)
    (error,) = refused.value.errors()
    assert error["loc"] == (field,)
    assert "contrast" in error["msg"] or "darker" in error["msg"], error["msg"]


def test_a_stored_style_loads_whatever_its_contrast_and_is_read_back():
    old = {"dark": "#eeeeee", "light": "#ffffff", "border": 4}
    assert Style.from_stored(old).dark == "#eeeeee"  # codes made before the rule still show and serve
    assert Style.model_validate({"dark": "#333333", "light": "#ffffff"}).read_back
    assert Style.model_validate({"light": "transparent"}).read_back
    assert not Style.model_validate({}).read_back  # plain black on white: segno's output is the reference
