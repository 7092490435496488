"""Pixel rectangles: the boxes typesetting, compositing and the gate agree on."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PixelBox"]


@dataclass(frozen=True)
class PixelBox:
    """A half-open pixel rectangle [x0, x1) x [y0, y1) in canvas coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return max(0, self.x1 - self.x0)

    @property
    def height(self) -> int:
        return max(0, self.y1 - self.y0)

    @property
    def area(self) -> int:
        return self.width * self.height

    def intersection(self, other: PixelBox) -> PixelBox:
        """The overlap of two boxes (empty, area 0, when they do not meet)."""
        box = PixelBox(
            max(self.x0, other.x0),
            max(self.y0, other.y0),
            min(self.x1, other.x1),
            min(self.y1, other.y1),
        )
        return box if box.area else PixelBox(box.x0, box.y0, box.x0, box.y0)

    def union(self, other: PixelBox) -> PixelBox:
        """The smallest box holding both."""
        return PixelBox(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
        )

    def iou(self, other: PixelBox) -> float:
        """Intersection over union, 0 when both are empty."""
        inter = self.intersection(other).area
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def contains(self, other: PixelBox) -> bool:
        """Whether `other` lies wholly inside this box."""
        return (
            self.x0 <= other.x0
            and self.y0 <= other.y0
            and other.x1 <= self.x1
            and other.y1 <= self.y1
        )

    def expanded(self, margin: int) -> PixelBox:
        """The box grown by `margin` pixels on every side."""
        return PixelBox(self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)

    def clipped(self, width: int, height: int) -> PixelBox:
        """The part of the box inside a `width` x `height` canvas."""
        return self.intersection(PixelBox(0, 0, width, height))

    def shifted(self, dx: int, dy: int) -> PixelBox:
        """The box moved by (dx, dy)."""
        return PixelBox(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def slices(self) -> tuple[slice, slice]:
        """Numpy (rows, columns) slices of this box."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def as_list(self) -> list[int]:
        """[x0, y0, x1, y1], for JSON records."""
        return [self.x0, self.y0, self.x1, self.y1]
