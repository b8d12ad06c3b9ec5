"""What an uploaded SVG logo may contain: an allow-list over the parsed document.

A deny-list of dangerous things (<script>, on* handlers, "@import") misses what it did not think of: an
`@IMPORT`, a CSS escape (`@\\69mport`), an href in another namespace. Here every element and attribute
must be one a drawing needs, in the SVG namespace (or one of the design tools' own, which renderers
ignore), and every reference must stay in the document: `#fragment`s, and embedded raster images, which
are returned for the caller to measure. CSS (in <style> and in any attribute) is read with its comments
removed and its escapes decoded before it is checked.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
XML = "http://www.w3.org/XML/1998/namespace"
# Editors' metadata (Inkscape, Sodipodi, Sketch, RDF/Dublin Core/Creative Commons licences): renderers ignore
# these elements and attributes; logos exported from design tools carry them.
EDITOR_NAMESPACES = frozenset({
    "http://www.inkscape.org/namespaces/inkscape",
    "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    "http://www.bohemiancoding.com/sketch/ns",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "http://purl.org/dc/elements/1.1/",
    "http://creativecommons.org/ns#",
    "http://web.resource.org/cc/",
})

_FILTER_PRIMITIVES = frozenset({
    "feBlend", "feColorMatrix", "feComponentTransfer", "feComposite", "feConvolveMatrix", "feDiffuseLighting",
    "feDisplacementMap", "feDistantLight", "feDropShadow", "feFlood", "feFuncA", "feFuncB", "feFuncG", "feFuncR",
    "feGaussianBlur", "feImage", "feMerge", "feMergeNode", "feMorphology", "feOffset", "fePointLight",
    "feSpecularLighting", "feSpotLight", "feTile", "feTurbulence",
})
ELEMENTS = frozenset({
    "svg", "g", "defs", "symbol", "use", "title", "desc", "metadata", "style",
    "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "image",
    "text", "tspan", "textPath",
    "linearGradient", "radialGradient", "stop", "pattern", "clipPath", "mask", "marker", "filter",
    *_FILTER_PRIMITIVES,
})
_ANIMATION = frozenset({"set", "animate", "animateMotion", "animateTransform", "animateColor", "mpath", "discard"})

_PRESENTATION = (
    "alignment-baseline baseline-shift clip clip-path clip-rule color color-interpolation "
    "color-interpolation-filters color-rendering direction display dominant-baseline enable-background fill "
    "fill-opacity fill-rule filter flood-color flood-opacity font font-family font-size font-size-adjust "
    "font-stretch font-style font-variant font-weight image-rendering isolation letter-spacing lighting-color "
    "marker marker-end marker-mid marker-start mask mask-type mix-blend-mode opacity overflow paint-order "
    "shape-rendering stop-color stop-opacity stroke stroke-dasharray stroke-dashoffset stroke-linecap "
    "stroke-linejoin stroke-miterlimit stroke-opacity stroke-width text-anchor text-decoration text-rendering "
    "transform transform-origin unicode-bidi vector-effect visibility white-space word-spacing writing-mode"
)
_GEOMETRY = (
    "id class style lang tabindex x y x1 y1 x2 y2 cx cy r rx ry fx fy fr width height d points pathLength "
    "viewBox preserveAspectRatio version baseProfile href offset gradientUnits gradientTransform spreadMethod "
    "patternUnits patternContentUnits patternTransform clipPathUnits maskUnits maskContentUnits markerWidth "
    "markerHeight markerUnits refX refY orient dx dy rotate textLength lengthAdjust startOffset method spacing "
    "side type media title systemLanguage"
)
_FILTERS = (
    "filterUnits primitiveUnits in in2 result stdDeviation mode operator values k1 k2 k3 k4 tableValues slope "
    "intercept amplitude exponent order kernelMatrix divisor bias targetX targetY edgeMode kernelUnitLength "
    "preserveAlpha surfaceScale diffuseConstant specularConstant specularExponent azimuth elevation z pointsAtX "
    "pointsAtY pointsAtZ limitingConeAngle scale xChannelSelector yChannelSelector radius baseFrequency "
    "numOctaves seed stitchTiles"
)
ATTRIBUTES = frozenset(f"{_PRESENTATION} {_GEOMETRY} {_FILTERS}".split())
_NAMESPACED_ATTRIBUTES = frozenset({
    f"{{{XLINK}}}href", f"{{{XLINK}}}title", f"{{{XLINK}}}type", f"{{{XML}}}space", f"{{{XML}}}lang",
})

_SAFE_HREF = re.compile(r"^\s*(#|data:image/(png|jpeg|gif|webp);base64,)", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?(\*/|$)", re.DOTALL)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(.))", re.DOTALL)
_URL_REF = re.compile(r"url\(\s*['\"]?\s*([^)'\"\s]*)", re.IGNORECASE)


class NotAllowed(ValueError):
    """The document holds something a logo may not; the message says what, for the client."""


def check(root: Element, max_elements: int) -> list[str]:
    """Refuses (NotAllowed) anything not on the lists; returns the embedded images' data: URIs."""
    embedded = []
    for count, element in enumerate(root.iter(), start=1):
        if count > max_elements:
            raise NotAllowed(f"the SVG has more than {max_elements} elements")
        namespace, name = _split(element.tag)
        editor = namespace in EDITOR_NAMESPACES
        if not editor:
            _check_element(namespace, name)
        for key, value in element.attrib.items():
            href = _check_attribute(key, value, name, editor)
            if href is not None and not href.lstrip().startswith("#"):
                embedded.append(href)
        if name == "style" and not editor:
            _check_css(element.text or "")
    return embedded


