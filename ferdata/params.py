"""Typed views of params.yaml: one dataclass per stage section, unknown keys refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """params.yaml is missing a section, has an unknown key or a value of the wrong kind."""


def load_params(path: Path) -> dict[str, Any]:
    """The whole params.yaml as a dict."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run in a pipeline folder, or name the file with --params)")
    with path.open() as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.MarkedYAMLError as exc:
            line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise ParamsError(f"{path}{line}: not valid YAML: {exc.problem}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections")
    return data


def section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """Build the dataclass ``cls`` from ``params[name]``; the top-level ``seed`` is shared.

    Missing keys take the dataclass defaults; unknown keys are an error, so a typo in
    params.yaml never passes silently. A field whose metadata holds a ``key`` is read from
    that key (for keys that are not Python names, such as ``raf-db``).
    """
    raw = dict(params.get(name) or {})
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if "seed" in fields and "seed" not in raw and "seed" in params:
        raw["seed"] = params["seed"]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"params.yaml [{name}]: unknown keys {unknown}; known: {sorted(fields)}")
    hints = get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        hint = hints[fields[key].name]
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif hint in (int, float, str, bool) and not isinstance(value, hint):
            raise ParamsError(f"params.yaml [{name}].{key}: expected {hint.__name__}, got {value!r}")
        values[fields[key].name] = value
    return cls(**values)


def load_section(path: Path, name: str, cls: type[T]) -> T:
    """Shortcut: one section of a params file."""
    return section(load_params(path), name, cls)
