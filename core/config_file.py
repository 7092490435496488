"""Load a `ClusterConfig` from YAML, reporting every problem by its path and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.config import ClusterConfig
from core.errors import ConfigError
from core.model_source import parse_source


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a config file; raise `ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    return locate_local_sources(parse_config(text, source=str(path)), path.parent)


def locate_local_sources(config: ClusterConfig, config_dir: Path) -> ClusterConfig:
    """A relative local source names a directory from the current directory, else from the
    config file's: a starter config and the model beside it work from anywhere."""
    moved = {}
    for name, model in config.models.items():
        source = parse_source(model.source)
        where = Path(source.location)
        if source.kind != "local" or where.is_absolute() or where.exists():
            continue
        if (config_dir / where).exists():
            pin = "" if source.revision is None else f"@{source.revision}"
            located = f"{(config_dir / where).resolve()}{pin}"
            moved[name] = model.model_copy(update={"source": located})
    return config.model_copy(update={"models": {**config.models, **moved}}) if moved else config


def missing_local_sources(config: ClusterConfig) -> list[str]:
    """The model and LoRA sources on local disk that are not on this machine, one line
    each naming its field (checked where a cluster starts here: a Kubernetes config's
    paths are the nodes')."""
    sources = []
    for name, model in config.models.items():
        sources.append((f"models.{name}.source", model.source))
        sources += [
            (f"models.{name}.loras[{index}].source", adapter.source)
            for index, adapter in enumerate(model.loras)
        ]
    return [
        f"{field}: {source!r} is not a file or directory here (a relative path is looked up "
        "from the current directory, and a model's from the config file's too)"
        for field, source in sources
        if _local_and_absent(source)
    ]


def _local_and_absent(source: str) -> bool:
    parsed = parse_source(source)
    return parsed.kind == "local" and not Path(parsed.location).expanduser().exists()


def parse_config(text: str, source: str = "<config>") -> ClusterConfig:
    """Validate YAML text as a `ClusterConfig`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(source, [f"{where}not valid YAML ({problem})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping with at least 'models'"])
    return config_from_dict(data, source=source, node=node)


def config_from_dict(
    data: dict[str, Any], source: str = "<config>", node: yaml.Node | None = None
) -> ClusterConfig:
    """Validate an already-parsed mapping (for example Serve's application args)."""
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err, node) for err in exc.errors()]) from None


def _describe(error: Any, node: yaml.Node | None) -> str:
    loc = [part for part in error["loc"] if not str(part).startswith("function-")]
    dotted = ".".join(str(part) for part in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    line = _line_of(node, loc)
    where = f" (line {line})" if line else ""
    return f"{dotted}{where}: {message}"


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """Line number of the deepest YAML node on the error's path."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if str(k.value) == str(part)), None)
                return key.start_mark.line + 1 if key is not None else best
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return best
            node = node.value[part]
        else:
            return best
        best = node.start_mark.line + 1
    return best
