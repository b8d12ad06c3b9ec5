"""The SVG logo check is an allow-list over the parsed document (issue #13, item 12): what a deny-list
missed is refused, what design tools write is accepted."""

from __future__ import annotations

import pytest

from app.qrcodes.logo_files import LogoRefused, inspect
from app.qrcodes.svg_allowlist import decoded_css

_RECT = '<rect width="10" height="10" fill="#000"/>'


def _svg(body: str, root: str = 'viewBox="0 0 10 10"', namespaces: str = "") -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" {namespaces} {root}>'
        f"{body}</svg>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "namespaces", "reason"),
    [
        # What the string matches of the old check missed:
        ('<style>@IMPORT "https://evil.example/a.css";</style>', "", "imports"),
        ('<style>@\\69mport "https://evil.example/a.css";</style>', "", "imports"),
        ('<style>@imp/**/ort "https://evil.example/a.css";</style>', "", "imports"),
        ("<style>rect { fill: u\\72l(https://evil.example/p) }</style>", "", "url()"),
        ('<rect width="10" height="10" style="fill: \\75 rl(https://evil.example/p)"/>', "", "url()"),
        ('<image e:href="https://evil.example/x.png" width="5" height="5"/>', 'xmlns:e="urn:evil"', "href"),
        ('<h:video src="https://evil.example/v.mp4"/>', 'xmlns:h="http://www.w3.org/1999/xhtml"', "<video>"),
        ('<animateTransform attributeName="transform" type="rotate"/>', "", "animat"),
        ('<a href="#x"><rect width="1" height="1"/></a>', "", "<a>"),
        ('<rect width="10" height="10" formaction="https://evil.example/"/>', "", "formaction"),
        ("<Script>alert(1)</Script>", "", "<Script>"),
        ('<rect width="10" height="10" ONLOAD="alert(1)"/>', "", "event handler"),
    ],
)
def test_what_is_not_on_the_lists_is_refused(body: str, namespaces: str, reason: str) -> None:
    with pytest.raises(LogoRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        inspect("image/svg+xml", _svg(_RECT + body, namespaces=namespaces))


INKSCAPE = _svg(
    '<sodipodi:namedview id="base" pagecolor="#ffffff" inkscape:zoom="1"/>'
    '<metadata><rdf:RDF><cc:Work rdf:about=""><dc:format>image/svg+xml</dc:format></cc:Work></rdf:RDF></metadata>'
    '<g inkscape:label="Layer 1" inkscape:groupmode="layer">' + _RECT + "</g>",
    root='viewBox="0 0 10 10" width="10mm" height="10mm" sodipodi:docname="logo.svg"',
    namespaces=(
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:cc="http://creativecommons.org/ns#" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ),
)
ILLUSTRATOR = _svg(
    '<style type="text/css">.st0{fill:#D32F2F;}</style>'
    '<g id="Layer_1" data-name="Layer 1"><rect class="st0" x="0px" y="0px" width="10" height="10"/></g>',
    root='version="1.1" x="0px" y="0px" viewBox="0 0 10 10" style="enable-background:new 0 0 10 10;" '
    'xml:space="preserve"',
)
FIGMA = _svg(
    '<g filter="url(#shadow)"><circle cx="5" cy="5" r="4" fill="url(#paint)"/></g><defs>'
    '<filter id="shadow" x="0" y="0" width="10" height="10" filterUnits="userSpaceOnUse" '
    'color-interpolation-filters="sRGB"><feOffset in="SourceAlpha" dy="1" result="moved"/>'
    '<feGaussianBlur stdDeviation="0.5" result="shadow"/><feBlend mode="normal" in="SourceGraphic" in2="shadow"/>'
    '</filter><linearGradient id="paint" x1="0" y1="0" x2="10" y2="10" gradientUnits="userSpaceOnUse">'
    '<stop stop-color="#1565C0"/><stop offset="1" stop-color="#0D47A1"/></linearGradient></defs>',
    root='width="10" height="10" viewBox="0 0 10 10" fill="none"',
)


@pytest.mark.parametrize("document", [INKSCAPE, ILLUSTRATOR, FIGMA], ids=["inkscape", "illustrator", "figma"])
def test_what_design_tools_write_is_accepted(document: bytes) -> None:
    assert inspect("image/svg+xml", document).width > 0


def test_css_is_read_as_a_renderer_reads_it() -> None:
    assert decoded_css("@\\69 mport u\\72l(/**/x) \\@") == "@import url(x) @"
    assert decoded_css("\\0 \\110000 ") == "\ufffd\ufffd"
