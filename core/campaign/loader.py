"""Read a manifest from YAML (or JSON), JSON Lines or CSV, naming every problem at once.

- YAML / JSON: a mapping ``{campaign, defaults, items: [...]}``. Unquoted ratios
  such as ``16:9`` stay text (YAML 1.1 would read them as base-60 numbers).
- JSON Lines: one item object per line; the first line may instead hold the
  header, ``{"campaign": ..., "defaults": {...}}``.
- CSV: a row of column names (item fields) then one item per row; list cells
  separate values with ';' (``1:1;16:9``). ``#`` lines before the column row
  hold the header as YAML (``# campaign: spring-sale``).

A bad manifest raises one `ManifestError` listing every problem, each located by
line (and, for YAML and JSON, by path such as ``items[3].sizes[1]``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from core.campaign.manifest import (
    MAX_ITEMS,
    MAX_MANIFEST_CHARS,
    Manifest,
    ManifestError,
    ManifestHeader,
    ManifestItem,
    repeated_ids,
)

__all__ = ["ManifestFormat", "format_of", "load_manifest", "manifest_from_data", "parse_manifest"]

ManifestFormat = Literal["yaml", "jsonl", "csv"]
_SUFFIXES: dict[str, ManifestFormat] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
_HEADER_HINTS: dict[ManifestFormat, str] = {
    "yaml": "",
    "jsonl": ' (JSON Lines: a first line like {"campaign": "spring-sale"})',
    "csv": " (CSV: a line '# campaign: spring-sale' before the column row)",
}
Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 integers, so ``16:9`` stays a string.

    Aliases (``*name``) are refused: nested ones grow a small text into gigabytes.
    """

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a manifest", mark
            )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


@dataclass
class _Part:
    """A header or an item as read, with where its fields are in the source."""

    data: Any
    prefix: Loc  # ("items", 3) in a mapping; () for a line of its own
    line: Callable[[Loc], int | None]  # line of a full path, if known

    def locate(self, loc: Loc = ()) -> str:
        full = self.prefix + loc
        where = [f"line {line}"] if (line := self.line(full)) else []
        return ": ".join(where + ([_dotted(full)] if full else []))

    def name(self) -> str:
        """How another problem refers to this item."""
        return _dotted(self.prefix) if self.prefix else self.locate()


