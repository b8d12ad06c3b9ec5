"""How a code looks. Pure data: the renderer turns it into segno's arguments.

Every field added after the first release is optional with a null default, and a stored style holds only
the fields that were given (service.create_code), so styles stored before a field existed still load.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

_HEX_COLOUR = r"^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"
Colour = Annotated[str, StringConstraints(pattern=_HEX_COLOUR, to_lower=True)]
# Light modules may be left undrawn (the page shows through); dark ones never: that would be no code.
# One pattern rather than a union, so a bad value is one error at the field, not one per union member.
LightColour = Annotated[
    str, StringConstraints(pattern=r"^(?:#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|transparent)$", to_lower=True)
]

# The logo's box, as a fraction of the symbol's width (quiet zone excluded). At 0.5 it hides a quarter
# of the symbol, near all that level H can recover (30 % of the codewords, and the box also hides
# modules that are not codewords); past it no code can be read. Within it, the worker's read-back decides.
LOGO_SIZE_DEFAULT = 0.25
LOGO_SIZE_MAX = 0.5
# Between a region's dark and light modules: WCAG's minimum for graphics, and what scanners cope with.
MIN_CONTRAST = 3.0

# Region → (its dark field, its light field); the quiet zone is checked against the finders' dark.
MODULE_COLOURS = ("finder_dark", "finder_light", "alignment_dark", "alignment_light", "data_dark", "data_light")
_STORED = "stored"  # validation context: a style loaded from the database (Style.from_stored)
_REGIONS = [("finder_dark", "finder_light"), ("alignment_dark", "alignment_light"), ("data_dark", "data_light")]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _refused(field: str, message: str, value: Any) -> ValidationError:
    """Raised from the model validator at the field's own location, so the 422 names `style.<field>`."""
    error = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(field,), input=value)
    return ValidationError.from_exception_data("Style", [error])


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance of #rrggbb."""

    def linear(channel: str) -> float:
        c = int(channel, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(colour[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _opaque(colour: str) -> bool:
    return colour != "transparent" and (len(colour) == 7 or colour.endswith("ff"))


class Style(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: Annotated[Literal["L", "M", "Q", "H"], BeforeValidator(_upper)] = Field(
        "M",
        description="Error correction level: L 7 %, M 15 %, Q 25 %, H 30 % of the symbol may be damaged. "
        "A logo forces H.",
    )
    scale: int = Field(10, ge=1, le=50, description="Pixels per module in PNG (units in vector formats).")
    border: int | None = Field(
        None, ge=0, le=16, description="Quiet zone in modules; default 4 (2 for Micro QR)."
    )
    dark: Colour = Field("#000000", description="#RRGGBB or #RRGGBBAA.")
    light: LightColour = Field("#ffffff", description="#RRGGBB, #RRGGBBAA or transparent.")
    micro: bool = Field(False, description="A Micro QR code (small content only; no level H).")

    finder_dark: Colour | None = Field(None, description="The three finder patterns' dark modules; null: dark.")
    finder_light: LightColour | None = Field(None, description="The finder patterns' light modules; null: light.")
    alignment_dark: Colour | None = Field(None, description="The alignment patterns' dark modules; null: dark.")
    alignment_light: LightColour | None = Field(None, description="The alignment patterns' light modules; null: light.")
    data_dark: Colour | None = Field(None, description="Dark data modules; null: dark.")
    data_light: LightColour | None = Field(None, description="Light data modules, and the logo's box; null: light.")
    quiet_zone: LightColour | None = Field(None, description="The border around the symbol; null: light.")
    logo: uuid.UUID | None = Field(
        None,
        description="A logo of this workspace (POST /v1/logos), drawn in the centre of the PNG, SVG and PDF "
        "(EPS has none: no EPS image is made). Forces error level H; the worker reads the PNG back before the "
        "code is ready.",
    )
    logo_size: float | None = Field(
        None,
        ge=0.05,
        le=LOGO_SIZE_MAX,
        description=f"The logo's box as a fraction of the symbol's width; default {LOGO_SIZE_DEFAULT} with a logo.",
    )

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Style:
        """A style as a code stored it. Codes made before the contrast rule covered `dark` and `light` must
        still load (and their images be served) whatever their contrast; only new styles are refused."""
        return cls.model_validate(stored, context={_STORED: True})

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Style:
        if self.dark[:7] == self.light[:7]:
            raise ValueError("dark and light colours must differ")
        if self.micro and self.error == "H":
            raise ValueError("Micro QR codes support error levels L, M and Q, not H")
        if self.border is None:
            # The quiet zone the standards ask for; stored explicitly so the API shows what was drawn.
            self.border = 2 if self.micro else 4
        self._check_logo()
        self._check_contrast(stored=bool(info.context and info.context.get(_STORED)))
        return self

    def _check_logo(self) -> None:
        if self.logo is None:
            if self.logo_size is not None:
                raise _refused("logo_size", "logo_size applies only with a logo", self.logo_size)
            return
        if self.micro:
            raise _refused("micro", "a Micro QR code is too small to carry a logo", self.micro)
        # A logo hides modules: only level H has the redundancy to lose them. Raised, not refused, so a
        # client need not know; the code's style shows the level it got.
        self.error = "H"
        if self.logo_size is None:
            self.logo_size = LOGO_SIZE_DEFAULT

    def _check_contrast(self, *, stored: bool) -> None:
        """One rule for every pair of colours a scanner must tell apart: `dark` on `light` and each region's
        own. A region's pair is checked where one of its colours was given (else it is dark on light)."""
        pairs = [] if stored else [("dark", "light")]
        pairs += _REGIONS
        if self.quiet_zone is not None:
            pairs.append(("finder_dark", "quiet_zone"))
        for dark_field, light_field in pairs:
            given = [name for name in (dark_field, light_field) if getattr(self, name) is not None]
            if not given:
                continue
            dark = getattr(self, dark_field) or self.dark
            light = getattr(self, light_field) or self.light
            field = given[0]
            if dark[:7] == light[:7]:
                raise _refused(field, f"{dark_field} and {light_field} must differ", getattr(self, field))
            if not (_opaque(dark) and _opaque(light)):
                continue  # what shows through is unknown; the worker's read-back still checks the result
            dark_l, light_l = _luminance(dark), _luminance(light)
            if dark_l >= light_l:
                message = f"{dark_field} ({dark[:7]}) must be darker than {light_field} ({light[:7]})"
                raise _refused(field, message, getattr(self, field))
            ratio = (light_l + 0.05) / (dark_l + 0.05)
            if ratio < MIN_CONTRAST:
                raise _refused(
                    field,
                    f"{dark[:7]} on {light[:7]} has a contrast of {ratio:.1f}:1; scanners need at least "
                    f"{MIN_CONTRAST:.0f}:1 between dark and light modules",
                    getattr(self, field),
                )

    @property
    def read_back(self) -> bool:
        """Every styled code: any colour but black on white, or a logo, is decoded by the worker before
        `ready` (contrast is a rule of thumb; a decoder is the proof)."""
        return self.decorated or (self.dark, self.light) != ("#000000", "#ffffff")

    @property
    def decorated(self) -> bool:
        """Module colours or a logo: drawn by qrflow's own compositing, and read back before `ready`."""
        return self.logo is not None or any(
            getattr(self, name) is not None for name in (*MODULE_COLOURS, "quiet_zone")
        )
