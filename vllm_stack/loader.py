"""Turn a stack file (or Pulumi's config map) into a validated `StackConfig`, or one clear error.

Every error names the key path the user typed (`models[1].gpuMemoryUtilization`), the
bad value and what is allowed, on one line; the CLI exits 2 with it and writes nothing.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from pydantic import BaseModel, ValidationError

from . import defaults as D
from .config import SECRET_KEYS, StackConfig, config_keys
from .semantics import validate_semantics


def display_text(value: Any) -> str:
    """A path or value as printable text: file-name bytes that are not UTF-8 shown as \\xNN."""
    text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate that no file name produced
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class ConfigError(ValueError):
    """A user-facing config problem: `path: message`."""

    def __init__(self, path: str, message: str, source: str | None = None):
        self.path, self.message, self.source = path, message, source
        where = f" ({source})" if source else ""
        super().__init__(f"{path}: {message}{where}" if path else f"{message}{where}")


def format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of `loc` (for 'did you mean')."""
    cls: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        ann = field.annotation
        cls = _inner_model(ann)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _inner_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(cls: type[BaseModel]) -> list[str]:
    keys = [f.alias or n for n, f in cls.model_fields.items() if not f.exclude]
    return keys + (list(SECRET_KEYS) if cls is StackConfig else [])


def _suggest(bad: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(allowed)}"


def _shown(val: Any, limit: int = 80) -> str:
    """The bad value on one line: JSON-escaped (a newline shows as `\\n`), long strings cut."""
    if isinstance(val, str) and len(val) > limit:
        return json.dumps(val[:limit]) + f"... ({len(val)} characters)"
    if isinstance(val, (str, int, float, bool)) or val is None:
        return json.dumps(val)
    return type(val).__name__


def _error_from_pydantic(err: Mapping[str, Any], source: str | None) -> ConfigError:
    loc = tuple(err["loc"])
    path = format_loc(loc)
    typ = err["type"]
    val = err.get("input")
    shown = _shown(val)
    if typ == "extra_forbidden":
        cls = _model_at(loc)
        allowed = _allowed_keys(cls) if cls else []
        return ConfigError(path, _suggest(str(loc[-1]), allowed), source)
    if typ == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return ConfigError(path, f"{shown} is not allowed; allowed: {expected.replace(' or ', ', ')}", source)
    if typ == "missing":
        return ConfigError(path, "required key is missing", source)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return ConfigError(path, f"{shown} is not allowed; {msg[0].lower() + msg[1:]}", source)


def parse_config(raw: Mapping[str, Any], secrets: Iterable[str] = (), source: str | None = None) -> StackConfig:
    """Validate plain values (camelCase keys, no namespace) into a StackConfig."""
    data = dict(raw)
    for key in list(data):
        if key in SECRET_KEYS:
            raise ConfigError(
                key,
                "must be a Pulumi secret (`pulumi config set --secret "
                f"{key} ...`, stored as `secure:`); a plain value would leak into the stack file",
                source,
            )
    try:
        cfg = StackConfig.model_validate({**data, "secrets": frozenset(secrets)})
    except ValidationError as exc:
        errors = exc.errors()
        first = _error_from_pydantic(errors[0], source)
        raise first from None
    problems = validate_semantics(cfg)
    if problems:
        path, message = problems[0]
        raise ConfigError(path, message, source)
    return cfg


def _is_secure_value(key: str, value: Any) -> bool:
    """`{secure: <ciphertext>}` as `pulumi config set --secret` writes it. `{secure: null}` or an
    empty ciphertext is not a set secret (the CLI would fail to decrypt it at `pulumi up`)."""
    return isinstance(value, Mapping) and set(value) == {"secure"}


def split_namespaced(
    config_map: Mapping[str, Any],
    source: str | None = None,
    is_secret: Callable[[str, Any], bool] = _is_secure_value,
) -> tuple[dict[str, Any], set[str]]:
    """Pick `vllm-stack:*` keys; return (plain values, names of secret keys that are set)."""
    plain: dict[str, Any] = {}
    secrets: set[str] = set()
    prefix = f"{D.PROJECT}:"
    for full_key, value in config_map.items():
        if not isinstance(full_key, str) or not full_key.startswith(prefix):
            continue  # other namespaces (kubernetes:context, aws:region) belong to providers
        key = full_key[len(prefix) :]
        if is_secret(key, value):
            cipher = value["secure"] if isinstance(value, Mapping) else value
            if is_secret is _is_secure_value and (not isinstance(cipher, str) or not cipher.strip()):
                raise ConfigError(
                    f"{key}.secure",
                    "is not a ciphertext; set the secret with `pulumi config set "
                    f"--secret {key} ...` (an empty or null `secure:` is not a secret)",
                    source,
                )
            if key not in SECRET_KEYS:
                raise ConfigError(
                    key,
                    "is a secret but not a secret key; " + _suggest(key, config_keys()).replace("unknown key; ", ""),
                    source,
                )
            secrets.add(key)
            continue
        if key in SECRET_KEYS:
            raise ConfigError(
                key,
                "must be a Pulumi secret (`pulumi config set --secret "
                f"{key} ...`, stored as `secure:`); a plain value would leak into the stack file",
                source,
            )
        plain[key] = value
    return plain, secrets


def load_stack_file(path: str | Path) -> StackConfig:
    """Strict read (size, UTF-8, duplicate/non-string keys: `vllm_stack.stackfile`), then validate."""
    from .stackfile import read_stack_document

    p = Path(path)
    doc = read_stack_document(p)
    plain, secrets = split_namespaced(doc["config"], p.name)
    return parse_config(plain, secrets, p.name)


def resolve_stack_path(stack_or_path: str, root: Path) -> Path:
    """`dev` → ROOT/Pulumi.dev.yaml; anything with a slash or .yaml suffix is a path."""
    if stack_or_path.endswith((".yaml", ".yml")) or "/" in stack_or_path:
        return Path(stack_or_path)
    return root / f"Pulumi.{stack_or_path}.yaml"
