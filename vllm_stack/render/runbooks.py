"""runbook-commands.md: the runbooks' commands with the names this stack really creates.

docs/runbooks.md is written once for every stack and says UNIT, CONTAINER, DEPLOYMENT,
NAMESPACE and BACKEND; this renderer fills them in from the deployment model
(`vllm_stack.deployment.build`), one section per replica / Deployment and one for the
monitoring services, so an operator copies a command that names a real unit, container or
Deployment. Commands are argv lists joined with `quoting.sh_join`; the text comes from a
template. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from .. import defaults as D
from ..deployment import (
    ALERTMANAGER_CONTAINER,
    GRAFANA_CONTAINER,
    PROMETHEUS_CONTAINER,
    Deployment,
)
from ..quoting import http_url, sh_join
from . import k8s_common as KC

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "runbook_commands.md.j2"
#: The placeholders docs/runbooks.md uses (and the only ones it may use in a command).
PLACEHOLDERS = ("UNIT", "CONTAINER", "DEPLOYMENT", "NAMESPACE", "BACKEND")


@dataclass(frozen=True)
class Section:
    title: str
    where: str  # "on host gpu-1" / "with kubectl"
    names: tuple[tuple[str, str], ...]  # (kind, name): what the commands act on
    commands: tuple[tuple[str, str], ...]  # (purpose, command line)


def _docker(name: str, host: str | None, title: str, health: str | None = None) -> Section:
    """`health`: the replica's /health URL (vLLM containers have a docker health check; the
    monitoring containers have none, so no health commands for them)."""
    cmds = [
        ("logs", sh_join(["docker", "logs", "--tail", "200", name])),
        ("restart", sh_join(["docker", "restart", name])),
    ]
    if health:
        cmds[1:1] = [
            ("docker health status", sh_join(["docker", "inspect", "--format", "{{.State.Health.Status}}", name]))
        ]
        cmds.insert(0, ("health", sh_join(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", health])))
    return Section(title, f"on host {host}", (("container", name),), tuple(cmds))


def _systemd(unit: str, host: str | None, title: str, health: str) -> Section:
    return Section(
        title,
        f"on host {host}",
        (("unit", unit),),
        (
            ("health", sh_join(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", health])),
            ("logs", sh_join(["journalctl", "-u", unit, "-n", "200", "--no-pager"])),
            ("status", sh_join(["systemctl", "status", unit, "--no-pager"])),
            ("restart", sh_join(["sudo", "systemctl", "restart", unit])),
        ),
    )


def _k8s(ns: str, deployment: str, title: str, model: str | None = None, sidecars: tuple[str, ...] = ()) -> Section:
    d = f"deploy/{deployment}"
    cmds = [
        ("logs", sh_join(["kubectl", "-n", ns, "logs", d, "--tail", "200"])),
        *((f"logs of {c}", sh_join(["kubectl", "-n", ns, "logs", d, "-c", c, "--tail", "200"])) for c in sidecars),
        ("rollout", sh_join(["kubectl", "-n", ns, "rollout", "status", d])),
        ("restart", sh_join(["kubectl", "-n", ns, "rollout", "restart", d])),
    ]
    if model is not None:
        cmds.insert(
            1, ("pods of the model", sh_join(["kubectl", "-n", ns, "get", "pods", "-l", f"{D.LABEL_MODEL}={model}"]))
        )
    return Section(title, "with kubectl", (("namespace", ns), ("deployment", deployment)), tuple(cmds))


def sections(model: Deployment) -> list[Section]:
    out: list[Section] = []
    if model.runtime == "kubernetes":
        ns = model.namespace or ""
        for s in model.servers:
            assert s.deployment is not None
            out.append(_k8s(ns, s.deployment, f"{s.model} ({s.capacity})", s.model))
        out += [_k8s(ns, r.name, f"Router of {r.model}") for r in model.routers]
        exporter = model.front_exporter.sidecar if model.front_exporter else None
        out.append(_k8s(ns, KC.FRONT, "Front (nginx)", sidecars=(exporter,) if exporter else ()))
        probe = model.tls_probe.sidecar if model.tls_probe else None
        if model.own_prometheus:
            out.append(_k8s(ns, KC.PROMETHEUS, "Prometheus", sidecars=(probe,) if probe else ()))
        if model.alertmanager_url:
            out.append(_k8s(ns, KC.ALERTMANAGER, "Alertmanager"))
        if model.grafana_url:
            out.append(_k8s(ns, KC.GRAFANA, "Grafana"))
        return out
    for s in model.servers:
        assert s.replica is not None
        health = http_url(s.bind, s.replica.port, D.HEALTH_PATH)
        title = f"{s.model} replica {s.name} ({s.capacity})"
        if s.unit is not None:
            out.append(_systemd(s.unit, s.replica.host, title, health))
        else:
            assert s.container is not None
            out.append(_docker(s.container, s.replica.host, title, health))
    for r in model.routers:
        health = http_url(r.address, r.port, D.HEALTH_PATH)
        if r.unit is not None:
            out.append(_systemd(r.unit, r.host, f"Router of {r.model}", health))
        elif r.container is not None:
            out.append(_docker(r.container, r.host, f"Router of {r.model}"))
    ex = model.front_exporter
    if ex is not None:
        metrics = http_url(ex.scrape_target.address, ex.scrape_target.port, D.METRICS_PATH)
        if ex.unit is not None:
            out.append(_systemd(ex.unit, ex.host, "nginx exporter of the front", metrics))
        elif ex.container is not None:
            out.append(_docker(ex.container, ex.host, "nginx exporter of the front"))
    mon = model.monitoring_host
    out.append(_docker(PROMETHEUS_CONTAINER, mon, "Prometheus"))
    if model.tls_probe is not None and model.tls_probe.container is not None:
        out.append(_docker(model.tls_probe.container, mon, "Blackbox exporter (the front's certificate)"))
    if model.alertmanager_url:
        out.append(_docker(ALERTMANAGER_CONTAINER, mon, "Alertmanager"))
    if model.grafana_url:
        out.append(_docker(GRAFANA_CONTAINER, mon, "Grafana"))
    return out


def render_runbook_commands(model: Deployment, runbook_url: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(model=model, sections=sections(model), runbook_url=runbook_url)
