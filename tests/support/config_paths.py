"""Key paths into a config document: `models[].pool.spot`, `prices.<gpu>.onDemandPerHour`.

The config tests walk the pydantic model for every field and set one value at a time; this is
the one implementation of "set the first instance of this path and say which key that was".
"""

from __future__ import annotations

from typing import Any


def set_path(doc: dict, pattern: str, value: Any) -> str | None:
    """Set the first instance of `pattern` (`[]` = item 0, `<gpu>` = the first map key) in `doc`;
    return the concrete key path (`models[0].pool.spot`), or None when `doc` does not reach it."""
    parts = pattern.replace("[]", ".[]").split(".")
    cur: Any = doc
    concrete = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: Any
        if part == "[]":
            if not isinstance(cur, list) or not cur:
                return None
            key, concrete = 0, concrete + "[0]"
        elif part == "<gpu>":
            if not isinstance(cur, dict) or not cur:
                return None
            key = next(iter(cur))
            concrete += f".{key}"
        else:
            key = part
            concrete += ("." if concrete else "") + part
            if not last and (not isinstance(cur, dict) or cur.get(key) is None):
                return None
        if last:
            cur[key] = value
        else:
            cur = cur[key]
    return concrete
