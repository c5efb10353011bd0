"""Read a stack file (`Pulumi.<stack>.yaml`) strictly, or fail with one `ConfigError` line.

Stricter than `yaml.safe_load`, closer to what the Pulumi CLI accepts:

- at most `MAX_BYTES` (1 MiB; real stack files are a few KiB) and valid UTF-8;
- one YAML document whose top level is a mapping with a `config:` mapping;
- no duplicate keys in any mapping (the Pulumi CLI refuses them; PyYAML lets the last win),
  reported with the key's path and both lines;
- every mapping key is a string (`1:`, `true:`, `null:` are not; quote them);
- plain scalars by YAML 1.2's core schema, as the Pulumi CLI reads them (`on` is a string);
- bounded alias expansion (`MAX_NODES`) and nesting (`MAX_DEPTH`), so an alias "bomb" or a
  deeply nested value cannot make validation explode.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .loader import ConfigError, display_text

MAX_BYTES = 1 << 20
MAX_NODES = 1_000_000
MAX_DEPTH = 64
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-string mapping keys (checked on the node tree), and
    reads plain scalars by YAML 1.2's core schema, as the Pulumi CLI (go-yaml v3) does: `7.6e9` is a
    float (PyYAML's YAML 1.1 makes it a string), `yes`/`on`/`no` are strings (1.1: booleans), `010`
    is ten (1.1: eight), a date is a string. The plan and `pulumi up` must see the same values."""


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"  # 1.2 core has none: `2026-01-01` stays a string
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
StrictSafeLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
StrictSafeLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int_1_2(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


StrictSafeLoader.add_constructor(_INT, _construct_int_1_2)


_shown = display_text


def read_text(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """The file's text: bounded read (works for pipes and /dev files too), strict UTF-8."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(_shown(p), f"cannot read stack file: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ConfigError(_shown(p), f"stack file is larger than {max_bytes // 1024} KiB; refusing to parse it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            _shown(p),
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at line {line}, column {column}); stack files must be UTF-8",
        ) from None


def _key_path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _check_node(root: yaml.Node, source: str | None) -> None:
    """Duplicate/non-string keys anywhere; alias expansion bounded by MAX_NODES."""
    budget = MAX_NODES
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError("", f"too many YAML nodes (more than {MAX_NODES} after expanding aliases)", source)
        if depth > MAX_DEPTH:
            raise ConfigError(path, f"nested more than {MAX_DEPTH} levels deep", source)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:  # `<<: *base`: keys written here override merged ones
                    stack.append((value_node, path, depth))
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else key_node.id
                    raise ConfigError(
                        _key_path(path, str(shown)),
                        f"mapping key at {_where(key_node)} is not a string "
                        f"({key_node.tag.rsplit(':', 1)[-1]}); quote it",
                        source,
                    )
                key = key_node.value
                if key in seen:
                    raise ConfigError(
                        _key_path(path, key),
                        f"duplicate key at {_where(key_node)} (first at {_where(seen[key])})",
                        source,
                    )
                seen[key] = key_node
                stack.append((value_node, _key_path(path, key), depth + 1))


def _yaml_error(exc: yaml.YAMLError, source: str | None) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"unacceptable character #x{exc.character:04x} at position {exc.position}"
    else:
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        problem = ", ".join(p for p in parts if p) or "invalid YAML"
    return ConfigError("", f"malformed YAML{where}: {problem}", source)


def parse_yaml(text: str, source: str | None = None) -> Any:
    """One YAML document with the strict key rules; `None` for an empty document."""
    loader = None
    try:
        loader = StrictSafeLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except RecursionError:
        raise ConfigError("", "malformed YAML: nested too deeply", source) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_stack_document(path: str | Path) -> dict[str, Any]:
    """The whole stack file as a dict whose `config` is a mapping, or a ConfigError."""
    p = Path(path)
    doc = parse_yaml(read_text(p), p.name)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ConfigError("config", "the stack file needs a top-level `config:` mapping", p.name)
    return doc
