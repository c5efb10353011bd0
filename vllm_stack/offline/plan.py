"""The offline plan: config → program under mocks → policies → artifacts → summary.

`python -m vllm_stack plan dev` is what a reviewer runs before `pulumi up`: it needs no
CLI, no cloud and no decrypted secrets. Secrets are `[secret]` placeholders end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..capacity import stack_projection
from ..catalog import lookup_model
from ..config import StackConfig
from ..loader import load_stack_file, split_namespaced
from .engine import SECRET_PLACEHOLDER, VALUE_PLACEHOLDER, ProgramRun, RecordedResource, run_program

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PlanResult:
    stack: str
    cfg: StackConfig
    run: ProgramRun
    violations: list[dict]
    warnings: list[str]
    artifacts: dict[str, Any]           # path -> Artifact
    projection: dict
    document: dict = field(default_factory=dict)

    @property
    def mandatory_failures(self) -> list[dict]:
        return [v for v in self.violations if v["enforcement"] == "mandatory"]


def _scrub(value: Any) -> Any:
    """JSON-able copy of a resource input; unknowns are shown, never guessed."""
    from pulumi.runtime import rpc
    if value is rpc.UNKNOWN or (isinstance(value, str) and value == rpc.UNKNOWN):
        return "[unknown]"
    if rpc.is_rpc_secret(value):
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def public_inputs(r: RecordedResource) -> dict:
    return {k: (SECRET_PLACEHOLDER if k in r.secret_keys else _scrub(v)) for k, v in sorted(r.inputs.items())}


def needed_secrets(cfg: StackConfig) -> list[tuple[str, str]]:
    """Secrets `pulumi up` cannot do without, with the reason (generated ones are not listed)."""
    needed = []
    if cfg.platform == "docker":
        needed.append(("sshPrivateKey", "SSH to the hosts"))
    if any((lookup_model(m.model) or m.model_info()).gated for m in cfg.models if m.architecture is None):
        needed.append(("hfToken", "downloading gated models"))
    if cfg.front.tls == "provided":
        needed += [("tlsCertificate", "front.tls=provided"), ("tlsPrivateKey", "front.tls=provided")]
    return needed


def secret_warnings(cfg: StackConfig) -> list[str]:
    out = []
    for key, why in needed_secrets(cfg):
        if key not in cfg.secrets:
            out.append(f"secret `{key}` is not set; `pulumi up` will need it ({why}): "
                       f"pulumi config set --secret {key} ...")
    if cfg.secrets:
        out.append(f"{len(cfg.secrets)} secret value(s) not decrypted offline ({', '.join(sorted(cfg.secrets))}); "
                   f"the plan uses `{SECRET_PLACEHOLDER}` placeholders")
    return out


def build_plan(stack_path: Path, program_dir: Path = REPO_ROOT) -> PlanResult:
    from components import artifacts as sink  # the program's sink, in this process
    from ..policy_runner import run_policies

    cfg = load_stack_file(stack_path)
    doc = yaml.safe_load(stack_path.read_text())
    plain, secrets = split_namespaced(doc["config"], stack_path.name)
    stack = stack_path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    # Secrets that are set or needed get placeholders: the plan goes on, and warns below.
    placeholders = {k: VALUE_PLACEHOLDER for k in [*secrets, *(k for k, _ in needed_secrets(cfg))]}
    sink.reset()
    run = run_program(program_dir, stack, plain, placeholders)
    violations = run_policies(run.resources, cfg)
    projection = stack_projection(cfg)
    result = PlanResult(stack=stack, cfg=cfg, run=run, violations=violations, warnings=secret_warnings(cfg),
                        artifacts=sink.collected(), projection=projection)
    result.document = plan_document(result)
    return result


def plan_document(p: PlanResult) -> dict:
    outputs = {k: (SECRET_PLACEHOLDER if k in p.run.secret_outputs else _scrub(v)) for k, v in sorted(p.run.outputs.items())}
    return {
        "stack": p.stack,
        "environment": p.cfg.environment,
        "platform": p.cfg.platform,
        "resources": [{"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent,
                       "inputs": public_inputs(r), "secretInputs": sorted(r.secret_keys),
                       "dependencies": list(r.dependencies)} for r in p.run.resources],
        "violations": p.violations,
        "warnings": p.warnings,
        "capacity": p.projection,
        "artifacts": sorted(p.artifacts),
        "outputs": outputs,
    }


def write_artifacts(p: PlanResult, out: Path) -> None:
    """All or nothing: write into a temp dir beside `out`, then swap it in."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, art in sorted(p.artifacts.items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, art.mode)
            with os.fdopen(fd, "w") as fh:
                fh.write(art.content)
            os.chmod(dest, art.mode)
        (tmp / "plan.json").write_text(json.dumps(p.document, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
