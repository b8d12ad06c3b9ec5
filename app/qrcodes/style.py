"""How a code looks. Pure data: the renderer turns it into segno's arguments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

_HEX_COLOUR = r"^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"
Colour = Annotated[str, StringConstraints(pattern=_HEX_COLOUR, to_lower=True)]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class Style(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: Annotated[Literal["L", "M", "Q", "H"], BeforeValidator(_upper)] = Field(
        "M", description="Error correction level: L 7 %, M 15 %, Q 25 %, H 30 % of the symbol may be damaged."
    )
    scale: int = Field(10, ge=1, le=50, description="Pixels per module in PNG (units in vector formats).")
    border: int | None = Field(
        None, ge=0, le=16, description="Quiet zone in modules; default 4 (2 for Micro QR)."
    )
    dark: Colour = Field("#000000", description="#RRGGBB or #RRGGBBAA.")
    light: Colour | Literal["transparent"] = Field(
        "#ffffff", description="#RRGGBB, #RRGGBBAA or transparent."
    )
    micro: bool = Field(False, description="A Micro QR code (small content only; no level H).")

    @model_validator(mode="after")
    def _consistent(self) -> Style:
        if self.dark[:7] == self.light[:7]:
            raise ValueError("dark and light colours must differ")
        if self.micro and self.error == "H":
            raise ValueError("Micro QR codes support error levels L, M and Q, not H")
        if self.border is None:
            # The quiet zone the standards ask for; stored explicitly so the API shows what was drawn.
            self.border = 2 if self.micro else 4
        return self
