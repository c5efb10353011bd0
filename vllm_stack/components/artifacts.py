"""Where components leave the files they rendered, so the offline plan can write them out.

Under `pulumi up` nobody reads the sink. Secret-bearing files are recorded with
placeholders only (the real content exists solely inside secret Outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Artifact:
    path: str  # relative path in the plan output, e.g. hosts/gpu-a/vllm-llama.service
    content: str
    mode: int = 0o644
    secret: bool = False


_SINK: dict[str, Artifact] = {}


def record(path: str, content: str, mode: int = 0o644, secret: bool = False) -> None:
    if path in _SINK and _SINK[path].content != content:
        raise ValueError(f"two components rendered different content for {path}")
    _SINK[path] = Artifact(path, content, mode, secret)


def collected() -> dict[str, Artifact]:
    return dict(_SINK)


def reset() -> None:
    _SINK.clear()


def record_k8s(obj: dict[str, Any]) -> None:
    """A rendered Kubernetes object as `k8s/<kind>-<name>.yaml` (Secrets hold placeholders only)."""
    import yaml

    kind, name = obj["kind"].lower(), obj["metadata"]["name"]
    secret = kind == "secret"
    record(f"k8s/{kind}-{name}.yaml", yaml.safe_dump(obj, sort_keys=False), 0o600 if secret else 0o644, secret)
