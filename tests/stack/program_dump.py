"""Run the Pulumi program under mocks for one stack file and dump what it registered, raw.

Used by tests/stack in a subprocess (mock state is process-wide). Unlike `plan --json`,
secret inputs are dumped with their real values so tests can prove where they do and do
not travel. Usage: python -m tests.stack.program_dump STACK_FILE SECRETS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    stack_file, secrets = Path(sys.argv[1]), json.loads(sys.argv[2])
    sys.path.insert(0, str(ROOT))
    from vllm_stack.components import artifacts
    from vllm_stack.loader import split_namespaced
    from vllm_stack.offline.engine import run_program
    from vllm_stack.offline.plan import _scrub

    doc = yaml.safe_load(stack_file.read_text())
    plain, _ = split_namespaced(doc["config"])
    artifacts.reset()
    run = run_program(ROOT, stack_file.stem.split(".")[-1], plain, secrets)
    print(
        json.dumps(
            {
                "resources": [
                    {
                        "urn": r.urn,
                        "type": r.type,
                        "name": r.name,
                        "parent": r.parent,
                        "inputs": _scrub_keep_secrets(r.inputs),
                        "secretKeys": sorted(r.secret_keys),
                        "dependencies": list(r.dependencies),
                        "customTimeouts": list(r.custom_timeouts) if r.custom_timeouts else None,
                    }
                    for r in run.resources
                ],
                "outputs": {k: _scrub(v) for k, v in run.outputs.items()},
                "secretOutputs": sorted(run.secret_outputs),
                "artifacts": {
                    p: {"content": a.content, "mode": a.mode, "secret": a.secret}
                    for p, a in artifacts.collected().items()
                },
            },
            default=str,
        )
    )


def _scrub_keep_secrets(value):
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        return {"__secret__": _scrub_keep_secrets(rpc.unwrap_rpc_secret(value))}
    if isinstance(value, dict):
        return {k: _scrub_keep_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_keep_secrets(v) for v in value]
    if value is rpc.UNKNOWN:
        return "[unknown]"
    return value


if __name__ == "__main__":
    main()
