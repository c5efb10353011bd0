"""Regression (issue 13): every name in every runbook command is one the stack really creates.

For each shipped stack the program runs under the mock engine; the rendered
`monitoring/runbook-commands.md` is parsed command by command and each unit, container,
Deployment, namespace and /health URL it names must be a resource (or an input of one) of that
very program run. docs/runbooks.md itself may only name placeholders.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .conftest import ROOT, dump

STACKS = sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("Pulumi.*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PLACEHOLDERS = {"UNIT", "CONTAINER", "DEPLOYMENT", "NAMESPACE", "BACKEND"}


def _commands(markdown: str) -> list[list[str]]:
    out = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        for line in block.splitlines():
            line = line.split("    # ")[0].strip()
            if line:
                out.append(shlex.split(line))
    return out


def _created(d: dict) -> dict[str, set[str]]:
    res = d["resources"]
    containers = {r["inputs"]["name"] for r in res if r["type"] == "docker:index/container:Container"}
    units = {
        r["inputs"]["unitName"]
        for r in res
        if r["type"] in ("vllmstack:index:SystemdVllmServer", "vllmstack:index:SystemdNginxExporter")
    }
    deployments = {r["inputs"]["metadata"]["name"] for r in res if r["type"] == "kubernetes:apps/v1:Deployment"}
    namespaces = {r["inputs"]["metadata"]["name"] for r in res if r["type"] == "kubernetes:core/v1:Namespace"}
    endpoints = set()
    for r in res:
        if r["type"] in ("vllmstack:index:DockerVllmServer", "vllmstack:index:SystemdVllmServer"):
            endpoints.add(f"{r['inputs']['address']}:{int(r['inputs']['port'])}")
        if r["type"] in ("vllmstack:index:SystemdNginxExporter", "vllmstack:index:DockerNginxExporter"):
            endpoints.add(r["inputs"]["metricsUrl"].split("//", 1)[1].split("/", 1)[0])
    return {
        "container": containers,
        "unit": units,
        "deployment": deployments,
        "namespace": namespaces,
        "backend": endpoints,
    }


def _named(argv: list[str]) -> list[tuple[str, str]]:
    """(kind, name) for every object a runbook command acts on."""
    out: list[tuple[str, str]] = []
    prog = argv[0] if argv[0] != "sudo" else argv[1]
    rest = argv[1:] if argv[0] != "sudo" else argv[2:]
    if prog == "journalctl":
        out.append(("unit", rest[rest.index("-u") + 1]))
    elif prog == "systemctl":
        out.append(("unit", rest[1]))
    elif prog == "docker":
        out.append(("container", rest[-1]))
    elif prog == "kubectl":
        out.append(("namespace", rest[rest.index("-n") + 1]))
        out += [("deployment", a.removeprefix("deploy/")) for a in rest if a.startswith("deploy/")]
    elif prog == "curl":
        url = rest[-1]
        out.append(("backend", url.split("//", 1)[1].split("/", 1)[0]))
    else:
        raise AssertionError(f"runbook command of an unknown program: {argv}")
    return out


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_every_name_in_every_runbook_command_exists_in_the_stack(stack):
    d = dump(str(stack))
    text = d["artifacts"]["monitoring/runbook-commands.md"]["content"]
    created = _created(d)
    cmds = _commands(text)
    assert cmds
    kinds = set()
    for argv in cmds:
        for kind, name in _named(argv):
            kinds.add(kind)
            assert name in created[kind], (
                f"{stack.name}: `{shlex.join(argv)}` names {kind} {name!r}; created: {sorted(created[kind])}"
            )
    # every vLLM workload the program creates has its section
    for kind in ("unit", "deployment"):
        for name in created[kind]:
            assert f"`{name}`" in text, (stack.name, kind, name)
    vllm_containers = {c for c in created["container"] if re.search(r"-(od|spot)-\d+$", c)}
    for name in vllm_containers:
        assert f"`{name}`" in text, (stack.name, name)
    assert kinds, stack.name


def test_the_runbooks_name_placeholders_not_made_up_names():
    found = []
    for argv in _commands(RUNBOOKS.read_text()):
        if argv[0] in ("journalctl", "systemctl", "docker", "kubectl", "sudo"):
            found += _named(argv)
    assert found, "the runbooks have log commands"
    assert {name for _, name in found} <= PLACEHOLDERS, found
    # and the inline mentions too
    for m in re.finditer(r"`(journalctl -u|docker logs -f|kubectl -n) ([^`\s]+)", RUNBOOKS.read_text()):
        assert m.group(2) in PLACEHOLDERS, m.group(0)


def test_the_check_bites_on_a_made_up_name(tmp_path: Path):
    d = dump(str(ROOT / "Pulumi.dev.yaml"))
    text = d["artifacts"]["monitoring/runbook-commands.md"]["content"].replace("vllm-llama-8b-od-0", "vllm")
    created = _created(d)
    bad = [n for argv in _commands(text) for k, n in _named(argv) if n not in created[k]]
    assert "vllm" in bad
