"""What the typography gate reports: one check, and the verdict on one box (JSON for records)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.typography.schema import TextMode

__all__ = ["BoxGateResult", "GateCheck"]


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
