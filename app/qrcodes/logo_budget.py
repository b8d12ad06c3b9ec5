"""What an SVG logo will cost to draw, bounded from its parsed document before anything draws it.

A few bytes of SVG can cost minutes of resvg (which holds the GIL) and gigabytes: a `<use>` of a `<use>`
multiplies, an embedded image is decoded and scaled again for every copy, a filter primitive costs a pass
over every drawn pixel (feTurbulence one per octave, feMorphology one per pixel of its window), and
every one of these grows with the size it is drawn at. So, on the parsed tree:

- drawn elements: each element counted once for every time it is drawn, references followed
  transitively (`<use>` of `<use>`, url(#…) in attributes and styles, markers once per vertex);
- embedded raster pixels: each embedded image's size, from its header, times the times it is drawn;
- filters: primitives on an allow-list, their parameters within bounds, and a weight for each (in passes
  over the drawn image, measured against resvg: bench/logo_sandbox.py) summed over every filtered copy,
  with window sizes in pixels at the largest size a worker draws the logo.

What a static estimate cannot see (transforms that scale a filter, say) the drawing's own limits catch:
app/qrcodes/logo_sandbox.py, where every SVG is drawn.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

from PIL import Image

# A use can make an SVG draw no more than the file itself may hold (logo_files.MAX_SVG_ELEMENTS).
MAX_DRAWN_ELEMENTS = 10_000
# One embedded image of the largest size logo_files accepts, drawn once.
MAX_EMBEDDED_PIXELS = 4096 * 4096
# Passes over the drawn image: ~0.1 s of CPU each at 1024×1024 on a 2023 laptop core.
MAX_FILTER_PASSES = 60
# Each octave doubles the noise's frequency: past ~10 they add detail finer than a pixel of any logo.
MAX_OCTAVES = 10
# Element nesting plus reference chains: far past any real logo, and well inside Python's recursion limit.
MAX_DEPTH = 200

_SVG = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_URL_ID = re.compile(r"url\(\s*['\"]?\s*#([^)'\"\s]+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_MARKER_PROPERTIES = ("marker-start", "marker-mid", "marker-end", "marker")
# Passes over the drawn image for the primitives whose cost does not depend on their parameters.
_FLAT_WEIGHTS = {
    "feBlend": 1, "feColorMatrix": 1, "feComponentTransfer": 1, "feComposite": 1, "feFlood": 1, "feMerge": 1,
    "feOffset": 1, "feTile": 1, "feDisplacementMap": 2, "feGaussianBlur": 4, "feDropShadow": 5,
    "feDiffuseLighting": 4, "feSpecularLighting": 4,
}
_PRIMITIVE_PARTS = frozenset(
    {"feFuncR", "feFuncG", "feFuncB", "feFuncA", "feMergeNode", "feDistantLight", "fePointLight", "feSpotLight"}
)


class OverBudget(ValueError):
    """The SVG would cost too much to draw; the message says what and how much."""


@dataclass(frozen=True)
class Cost:
    elements: int = 0
    pixels: int = 0
    passes: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.elements + other.elements, self.pixels + other.pixels, self.passes + other.passes)

    def times(self, count: int) -> Cost:
        return Cost(self.elements * count, self.pixels * count, self.passes * count)


def check(root, width: float, height: float, draw_side: int) -> Cost:
    """Raises OverBudget naming the first bound the document passes; returns its cost otherwise.
    `width`×`height` is its intrinsic size, `draw_side` the largest side a worker draws it at."""
    cost = _Estimate(root, draw_side / max(width, height), draw_side).total()
    if cost.elements > MAX_DRAWN_ELEMENTS:
        raise OverBudget(
            f"the SVG draws {cost.elements:,} elements once its <use> and url(#…) references are followed; "
            f"at most {MAX_DRAWN_ELEMENTS:,}"
        )
    if cost.pixels > MAX_EMBEDDED_PIXELS:
        raise OverBudget(
            f"the SVG draws {cost.pixels:,} pixels of embedded images (each image counted every time it is "
            f"drawn); at most {MAX_EMBEDDED_PIXELS:,}"
        )
    if cost.passes > MAX_FILTER_PASSES:
        raise OverBudget(
            f"the SVG's filters cost about {cost.passes:,.0f} passes over a {draw_side}-pixel image; "
            f"at most {MAX_FILTER_PASSES}"
        )
    return cost


class _Estimate:
    def __init__(self, root, px_per_unit: float, draw_side: int) -> None:
        self.root = root
        self.px_per_unit = px_per_unit
        self.draw_side = draw_side
        self.by_id = {element.get("id"): element for element in root.iter() if element.get("id")}
        self.known: dict[int, Cost] = {}
        self.filters: dict[int, float] = {}
        self.visiting: set[int] = set()
        # Style sheets can apply a url(#…) to any number of elements: each counts as applied to all.
        self.every_element = sum(1 for _ in root.iter())
        self.sheet_refs = [
            ref for element in root.iter() if _name(element) == "style" for ref in _URL_ID.findall(element.text or "")
        ]

    def total(self) -> Cost:
        cost = self.cost(self.root, 0)
        for ref in self.sheet_refs:
            cost += self.referenced(ref, 0).times(self.every_element)
        return cost

    def cost(self, element, depth: int) -> Cost:
        key = id(element)
        if key in self.known:
            return self.known[key]
        if depth > MAX_DEPTH:
            raise OverBudget(f"the SVG nests elements and references more than {MAX_DEPTH} deep")
        if key in self.visiting:
            raise OverBudget(f"the SVG's references form a cycle (through <{_name(element)}>)")
        self.visiting.add(key)
        cost = Cost(elements=1, pixels=self.image_pixels(element))
        # What <defs> holds is drawn only where it is referenced, and counted there.
        for child in [] if _name(element) == "defs" else element:
            cost += self.cost(child, depth + 1)
        href = element.get("href") or element.get(_XLINK_HREF) or ""
        if href.startswith("#") and _name(element) != "image":
            cost += self.referenced(href[1:], depth + 1)
        for prop, value in _properties(element):
            for ref in _URL_ID.findall(value):
                copies = _vertices(element) if prop in _MARKER_PROPERTIES else 1
                cost += self.referenced(ref, depth + 1).times(copies)
        self.visiting.discard(key)
        self.known[key] = cost
        return cost

    def referenced(self, ref: str, depth: int) -> Cost:
        target = self.by_id.get(ref)
        if target is None:
            return Cost()
        if _name(target) == "filter":
            return Cost(passes=self.filter_passes(target))
        return self.cost(target, depth)

    def image_pixels(self, element) -> int:
        href = (element.get("href") or element.get(_XLINK_HREF) or "").strip()
        if _name(element) != "image" or not href.lower().startswith("data:"):
            return 0
        try:
            raw = base64.b64decode(href.partition(",")[2], validate=False)
            with Image.open(io.BytesIO(raw)) as image:  # reads the header only
                width, height = image.size
        except Exception:
            raise OverBudget("the SVG embeds an image whose size cannot be read") from None
        return width * height

    def filter_passes(self, filter_element) -> float:
        key = id(filter_element)
        if key not in self.filters:
            bbox_units = filter_element.get("primitiveUnits", "").strip() == "objectBoundingBox"
            scale = self.draw_side if bbox_units else self.px_per_unit
            primitives = [p for p in filter_element.iter() if p is not filter_element]
            self.filters[key] = sum(self.primitive(p, scale) for p in primitives)
        return self.filters[key]

    def primitive(self, element, scale: float) -> float:
        name = _name(element)
        if name in _PRIMITIVE_PARTS:
            return 0.0
        if name in _FLAT_WEIGHTS:
            return float(_FLAT_WEIGHTS[name])
        if name == "feTurbulence":
            octaves = _number(element.get("numOctaves"), 1)
            if octaves > MAX_OCTAVES:
                raise OverBudget(f"<feTurbulence> has numOctaves {octaves:,.0f}; at most {MAX_OCTAVES}")
            return 6 + 2 * max(0, octaves)
        if name == "feMorphology":
            radii = _numbers(element.get("radius"), [0.0])
            rx, ry = (radii * 2)[:2]
            # resvg visits every pixel of the (2r+1)² window for every pixel drawn.
            window = (2 * abs(rx) * scale + 1) * (2 * abs(ry) * scale + 1)
            return self.windowed(name, "radius", window)
        if name == "feConvolveMatrix":
            orders = _numbers(element.get("order"), [3.0])
            ox, oy = (orders * 2)[:2]
            return self.windowed(name, "order", abs(ox * oy))
        raise OverBudget(f"the SVG uses the filter primitive <{name}>, which is not allowed")

    def windowed(self, name: str, parameter: str, window: float) -> float:
        passes = 1 + window / 20  # one window pixel costs ~1/20 of a pass's per-pixel work
        if passes > MAX_FILTER_PASSES:
            raise OverBudget(
                f"<{name}>'s {parameter} makes a {window:,.0f}-pixel window at {self.draw_side} pixels: "
                f"about {passes:,.0f} passes over the image; at most {MAX_FILTER_PASSES}"
            )
        return passes


def _name(element) -> str:
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag.rpartition("}")[2]


def _properties(element) -> list[tuple[str, str]]:
    """Presentation attributes and the declarations of a style attribute, as (property, value)."""
    found = [(key.rpartition("}")[2], value) for key, value in element.attrib.items() if key != "style"]
    for declaration in element.get("style", "").split(";"):
        prop, _, value = declaration.partition(":")
        found.append((prop.strip().lower(), value))
    return found


def _vertices(element) -> int:
    return max(1, len(_NUMBER.findall(element.get("d", "") + " " + element.get("points", ""))) // 2 + 1)


def _number(value: str | None, default: float) -> float:
    numbers = _numbers(value, [default])
    return numbers[0]


def _numbers(value: str | None, default: list[float]) -> list[float]:
    numbers = [float(n) for n in _NUMBER.findall(value or "")]
    return numbers or default
