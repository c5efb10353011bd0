"""Run the real Pulumi program (`__main__.py`) under the SDK's mock engine and record the graph.

This is what `pulumi preview` would send to providers, minus the providers: every
resource with its type, name, parent, dependencies and inputs (secret inputs kept
wrapped so nothing downstream can print them). No CLI, no cloud, no state.

Mock state is process-wide in the SDK: run one program per process (the CLI does;
tests use a subprocess or `fresh_runtime`).
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .. import defaults as D

SECRET_PLACEHOLDER = "[secret]"  # how a secret is displayed
#: What a secret *value* is replaced with offline: token-safe, so renderers that validate
#: keys (nginx's API-key map) accept it like a real key. Spelled unlike the templates'
#: `deployment.SECRET_PLACEHOLDER` (what a Secret's stringData holds until the component puts the
#: secret input in), so a template in a component input is not mistaken for a leaked secret.
VALUE_PLACEHOLDER = "plan-secret-value"


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    secret_keys: frozenset[str]
    dependencies: tuple[str, ...] = ()
    delete_before_replace: bool = False
    deleted_with: str | None = None
    #: `ResourceOptions.custom_timeouts` as sent to the engine (create, update, delete; "" = unset).
    custom_timeouts: tuple[str, str, str] | None = None

    @property
    def is_component(self) -> bool:
        return not self.custom


@dataclass
class ProgramRun:
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()

    def by_type(self, typ: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == typ]

    def by_urn(self) -> dict[str, RecordedResource]:
        return {r.urn: r for r in self.resources}


def _fake_pem(kind: str) -> str:
    return f"-----BEGIN {kind}-----\n{SECRET_PLACEHOLDER}\n-----END {kind}-----\n"


class RecordingMocks(pulumi.runtime.Mocks):
    """Outputs the providers would compute, shaped like the real ones.

    Provider-declared secret outputs are not applied by the mock engine, so the ones
    that matter (random passwords, private keys) are wrapped as secrets here.
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = rpc.wrap_rpc_secret(f"{VALUE_PLACEHOLDER}-{args.name}")
            state["bcryptHash"] = rpc.wrap_rpc_secret(SECRET_PLACEHOLDER)
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = rpc.wrap_rpc_secret(_fake_pem("PRIVATE KEY"))
            state["publicKeyPem"] = _fake_pem("PUBLIC KEY")
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            state["certPem"] = _fake_pem("CERTIFICATE")
        elif args.typ == "command:remote:Command":
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        elif args.typ.startswith("kubernetes:"):
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", args.name)
            state["metadata"] = meta
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            state["repoDigest"] = f"{state.get('name', '')}@sha256:{'0' * 64}"
            state["imageId"] = f"sha256:{'0' * 64}"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []  # no outputs, no check failures


class RecordingMonitor(pmocks.MockMonitor):
    """MockMonitor that also keeps parent, dependencies and secret-ness of inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name; the SDK's mock monitor is untyped)
        # Named, not super(): mypy's untyped_calls_exclude (pyproject.toml) matches the SDK's method by name.
        response = pmocks.MockMonitor.RegisterResource(self, request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = rpc.deserialize_properties(request.object, keep_unknowns=True)
        inputs: dict[str, Any] = {}
        secret_keys: set[str] = set()
        for k, v in raw.items():
            # The SDK lifts a secret nested in an input (a component's `ssh.privateKey`) to the whole
            # input, so the top level is the only place a secret wrapper appears.
            if rpc.is_rpc_secret(v):
                secret_keys.add(k)
                v = rpc.unwrap_rpc_secret(v)
            inputs[k] = v
        self.recorded.append(
            RecordedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=bool(request.custom),
                inputs=inputs,
                secret_keys=frozenset(secret_keys),
                dependencies=tuple(request.dependencies),
                delete_before_replace=bool(request.deleteBeforeReplace),
                deleted_with=request.deletedWith or None,
                custom_timeouts=_timeouts(request),
            )
        )
        return response


def _timeouts(request: Any) -> tuple[str, str, str] | None:
    t = getattr(request, "customTimeouts", None)
    if t is None or not (t.create or t.update or t.delete):
        return None
    return (t.create, t.update, t.delete)


def config_map_for(
    stack_config: Mapping[str, Any], secrets: Mapping[str, str], project: str = D.PROJECT
) -> tuple[dict[str, str], list[str]]:
    """Pulumi's config wire format: `project:key` → string (objects as JSON)."""
    import json

    out: dict[str, str] = {}
    for k, v in stack_config.items():
        out[f"{project}:{k}"] = v if isinstance(v, str) else json.dumps(v)
    for k, v in secrets.items():
        out[f"{project}:{k}"] = v
    return out, [f"{project}:{k}" for k in secrets]


def run_program(
    program_dir: Path,
    stack: str,
    plain_config: Mapping[str, Any],
    secrets: Mapping[str, str],
    *,
    project: str = D.PROJECT,
) -> ProgramRun:
    """Execute `program_dir/__main__.py` under mocks; return what it registered.

    `project` is the program's Pulumi project (its config namespace): this stack's, or another
    program's that uses the package (examples/)."""
    monitor = RecordingMonitor(RecordingMocks())
    pulumi.runtime.set_mocks(RecordingMocks(), project=project, stack=stack, preview=False, monitor=monitor)
    cfg, secret_keys = config_map_for(plain_config, secrets, project)
    pulumi.runtime.set_all_config(cfg, secret_keys)
    program = Path(program_dir).resolve()
    sys.path.insert(0, str(program))
    try:

        def program_main() -> None:
            runpy.run_path(str(program / "__main__.py"), run_name="__main__")

        _sync_await(run_pulumi_func(program_main))
        root = settings.get_root_resource()
        outputs: dict[str, Any] = {}
        secret_outs: set[str] = set()
        for name, value in (getattr(root, "outputs", None) or {}).items():
            out = pulumi.Output.from_input(value)
            outputs[name] = _sync_await(out.future())
            if _sync_await(out.is_secret()):
                secret_outs.add(name)
    finally:
        sys.path.remove(str(program))
    return ProgramRun(resources=monitor.recorded, outputs=outputs, secret_outputs=frozenset(secret_outs))
