"""What text delivery reports (JSON for run records): checks, verdicts, treatments, reports.

`GateCheck` is one check of the gate and `BoxGateResult` its verdict on one box;
`Treatment` is how the contrast solver chose to paint a box; `TypographyReport`
gathers one `BoxReport` per box of a render. Data only, like `schema`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.typography.schema import TextMode

__all__ = ["BoxGateResult", "BoxReport", "GateCheck", "Treatment", "TypographyReport"]

TreatmentKind = Literal["ink", "as_given", "switched", "stroke", "plate"]
HexColour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


class Treatment(BaseModel):
    """How a box's copy is painted, as chosen by the contrast solver; JSON for the run record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TreatmentKind = Field(
        description="ink: auto ink chosen; as_given: the requested ink sufficed; switched: "
        "the requested ink was replaced; stroke / plate: an outline / a plate was added."
    )
    requested_ink: str = Field(description="The box's ink as requested ('auto' or #rrggbb).")
    ink: HexColour = Field(description="The ink painted, #rrggbb.")
    stroke_width: int = Field(0, ge=0, description="Outline width in pixels (0: none).")
    stroke_colour: HexColour | None = Field(None, description="Outline colour, #rrggbb.")
    plate: tuple[int, int, int, int] | None = Field(
        None, description="Plate rectangle [x0, y0, x1, y1) in canvas pixels."
    )
    plate_colour: HexColour | None = Field(None, description="Plate colour, #rrggbb.")
    contrast: float = Field(
        ge=1, le=21, description="5th percentile of the ink's WCAG contrast with its ring."
    )


class GateCheck(BaseModel):
    """One check of the gate, with the measured value and the threshold it was held to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="fidelity, ocr, contrast, placement, inside_box, cap_height or stray_text."
    )
    passed: bool = Field(description="Whether the value met the threshold.")
    value: float | str | None = Field(description="What was measured (None: nothing could be).")
    threshold: float | str | None = Field(None, description="What it had to reach.")
    detail: str = Field("", description="Why, in words, where the value alone does not say.")


class BoxGateResult(BaseModel):
    """The gate's verdict on one box, as stored in the run record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: str = Field(description="The box's field name, e.g. text_boxes[0].")
    mode: TextMode = Field(description="The mode the render was gated as.")
    passed: bool = Field(description="Whether every check passed.")
    checks: list[GateCheck] = Field(description="Every check, in a fixed order.")
    expected_text: str = Field(description="The copy as typeset (NFKC, lines joined by spaces).")
    ocr_text: str | None = Field(description="What OCR read; None when OCR failed.")
    character_error_rate: float | None = Field(
        description="Edit distance of the OCR text from the copy, over the copy's length."
    )
    seconds: float = Field(description="Wall-clock time the gate took for this box.")

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if not c.passed]


class BoxReport(BaseModel):
    """What happened to one box: how it was set and painted, and the gate's verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: str = Field(description="The box's field name, e.g. text_boxes[0].")
    mode: TextMode = Field(description="The mode the request asked for.")
    delivered: TextMode = Field(description="The mode of the pixels delivered.")
    typeset: dict[str, object] = Field(description="Font, size, lines and boxes as typeset.")
    treatment: Treatment = Field(description="Ink, stroke or plate chosen by the contrast solver.")
    gate: BoxGateResult = Field(description="The verdict on the delivered pixels.")
    integrated_gate: BoxGateResult | None = Field(
        None, description="integrated boxes: the verdict on the integrated render."
    )
    note: str = Field("", description="Why an integrated box was delivered as overlay.")


class TypographyReport(BaseModel):
    """The typography gate's result for one render (kept in its run record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool = Field(description="Every box passed and no stray text was found.")
    boxes: list[BoxReport] = Field(description="One report per text box, in request order.")
    stray_text: GateCheck | None = Field(
        None, description="OCR outside the boxes (None: not checked)."
    )

    def failures(self) -> list[str]:
        """One phrase per failed check, naming the box and the check."""
        found = []
        for report in self.boxes:
            for check in report.gate.checks:
                if not check.passed:
                    found.append(f"{report.box} {check.name} ({_why(check, report.gate)})")
        if self.stray_text is not None and not self.stray_text.passed:
            found.append(f"stray_text ({self.stray_text.detail or self.stray_text.value})")
        return found

    def message(self) -> str:
        """One line for a failed render: which box failed which check."""
        return "typography gate failed: " + "; ".join(self.failures())


def _why(check: GateCheck, verdict: BoxGateResult) -> str:
    if check.name == "ocr":
        return f"read {verdict.ocr_text!r}, expected {verdict.expected_text!r}"
    if check.detail and check.value is None:
        return check.detail
    return f"{check.value} against {check.threshold}"
