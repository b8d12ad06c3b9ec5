"""The static cost bound of an SVG logo (app/qrcodes/logo_budget.py) and the limited process that draws it
(app/qrcodes/logo_sandbox.py: real child processes)."""

from __future__ import annotations

import os

import pytest
from defusedxml import ElementTree as SafeET

from app.qrcodes import logo_budget, logo_sandbox
from app.qrcodes.logo_budget import OverBudget
from tests import logo_attacks

OPEN = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 100 100">'


def cost(svg: str | bytes) -> logo_budget.Cost:
    return logo_budget.check(SafeET.fromstring(svg), 100, 100, 1024)


def test_use_fan_out_is_counted_through_every_level():
    # <svg>, <defs>, the top <use>, level 2's <g>; ten <use> of level 1, each a <g> of ten <use> of a <rect>.
    assert cost(logo_attacks.nested_uses(levels=2)).elements == 4 + 10 * (1 + 1 + 10 * 2)
    with pytest.raises(OverBudget, match="22,224 elements"):
        cost(logo_attacks.nested_uses(levels=4))


def test_what_defs_holds_counts_only_where_it_is_used():
    unused = f'{OPEN}<defs>{"<rect/>" * 9_000}</defs><rect/></svg>'
    assert cost(unused).elements == 3


def test_a_reference_cycle_is_refused():
    cycle = f'{OPEN}<g id="a"><use xlink:href="#b"/></g><g id="b"><use href="#a"/></g></svg>'
    with pytest.raises(OverBudget, match="cycle"):
        cost(cycle)


def test_embedded_pixels_count_every_copy():
    assert cost(logo_attacks.embedded_image_used(times=0)).pixels == 0  # in <defs>, never drawn
    with pytest.raises(OverBudget, match="1,006,632,960 pixels"):
        cost(logo_attacks.embedded_image_used(times=60))


def test_markers_count_once_per_vertex():
    marker = f'{OPEN}<marker id="m"><circle r="1"/></marker><path d="{"L1 1 " * 200}" marker-mid="url(#m)"/></svg>'
    assert cost(marker).elements == 4 + 201 * 2  # <svg>, <marker>, <circle>, <path>; the marker at 201 vertices


def test_filters_on_the_allow_list_are_weighed_per_filtered_copy():
    blur = f'{OPEN}<filter id="b"><feGaussianBlur stdDeviation="2"/><feOffset dx="1"/></filter>'
    assert cost(f'{blur}<rect filter="url(#b)"/></svg>').passes == 5
    assert cost(f'{blur}<rect style="fill:red; filter:url(#b)"/><rect filter="url(#b)"/></svg>').passes == 10
    with pytest.raises(OverBudget, match="filters cost about 65 passes"):
        cost(blur + '<rect filter="url(#b)"/>' * 13 + "</svg>")


@pytest.mark.parametrize(
    ("primitive", "message"),
    [
        ('<feImage href="#x"/>', "<feImage>, which is not allowed"),
        ('<feTurbulence numOctaves="11"/>', "numOctaves 11; at most 10"),
        ('<feMorphology radius="5"/>', "feMorphology>'s radius makes a 10,692-pixel window"),
        ('<feConvolveMatrix order="40"/>', "feConvolveMatrix>'s order"),
    ],
)
def test_a_costly_or_unknown_primitive_is_refused_naming_it(primitive, message):
    with pytest.raises(OverBudget, match=message):
        cost(f'{OPEN}<filter id="f">{primitive}</filter><rect filter="url(#f)"/></svg>')


def test_an_unreferenced_filter_costs_nothing():
    assert cost(f'{OPEN}<filter id="f"><feTurbulence numOctaves="99"/></filter><rect/></svg>').passes == 0


CIRCLE = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'
TINY = logo_sandbox.Limits(cpu_seconds=1, wall_seconds=30.0, memory_bytes=256 * 1024 * 1024)


def test_the_sandbox_draws_and_reuses_its_warm_child():
    logo_sandbox.close()  # no warm child of earlier tests in this process (other limits, other children)
    png = logo_sandbox.render_svg(CIRCLE, 64, 64, TINY)
    assert png.startswith(b"\x89PNG")
    idle = logo_sandbox._POOL._idle
    assert len(idle) == 1 and idle[0].process.pid != os.getpid()
    pid = idle[0].process.pid
    logo_sandbox.render_svg(CIRCLE, 32, 32, TINY)
    assert [child.process.pid for child in logo_sandbox._POOL._idle] == [pid]


def test_the_sandbox_stops_a_drawing_at_its_cpu_limit_and_starts_afresh():
    # A niced child on a busy host can take long to spend its second of CPU: the wall clock is not the test.
    patient = logo_sandbox.Limits(cpu_seconds=1, wall_seconds=300.0, memory_bytes=256 * 1024 * 1024)
    with pytest.raises(logo_sandbox.SandboxFailed, match="more than 1 s of CPU time"):
        logo_sandbox.render_svg(logo_attacks.scaled_morphology().decode(), 1024, 1024, patient)
    assert logo_sandbox.render_svg(CIRCLE, 16, 16, TINY).startswith(b"\x89PNG")


def test_the_sandbox_stops_a_drawing_at_its_wall_clock_limit():
    slow = logo_sandbox.Limits(cpu_seconds=60, wall_seconds=0.2, memory_bytes=256 * 1024 * 1024)
    with pytest.raises(logo_sandbox.SandboxFailed, match="longer than 0.2 s"):
        logo_sandbox.render_svg(logo_attacks.scaled_morphology().decode(), 1024, 1024, slow)


def test_the_sandbox_stops_a_drawing_at_its_memory_limit():
    # 16,000² RGBA pixels are ~1 GB: more than the limit lets the child map.
    with pytest.raises(logo_sandbox.SandboxFailed, match="MiB of memory"):
        logo_sandbox.render_svg(CIRCLE, 16_000, 16_000, TINY)