def format_of(path: str | Path) -> ManifestFormat:
    """The manifest format a file name implies; `ManifestError` for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ManifestError(
            str(path), [f"unknown manifest suffix {suffix!r} (use one of {', '.join(_SUFFIXES)})"]
        )
    return _SUFFIXES[suffix]


def load_manifest(path: str | Path, format: ManifestFormat | None = None) -> Manifest:
    """Read and validate a manifest file (format from its suffix unless given)."""
    format = format or format_of(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), [f"cannot read the file: {exc}"]) from None
    return parse_manifest(text, format, source=str(path))


def parse_manifest(text: str, format: ManifestFormat, source: str = "<manifest>") -> Manifest:
    """Validate manifest text in `format`; raise `ManifestError` listing every problem."""
    if format not in get_args(ManifestFormat):
        raise ManifestError(source, [f"unknown format {format!r} (yaml, jsonl or csv)"])
    if len(text) > MAX_MANIFEST_CHARS:
        raise ManifestError(
            source, [f"the manifest is {len(text)} characters; at most {MAX_MANIFEST_CHARS}"]
        )
    reader = {"yaml": _read_yaml, "jsonl": _read_jsonl, "csv": _read_csv}[format]
    problems: list[str] = []
    header, items = reader(text.removeprefix("\ufeff"), problems)
    return _build(header, items, source, problems, _HEADER_HINTS[format])


def manifest_from_data(data: Any, source: str = "<manifest>") -> Manifest:
    """Validate an already-parsed mapping (an API body); problems are located by path."""
    problems: list[str] = []
    header, items = _split_mapping(data, lambda _: None, problems)
    return _build(header, items, source, problems, "")


def _split_mapping(
    data: Any, line: Callable[[Loc], int | None], problems: list[str]
) -> tuple[_Part, list[_Part]]:
    if not isinstance(data, dict):
        problems.append("the manifest must be a mapping with 'campaign', 'defaults' and 'items'")
        return _Part({}, (), line), []
    items = data.get("items")
    if not isinstance(items, list):
        where = f"line {n}: " if (n := line(("items",))) else ""
        got = "nothing" if items is None else type(items).__name__
        problems.append(f"{where}items: must be a list of items, got {got}")
        items = []
    header = _Part({k: v for k, v in data.items() if k != "items"}, (), line)
    return header, [_Part(item, ("items", index), line) for index, item in enumerate(items)]


def _read_yaml(text: str, problems: list[str]) -> tuple[_Part, list[_Part]]:
    parsed = _parse_yaml(text, problems)
    if parsed is None:
        return _Part({}, (), lambda _: None), []
    data, root = parsed
    return _split_mapping(data, lambda loc: _yaml_line(root, loc), problems)


def _parse_yaml(text: str, problems: list[str], what: str = "") -> tuple[Any, yaml.Node] | None:
    """The data and node tree of YAML text, or None with the syntax error in `problems`."""
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problems.append(f"{where}{what}not valid YAML ({getattr(exc, 'problem', exc)})")
        return None
    return data, root


def _yaml_line(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line of the deepest YAML node on a path."""
    if node is None:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if found is None:
                break
            node = found[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


def _read_jsonl(text: str, problems: list[str]) -> tuple[_Part, list[_Part]]:
    header = _Part({}, (), lambda _: None)
    items: list[_Part] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        part = _Part(data, (), lambda _, n=number: n)
        is_header = isinstance(data, dict) and ("campaign" in data or "defaults" in data)
        if is_header and not items and not header.data:
            header = part
        else:
            items.append(part)
    return header, items


def _read_csv(text: str, problems: list[str]) -> tuple[_Part, list[_Part]]:
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        start += 1
    header = _csv_header(lines[:start], problems)
    reader = csv.reader(io.StringIO("".join(lines[start:])))
    columns: list[str] | None = None
    known = {field.alias or name for name, field in ManifestItem.model_fields.items()}
    items: list[_Part] = []
    end = 0
    for row in reader:
        number = start + end + 1  # the row's first line (a quoted cell may span lines)
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            columns = [cell.strip() for cell in row]
            problems.extend(_column_problems(columns, known, number))
            continue
        if len(row) > len(columns):
            problems.append(
                f"line {number}: {len(row)} cells but the column row has {len(columns)}"
            )
            continue
        data = {c: v for c, v in zip(columns, row, strict=False) if c in known and v.strip()}
        items.append(_Part(data, (), lambda _, n=number: n))
    return header, items


def _csv_header(comments: list[str], problems: list[str]) -> _Part:
    """The header from the '#' lines (other lines kept blank so that line numbers hold)."""
    text = "".join(
        line[1:].removeprefix(" ") if line.startswith("#") else "\n" for line in comments
    )
    parsed = _parse_yaml(text, problems, "the '#' header is ")
    data, root = parsed if parsed is not None else ({}, None)
    return _Part({} if data is None else data, (), lambda loc: _yaml_line(root, loc))


def _column_problems(columns: list[str], known: set[str], number: int) -> list[str]:
    problems = [
        f"line {number}: unknown column {name!r} (columns: {', '.join(sorted(known))})"
        for name in columns
        if name not in known
    ]
    problems += [
        f"line {number}: column {name!r} appears more than once"
        for name in sorted({c for c in columns if columns.count(c) > 1})
    ]
    if "prompt" not in columns:
        problems.append(f"line {number}: no 'prompt' column")
    return problems


def _build(
    header: _Part, items: list[_Part], source: str, problems: list[str], hint: str
) -> Manifest:
    """Validate the header and each item on its own, so that every problem is reported."""
    if not items and not problems:
        problems.append("items: the manifest has no items")
    if not isinstance(header.data, dict):
        problems.append(f"{header.locate()}: the header must be a mapping")
        header = _Part({}, (), header.line)
    parsed_header = _validate(ManifestHeader, header, problems, hint)
    parsed: list[ManifestItem] = []
    ids: list[str | None] = []  # validated ids, or ids as written for items that failed
    for part in items:
        if not isinstance(part.data, dict):
            got = type(part.data).__name__
            problems.append(f"{part.locate()}: an item must be a mapping of fields, got {got}")
            ids.append(None)
        elif (item := _validate(ManifestItem, part, problems)) is not None:
            parsed.append(item)
            ids.append(item.id)
        else:
            ids.append(given if isinstance(given := part.data.get("id"), str) else None)
    for index, earlier, item_id in repeated_ids(ids):
        problems.append(
            f"{items[index].locate(('id',))}: {item_id!r} is already the id of "
            f"{items[earlier].name()}"
        )
    if len(items) > MAX_ITEMS:
        problems.append(f"items: {len(items)} items, over the limit of {MAX_ITEMS}")
    if problems or parsed_header is None:
        raise ManifestError(source, problems)
    try:
        return Manifest(
            campaign=parsed_header.campaign, defaults=parsed_header.defaults, items=parsed
        )
    except ValidationError as exc:  # the whole manifest's checks (its expanded size)
        raise ManifestError(source, [error["msg"] for error in exc.errors()]) from None


def _validate(model: type[M], part: _Part, problems: list[str], hint: str = "") -> M | None:
    try:
        return model.model_validate(part.data)
    except ValidationError as exc:
        problems.extend(
            f"{part.locate(tuple(e['loc']))}: {_message(e, hint)}" for e in exc.errors()
        )
        return None


def _message(error: Any, hint: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing" and tuple(error["loc"]) == ("campaign",):
        return f"required: the campaign's name{hint}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if not kind.startswith("value_error") and isinstance(value, str | int | float):
        message += f" (got {value!r})"
    return message


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
