"""The campaign manifest: a name, render defaults and the items to render.

An item is one prompt rendered at one or more sizes, with explicit seeds or a
number of variants. Anything an item leaves unset comes from the defaults.
Every item has a stable id: the one given, or one derived from the item's own
content (a slug of the prompt and a hash), so reordering items never changes
what was already rendered.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from core.campaign.sizes import normalize_size
from core.config import MODEL_NAME_PATTERN
from core.errors import RequestError
from core.schemas import MAX_SEED, ImageFormat
from core.typography.schema import TextMode

__all__ = [
    "CAMPAIGN_NAME_PATTERN",
    "ITEM_ID_PATTERN",
    "MAX_ITEMS",
    "MAX_MANIFEST_CHARS",
    "MAX_RENDERS",
    "Manifest",
    "ManifestError",
    "ManifestHeader",
    "ManifestItem",
    "RenderDefaults",
    "repeated_ids",
]

# A DNS label, so that the name also fits URLs, store keys and Kubernetes RayJob names.
CAMPAIGN_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_CAMPAIGN_NAME = re.compile(CAMPAIGN_NAME_PATTERN)
_ITEM_ID = re.compile(ITEM_ID_PATTERN)
MAX_ITEMS = 10_000
MAX_RENDERS = 100_000  # a campaign's renders after expansion (items x sizes x seeds)
MAX_MANIFEST_CHARS = 2 * 2**20  # the text of a manifest (YAML, JSON Lines, CSV)
_SPLIT = re.compile(r"[;,\s]+")


class ManifestError(RequestError):
    """A manifest failed validation; `problems` names every bad item, line and field."""

    def __init__(self, source: str, problems: list[str]):
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__("manifest", f"{source} has {len(problems)} problem(s):\n{listed}")
        self.args = (source, problems)  # so that it unpickles across Ray processes
        self.source = source
        self.problems = problems


def _campaign_name(value: str) -> str:
    if not _CAMPAIGN_NAME.match(value):
        raise ValueError(
            f"{value!r} must be 1-63 lowercase letters, digits or '-', starting and ending "
            "with a letter or digit (like 'spring-sale-2025')"
        )
    return value


def _item_id(value: str) -> str:
    if not _ITEM_ID.match(value):
        raise ValueError(
            f"{value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value


def _split_text(value: Any) -> Any:
    """Accept ``"1:1; 16:9"`` (a CSV cell, a YAML scalar) wherever a list is expected."""
    if isinstance(value, str):
        return [part for part in _SPLIT.split(value.strip()) if part]
    return value


def _unique(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once")
    return values


SizeSpec = Annotated[str, BeforeValidator(normalize_size)]
SizeList = Annotated[
    list[SizeSpec], BeforeValidator(_split_text), AfterValidator(_unique), Field(min_length=1)
]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
SeedList = Annotated[
    list[Seed],
    BeforeValidator(_split_text),
    AfterValidator(_unique),
    Field(min_length=1, max_length=64),
]
RouteName = Annotated[str, Field(min_length=1, max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, populate_by_name=True, protected_namespaces=()
    )


def _check_choices(model: RenderDefaults | ManifestItem) -> None:
    """At most one route, and seeds or variants but not both (as written, not defaulted)."""
    routes = [name for name in ("style", "model", "pipeline") if getattr(model, name) is not None]
    if len(routes) > 1:
        raise ValueError(f"give one of style, model or pipeline, not {' and '.join(routes)}")
    if model.seeds is not None and "variants" in model.model_fields_set:
        raise ValueError("give seeds or variants, not both (variants is the number of seeds)")


class RenderDefaults(_Model):
    """What every item gets unless it says otherwise."""

    style: RouteName | None = Field(None, description="Style label routed to a model.")
    model: str | None = Field(
        None, pattern=MODEL_NAME_PATTERN, description="Model name (wins over the config's style)."
    )
    pipeline: RouteName | None = Field(None, description="Staged pipeline to render through.")
    sizes: SizeList = Field(
        ["1:1"], max_length=32, description="Aspect ratios (4:5) or exact sizes (1920x1080)."
    )
    seeds: SeedList | None = Field(None, description="Explicit seeds, one render each.")
    variants: int = Field(1, ge=1, le=64, description="Renders per size when seeds are unset.")
    steps: int | None = Field(None, ge=1, le=1000, description="Denoising steps (model default).")
    guidance: float | None = Field(None, ge=0, le=50, description="CFG scale (model default).")
    negative_prompt: str = Field("", max_length=10_000, description="What to keep out.")
    base_size: int | None = Field(
        None,
        ge=64,
        le=16_384,
        description="Side of the square whose area aspect ratios keep (default: model native).",
    )
    format: ImageFormat = Field("png", description="Encoding of every rendered image.")
    copy_mode: TextMode = Field(
        "overlay",
        description="How copy is delivered: overlaid, or integrated by a masked pass.",
    )

    @model_validator(mode="after")
    def _choices(self) -> RenderDefaults:
        _check_choices(self)
        return self


class ManifestItem(_Model):
    """One prompt to render at each of its sizes, once per seed or variant."""

    id: Annotated[str, AfterValidator(_item_id)] | None = Field(
        None, description="Stable id (default: derived from content)."
    )
    prompt: str = Field(..., min_length=1, max_length=10_000, description="What to draw.")
    negative_prompt: str | None = Field(None, max_length=10_000, description="What to keep out.")
    style: RouteName | None = Field(None, description="Style label routed to a model.")
    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN, description="Model name.")
    pipeline: RouteName | None = Field(None, description="Staged pipeline to render through.")
    sizes: SizeList | None = Field(None, max_length=32, description="Sizes (default: defaults').")
    seeds: SeedList | None = Field(None, description="Explicit seeds, one render each.")
    variants: int | None = Field(None, ge=1, le=64, description="Renders per size without seeds.")
    steps: int | None = Field(None, ge=1, le=1000, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, le=50, description="CFG scale.")
    copy_text: str | None = Field(
        None,
        alias="copy",
        max_length=2_000,
        description="Text typeset over the image at final resolution (never diffused).",
    )
    copy_mode: TextMode | None = Field(None, description="How the copy is delivered (defaults').")

    @model_validator(mode="after")
    def _choices_and_id(self) -> ManifestItem:
        _check_choices(self)
        if self.id is None:
            self.id = self.derived_id()
        return self

    def derived_id(self) -> str:
        """``<prompt slug>-<8 hex>``: a hash of everything the item says except its id."""
        content = self.model_dump(mode="json", exclude={"id"}, exclude_none=True, by_alias=True)
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        words = re.sub(r"[^a-z0-9]+", "-", self.prompt.lower()).strip("-")
        slug = words[:32].rstrip("-") or "item"
        return f"{slug}-{digest[:8]}"


class ManifestHeader(_Model):
    """The campaign's name and defaults (a manifest without its items)."""

    campaign: Annotated[str, AfterValidator(_campaign_name)] = Field(
        ..., description="Campaign name: lowercase letters, digits and '-' (a DNS label)."
    )
    defaults: RenderDefaults = Field(default_factory=RenderDefaults)