def decoded_css(text: str) -> str:
    """CSS as a renderer reads it: comments gone, escapes (`\\69`, `\\@`) decoded."""

    def unescape(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return match.group(2)
        code = int(match.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return _CSS_ESCAPE.sub(unescape, _CSS_COMMENT.sub("", text))


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return None, tag


def _check_element(namespace: str | None, name: str) -> None:
    if namespace != SVG:
        raise NotAllowed(f"the SVG has a <{name}> element from another vocabulary ({namespace or 'none'})")
    if name in _ANIMATION:
        raise NotAllowed(f"the SVG animates (<{name}>); a logo is drawn once, animation is not allowed")
    if name not in ELEMENTS:
        raise NotAllowed(
            f"the SVG has a <{name}> element; only drawing elements are allowed "
            "(no scripts, embedded documents, links or animation)"
        )


def _check_attribute(key: str, value: str, element: str, editor: bool) -> str | None:
    """The href's value if the attribute is one; NotAllowed for an attribute not on the list."""
    namespace, name = _split(key)
    if name.lower().startswith("on"):
        raise NotAllowed(f"the SVG has an event handler ({name}); scripts are not allowed")
    if name == "href":
        if namespace not in (None, XLINK):
            raise NotAllowed(f"the SVG has an href in another namespace ({namespace}); only xlink:href and href")
        if not _SAFE_HREF.match(value):
            raise NotAllowed("the SVG refers to an external resource; only #fragments and embedded images are allowed")
        return value
    allowed = (
        editor
        or namespace in EDITOR_NAMESPACES
        or key in _NAMESPACED_ATTRIBUTES
        or (namespace is None and (name in ATTRIBUTES or name.startswith(("data-", "aria-"))))
    )
    if not allowed:
        raise NotAllowed(f"the SVG's <{element}> has a {name} attribute, which is not one a drawing uses")
    _check_css(value)
    return None


def _check_css(text: str) -> None:
    css = decoded_css(text)
    if "@import" in css.lower():
        raise NotAllowed("the SVG's style sheet imports another; external references are not allowed")
    for target in _URL_REF.findall(css):
        if not target.startswith("#"):
            raise NotAllowed("the SVG refers to an external resource in url(); only url(#…) is allowed")
