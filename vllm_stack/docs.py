"""Generate the config reference (README section) and JSON schema from the pydantic models.

One definition, two renderings: `make docs` rewrites them, `tests/unit/test_docs.py`
fails when either is stale, so the docs cannot drift from the code.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, BaseModel

from .config import SECRET_KEYS, StackConfig
from .grammar import Grammar

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCHEMA = ROOT / "docs" / "config.schema.json"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def _grammar(metadata: Iterable[Any]) -> str | None:
    for meta in metadata:
        if isinstance(meta, AfterValidator) and isinstance(meta.func, Grammar):
            return meta.func.text
    return None


def _bounds(metadata: Iterable[Any]) -> str:
    """`, > 0 and <= 65535` from the field's numeric and length constraints (strict types)."""
    parts = []
    for meta in metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("max_length", "items <=")):
            value = getattr(meta, attr, None)
            if value is not None and type(meta).__name__ != "AfterValidator":
                parts.append(f"{sym} {value:g}" if isinstance(value, float) else f"{sym} {value}")
    return f", {' and '.join(parts)}" if parts else ""


def _type_name(ann: Any, metadata: Iterable[Any] = ()) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    grammar = _grammar(metadata)
    if origin is typing.Annotated:
        return _type_name(args[0], getattr(ann, "__metadata__", ()))
    if grammar is not None:
        return "string: " + grammar.replace("|", "\\|")  # inside a Markdown table cell
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(parts) + (" (optional)" if type(None) in args else "")
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "object"
    return getattr(ann, "__name__", str(ann))


def _inner_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        m = _inner_model(a)
        if m is not None:
            return m
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        key = f"{prefix}{f.alias or name}"
        if f.is_required():
            default = "required"
        elif f.default_factory is not None:
            default = "see below" if _inner_model(f.annotation) else "empty"
        else:
            default = f"`{json.dumps(f.default)}`"
        ann = f.annotation
        typ = _type_name(ann, f.metadata) + _bounds(f.metadata)
        rows.append(f"| `{key}` | {typ} | {default} | {f.description or ''} |")
        inner = _inner_model(ann)
        if inner is not None:
            suffix = (
                "[]."
                if typing.get_origin(ann) in (tuple, list)
                else ("<gpu>." if typing.get_origin(ann) is dict else ".")
            )
            rows += _rows(inner, f"{key}{suffix}")
    return rows


def config_reference() -> str:
    lines = [START, "", "| key (under `vllm-stack:`) | type / allowed | default | meaning |", "|---|---|---|---|"]
    lines += _rows(StackConfig, "")
    lines += ["", "Secrets (only as `pulumi config set --secret KEY VALUE`; a plain value is an error):", ""]
    lines += [f"- `{k}`: {v}" for k, v in SECRET_KEYS.items()]
    lines += ["", END]
    return "\n".join(lines)


def schema_text() -> str:
    return json.dumps(StackConfig.model_json_schema(by_alias=True), indent=2, sort_keys=True) + "\n"


def _readme_with_reference(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} … {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + config_reference() + tail


def write_docs() -> None:
    README.write_text(_readme_with_reference(README.read_text()))
    SCHEMA.parent.mkdir(exist_ok=True)
    SCHEMA.write_text(schema_text())


def check_docs() -> list[str]:
    stale = []
    if README.read_text() != _readme_with_reference(README.read_text()):
        stale.append("README.md config reference")
    if not SCHEMA.exists() or SCHEMA.read_text() != schema_text():
        stale.append(str(SCHEMA.relative_to(ROOT)))
    return stale
