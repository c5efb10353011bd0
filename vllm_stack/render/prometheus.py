"""prometheus.yml: a pure function of the config and the scrape targets.

One scrape job per `ScrapeTarget.job` (vllm, dcgm, optionally nginx), static_configs grouped
by label set (model, capacity, host), the alert rule files and an optional Alertmanager.
The YAML is produced by `yaml.safe_dump` of a dict: no string pasting, deterministic order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import yaml

from .. import defaults as D
from ..config import StackConfig
from ..endpoints import ScrapeTarget
from ..quoting import host_port, http_url
from . import front_monitoring as FM

#: docker platform: Prometheus listens on the monitoring host's loopback only; Grafana shares
#: that host's network namespace (`network_mode: host`) and queries LOCAL_URL.
LOCAL_LISTEN = host_port(D.LOOPBACK, D.PROMETHEUS_PORT)
LOCAL_URL = http_url(D.LOOPBACK, D.PROMETHEUS_PORT)

#: Jobs render in this order; unknown jobs follow alphabetically.
JOB_ORDER = (D.JOB_VLLM, D.JOB_DCGM, D.JOB_NGINX, D.JOB_BLACKBOX)

_FROM_CONFIG: Any = object()


def _seconds(n: int) -> str:
    return f"{int(n)}s"


def _job_key(job: str) -> tuple[int, str]:
    return (JOB_ORDER.index(job) if job in JOB_ORDER else len(JOB_ORDER), job)


def scrape_configs(targets: Sequence[ScrapeTarget]) -> list[dict[str, Any]]:
    """The `scrape_configs` list (also used by the prometheus-operator path)."""
    by_job: dict[str, list[ScrapeTarget]] = {}
    for t in targets:
        by_job.setdefault(t.job, []).append(t)
    out: list[dict[str, Any]] = []
    for job in sorted(by_job, key=_job_key):
        members = by_job[job]
        paths = sorted({t.metrics_path for t in members})
        # The most common path is the job's; other paths ride on `__metrics_path__` per group.
        job_path = max(paths, key=lambda p: (sum(t.metrics_path == p for t in members), p == D.METRICS_PATH, p))
        groups: OrderedDict[tuple[tuple[tuple[str, str], ...], str], list[str]] = OrderedDict()
        for t in sorted(members, key=lambda t: (tuple(sorted(t.labels)), t.metrics_path, t.hostport)):
            key = (tuple(sorted(t.labels)), t.metrics_path)
            hostports = groups.setdefault(key, [])
            if t.hostport not in hostports:
                hostports.append(t.hostport)
        static_configs = []
        for (labels, path), hostports in groups.items():
            entry: dict[str, Any] = {"targets": hostports}
            label_map = dict(labels)
            if path != job_path:
                label_map["__metrics_path__"] = path
            if label_map:
                entry["labels"] = label_map
            static_configs.append(entry)
        out.append({"job_name": job, "metrics_path": job_path, "static_configs": static_configs})
    return out


def prometheus_config(
    cfg: StackConfig,
    targets: Sequence[ScrapeTarget],
    *,
    rule_files: Sequence[str],
    alertmanager: str | None = _FROM_CONFIG,
    scrape_interval_override: str | None = None,
    probes: Sequence[str] = (),
    blackbox: str = FM.BLACKBOX_LISTEN,
) -> dict[str, Any]:
    """The prometheus.yml document as a dict (see `render_prometheus_yml`)."""
    if alertmanager is _FROM_CONFIG:
        from .alertmanager import target

        alertmanager = target(cfg)
    interval = scrape_interval_override or _seconds(cfg.monitoring.scrape_interval_seconds)
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"environment": cfg.environment},
        },
        "rule_files": list(rule_files),
        "scrape_configs": scrape_configs(targets) + [FM.probe_scrape_config(p, blackbox) for p in probes],
    }
    if alertmanager:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return doc


def render_prometheus_yml(
    cfg: StackConfig,
    targets: Sequence[ScrapeTarget],
    *,
    rule_files: Sequence[str],
    alertmanager: str | None = _FROM_CONFIG,
    scrape_interval_override: str | None = None,
    probes: Sequence[str] = (),
    blackbox: str = FM.BLACKBOX_LISTEN,
) -> str:
    """prometheus.yml text.

    `alertmanager` defaults to `alertmanager.target(cfg)`: the stack's own Alertmanager or
    `monitoring.alertmanager.external` (pass None to leave alerting out).
    `scrape_interval_override` (e.g. "1s") is the test profile: it replaces the configured
    scrape and evaluation interval so loopback tests see alerts within seconds.
    `probes`: URLs the blackbox exporter at `blackbox` probes (job `blackbox-tls`; the
    deployment model's `probe_targets()`).
    """
    doc = prometheus_config(
        cfg,
        targets,
        rule_files=rule_files,
        alertmanager=alertmanager,
        scrape_interval_override=scrape_interval_override,
        probes=probes,
        blackbox=blackbox,
    )
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