class Manifest(ManifestHeader):
    """A whole campaign: name, defaults and items (ids unique)."""

    items: list[ManifestItem] = Field(..., min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _unique_ids(self) -> Manifest:
        clashes = [
            f"items[{index}] has the id {item_id!r} of items[{earlier}]"
            for index, earlier, item_id in repeated_ids([item.id for item in self.items])
        ]
        if clashes:
            raise ValueError("; ".join(clashes))
        renders = self.render_count()
        if renders > MAX_RENDERS:
            raise ValueError(
                f"the manifest expands to {renders} renders; at most {MAX_RENDERS} per campaign "
                "(split it into several campaigns)"
            )
        return self

    def render_count(self) -> int:
        """How many renders the items ask for (sizes x seeds or variants), before dedup."""
        total = 0
        for item in self.items:
            sizes = item.sizes if item.sizes is not None else self.defaults.sizes
            if item.seeds is not None or item.variants is not None:
                per_size = len(item.seeds) if item.seeds is not None else item.variants or 1
            elif self.defaults.seeds is not None:
                per_size = len(self.defaults.seeds)
            else:
                per_size = self.defaults.variants
            total += len(sizes) * per_size
        return total


def repeated_ids(ids: list[str | None]) -> list[tuple[int, int, str]]:
    """(index, index of the first with that id, id) for every id already taken; None skipped."""
    first: dict[str, int] = {}
    repeats = []
    for index, item_id in enumerate(ids):
        if item_id is None:
            continue
        if item_id in first:
            repeats.append((index, first[item_id], item_id))
        else:
            first[item_id] = index
    return repeats
