"""Grafana provisioning: the Prometheus datasource, the dashboard provider and the vLLM dashboard.

Everything is built as Python dicts and serialised with yaml.safe_dump / json.dumps: no
hand-written JSON text. The dashboard follows Grafana's classic JSON model (schemaVersion
39) and type-checks against @grafana/schema (tools/check-grafana.mjs).

`panel_and_alert_queries` lists every PromQL expression the dashboard and the alert rules
run, with Grafana variables replaced, so tests can execute them against real vLLM.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .. import defaults as D
from ..config import StackConfig
from .prometheus import LOCAL_URL
from .alerts import (
    ERROR_RATE,
    GPU_TEMPERATURE_HIGH,
    GPU_VRAM_HIGH,
    HIGH_TTFT_P95,
    KV_CACHE_PRESSURE,
    QUEUE_DEPTH,
    alert_rules,
    num,
)

DATASOURCE = {"type": "prometheus", "uid": D.GRAFANA_DATASOURCE_UID}
VAR_MODEL = D.LABEL_VLLM_MODEL_NAME  # the dashboard variable is named after the label it filters
RATE = "$__rate_interval"
DASHBOARD_FILE = "dashboards/vllm.json"
DATASOURCE_FILE = "datasources/prometheus.yaml"
PROVIDER_FILE = "dashboards/provider.yaml"
#: docker platform: where Prometheus listens on the monitoring host (render/prometheus.py).
DEFAULT_PROMETHEUS_URL = LOCAL_URL

#: Grafana variables -> values that make a panel query plain PromQL (for running it against Prometheus).
GRAFANA_VARIABLE_VALUES = {RATE: "1m", f"${VAR_MODEL}": ".*"}


def _model_sel(metric: str, **extra: str) -> str:
    matchers = [f'{D.LABEL_VLLM_MODEL_NAME}=~"${VAR_MODEL}"'] + [f"{k}{v}" for k, v in extra.items()]
    return f"{metric}{{{','.join(matchers)}}}"


def _quantile(q: float, histogram: str) -> str:
    return (
        f"histogram_quantile({num(q)}, sum by (le, {D.LABEL_VLLM_MODEL_NAME}) "
        f"(rate({_model_sel(histogram + '_bucket')}[{RATE}])))"
    )


def _pct(q: float) -> str:
    return f"p{num(q * 100)}"


def _thresholds(value: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if value is not None:
        steps.append({"color": "red", "value": value})
    return {"mode": "absolute", "steps": steps}


class _Layout:
    """Two panels per row, rows of height 8; row headers span the width."""

    def __init__(self) -> None:
        self.y = 0
        self.col = 0
        self.next_id = 1

    def take_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title: str) -> dict[str, Any]:
        if self.col:
            self.y += 8
            self.col = 0
        panel = {
            "type": "row",
            "id": self.take_id(),
            "title": title,
            "collapsed": False,
            "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        }
        self.y += 1
        return panel

    def pos(self) -> dict[str, int]:
        pos = {"h": 8, "w": 12, "x": 12 * self.col, "y": self.y}
        self.col += 1
        if self.col == 2:
            self.col = 0
            self.y += 8
        return pos


def _panel(
    layout: _Layout,
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    *,
    unit: str,
    threshold: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": _thresholds(threshold),
        "custom": {"thresholdsStyle": {"mode": "line" if threshold is not None else "off"}},
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "id": layout.take_id(),
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": layout.pos(),
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": dict(DATASOURCE),
                "expr": expr,
                "legendFormat": legend,
                "range": True,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def routing_panels(L: _Layout) -> list[dict[str, Any]]:
    """The routing tier's row (`routing_monitoring.routing_panel_queries`): per-replica load, running
    requests per replica, prefix-cache hit rate."""
    from .routing_monitoring import routing_panel_queries

    (load, legend_l), (running, legend_r), (hit, legend_h) = routing_panel_queries()
    return [
        L.row("Routing"),
        _panel(
            L,
            "Requests per replica (router)",
            "Requests/s the router sent to each worker.",
            [(load, legend_l)],
            unit="reqps",
            minimum=0,
        ),
        _panel(
            L,
            "Running requests per replica",
            f"{D.METRIC_REQUESTS_RUNNING} per vLLM instance.",
            [(running, legend_r)],
            unit="short",
            minimum=0,
        ),
        _panel(
            L,
            "Prefix-cache hit rate",
            f"{D.METRIC_PREFIX_HITS} / {D.METRIC_PREFIX_QUERIES} per model.",
            [(hit, legend_h)],
            unit="percentunit",
            threshold=D.ALERT_PREFIX_HIT_RATE,
            minimum=0,
            maximum=1,
        ),
    ]


def cost_panels(L: _Layout) -> list[dict[str, Any]]:
    """The live-cost row (`cost_rules`' recording rules): $/hour and $/1M tokens, live beside the plan."""
    from .cost_rules import cost_panel_queries

    out = [L.row("Cost")]
    for title, unit, live, plan in cost_panel_queries():
        out.append(
            _panel(
                L,
                title,
                "Live (running replicas x catalog prices, measured tokens/s) beside the plan's figure.",
                [(live, f"{{{{{D.SCRAPE_LABEL_MODEL}}}}} live"), (plan, f"{{{{{D.SCRAPE_LABEL_MODEL}}}}} plan")],
                unit=unit,
                minimum=0,
            )
        )
    return out


def dashboard(cfg: StackConfig) -> dict[str, Any]:
    """The vLLM dashboard (classic JSON model) as a dict."""
    a = cfg.monitoring.alerts
    mn = f"{{{{{D.LABEL_VLLM_MODEL_NAME}}}}}"
    inst = "{{instance}}"
    gpu_legend = f"{{{{{D.SCRAPE_LABEL_HOST}}}}} GPU {{{{{D.LABEL_DCGM_GPU}}}}}"
    by_model = f"sum by ({D.LABEL_VLLM_MODEL_NAME})"
    by_model_inst = f"sum by ({D.LABEL_VLLM_MODEL_NAME}, instance)"
    L = _Layout()
    panels: list[dict[str, Any]] = [L.row("vLLM")]
    panels.append(
        _panel(
            L,
            "Request rate",
            f"Finished requests per second by finish reason ({D.METRIC_REQUEST_SUCCESS}).",
            [
                (
                    f"sum by ({D.LABEL_VLLM_MODEL_NAME}, {D.LABEL_FINISHED_REASON}) "
                    f"(rate({_model_sel(D.METRIC_REQUEST_SUCCESS)}[{RATE}]))",
                    f"{mn} {{{{{D.LABEL_FINISHED_REASON}}}}}",
                )
            ],
            unit="reqps",
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "Requests waiting",
            f"Queue depth per replica; the {QUEUE_DEPTH} threshold is the red line.",
            [(f"{by_model_inst} ({_model_sel(D.METRIC_REQUESTS_WAITING)})", f"{mn} {inst}")],
            unit="short",
            threshold=a.queue_waiting,
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "Requests running",
            "Requests in the running batch per replica (bounded by --max-num-seqs).",
            [(f"{by_model_inst} ({_model_sel(D.METRIC_REQUESTS_RUNNING)})", f"{mn} {inst}")],
            unit="short",
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "KV cache usage",
            f"{D.METRIC_KV_CACHE_USAGE} (0-1) per replica; {KV_CACHE_PRESSURE} above the line.",
            [(f"max by ({D.LABEL_VLLM_MODEL_NAME}, instance) ({_model_sel(D.METRIC_KV_CACHE_USAGE)})", f"{mn} {inst}")],
            unit="percentunit",
            threshold=a.kv_cache_usage,
            minimum=0,
            maximum=1,
        )
    )
    panels.append(
        _panel(
            L,
            "Time to first token",
            f"TTFT quantiles from {D.METRIC_TTFT}; {HIGH_TTFT_P95} above the line (p95).",
            [(_quantile(q, D.METRIC_TTFT), f"{mn} {_pct(q)}") for q in D.DASHBOARD_QUANTILES],
            unit="s",
            threshold=a.ttft_p95_seconds,
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "Inter-token latency",
            f"Quantiles of {D.METRIC_ITL} (time per output token).",
            [(_quantile(q, D.METRIC_ITL), f"{mn} {_pct(q)}") for q in D.DASHBOARD_QUANTILES],
            unit="s",
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "Tokens per second",
            "Generated and prompt tokens per second.",
            [
                (f"{by_model} (rate({_model_sel(D.METRIC_GENERATION_TOKENS)}[{RATE}]))", f"{mn} generation"),
                (f"{by_model} (rate({_model_sel(D.METRIC_PROMPT_TOKENS)}[{RATE}]))", f"{mn} prompt"),
            ],
            unit="short",
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "End-to-end request latency",
            f"Quantiles of {D.METRIC_E2E_LATENCY}.",
            [(_quantile(q, D.METRIC_E2E_LATENCY), f"{mn} {_pct(q)}") for q in D.DASHBOARD_QUANTILES],
            unit="s",
            minimum=0,
        )
    )
    panels.append(
        _panel(
            L,
            "Preemptions",
            f"Sequences preempted per {D.ALERT_RATE_WINDOW} ({D.METRIC_PREEMPTIONS}).",
            [
                (
                    f"{by_model_inst} (increase({_model_sel(D.METRIC_PREEMPTIONS)}[{D.ALERT_RATE_WINDOW}]))",
                    f"{mn} {inst}",
                )
            ],
            unit="short",
            threshold=a.preemptions_5m,
            minimum=0,
        )
    )
    failed = _model_sel(
        D.METRIC_REQUEST_SUCCESS, **{D.LABEL_FINISHED_REASON: f'=~"{"|".join(D.FAILED_FINISH_REASONS)}"'}
    )
    panels.append(
        _panel(
            L,
            "Failed request share",
            f"Share of requests finished as {'/'.join(D.FAILED_FINISH_REASONS)}; {ERROR_RATE} above the line.",
            [
                (
                    f"{by_model} (rate({failed}[{RATE}])) / {by_model} "
                    f"(rate({_model_sel(D.METRIC_REQUEST_SUCCESS)}[{RATE}]))",
                    mn,
                )
            ],
            unit="percentunit",
            threshold=a.error_rate,
            minimum=0,
        )
    )
    panels.append(L.row("GPU (DCGM)"))
    panels.append(
        _panel(
            L,
            "GPU temperature",
            f"{D.DCGM_GPU_TEMP}; {GPU_TEMPERATURE_HIGH} above the line.",
            [(D.DCGM_GPU_TEMP, gpu_legend)],
            unit="celsius",
            threshold=a.gpu_temp_celsius,
        )
    )
    panels.append(
        _panel(
            L,
            "GPU utilization",
            f"{D.DCGM_GPU_UTIL} (percent).",
            [(D.DCGM_GPU_UTIL, gpu_legend)],
            unit="percent",
            minimum=0,
            maximum=100,
        )
    )
    panels.append(
        _panel(L, "VRAM used", f"{D.DCGM_FB_USED} (MiB).", [(D.DCGM_FB_USED, gpu_legend)], unit="mbytes", minimum=0)
    )
    panels.append(
        _panel(
            L,
            "VRAM usage",
            f"Framebuffer used / total; {GPU_VRAM_HIGH} above the line.",
            [(f"{D.DCGM_FB_USED} / ({D.DCGM_FB_USED} + {D.DCGM_FB_FREE})", gpu_legend)],
            unit="percentunit",
            threshold=a.vram_usage,
            minimum=0,
            maximum=1,
        )
    )
    if any(m.routing.enabled for m in cfg.models):
        panels += routing_panels(L)
    panels += cost_panels(L)
    variable = {
        "type": "query",
        "name": VAR_MODEL,
        "label": "Model",
        "datasource": dict(DATASOURCE),
        "query": f"label_values({D.METRIC_REQUESTS_RUNNING}, {D.LABEL_VLLM_MODEL_NAME})",
        "refresh": 2,  # on time range change
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": "All", "value": "$__all"},
        "options": [],
        "hide": 0,
    }
    return {
        "id": None,
        "uid": D.GRAFANA_DASHBOARD_UID,
        "title": "vLLM",
        "description": f"{D.PROJECT}: vLLM serving and GPU health ({cfg.environment})",
        "tags": [D.PROJECT, "vllm"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": D.GRAFANA_SCHEMA_VERSION,
        "version": 1,
        "refresh": D.GRAFANA_DASHBOARD_REFRESH,
        "time": {"from": "now-1h", "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "templating": {"list": [variable]},
        "annotations": {"list": []},
        "panels": panels,
    }


def datasource_doc(cfg: StackConfig, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": D.GRAFANA_DATASOURCE_NAME,
                "type": "prometheus",
                "uid": D.GRAFANA_DATASOURCE_UID,
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": f"{cfg.monitoring.scrape_interval_seconds}s", "httpMethod": "POST"},
            }
        ],
    }


def provider_doc(provisioning_dir: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": D.PROJECT,
                "orgId": 1,
                "folder": D.GRAFANA_DASHBOARD_FOLDER,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {
                    "path": f"{provisioning_dir}/{DASHBOARD_FILE.rsplit('/', 1)[0]}",
                    "foldersFromFilesStructure": False,
                },
            }
        ],
    }


def render_grafana(
    cfg: StackConfig,
    *,
    prometheus_url: str = DEFAULT_PROMETHEUS_URL,
    provisioning_dir: str = D.GRAFANA_PROVISIONING_DIR,
) -> dict[str, str]:
    """Provisioning files keyed by their path under `provisioning_dir`:
    `datasources/prometheus.yaml`, `dashboards/provider.yaml`, `dashboards/vllm.json`."""
    return {
        DATASOURCE_FILE: yaml.safe_dump(datasource_doc(cfg, prometheus_url), sort_keys=False),
        PROVIDER_FILE: yaml.safe_dump(provider_doc(provisioning_dir), sort_keys=False),
        DASHBOARD_FILE: json.dumps(dashboard(cfg), indent=2, ensure_ascii=False) + "\n",
    }


def grafana_ini_overrides(cfg: StackConfig, *, provisioning_dir: str = D.GRAFANA_PROVISIONING_DIR) -> dict[str, str]:
    """Grafana environment (GF_*): no anonymous access, admin password read from a secret file.

    SSH hosts: Grafana shares the monitoring host's network and listens on its loopback only
    (the dashboards are plain HTTP; reach them with `ssh -L 3000:127.0.0.1:3000 <host>`).
    Kubernetes: the pod address, behind a ClusterIP Service."""
    env = {
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_AUTH_BASIC_ENABLED": "true",
        "GF_AUTH_DISABLE_LOGIN_FORM": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_SECURITY_ADMIN_USER": D.GRAFANA_ADMIN_USER,
        "GF_SECURITY_ADMIN_PASSWORD__FILE": D.GRAFANA_ADMIN_PASSWORD_FILE,
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_SERVER_HTTP_PORT": str(D.GRAFANA_PORT),
        "GF_PATHS_PROVISIONING": provisioning_dir,
    }
    if cfg.platform == "docker":
        env["GF_SERVER_HTTP_ADDR"] = D.LOOPBACK
    return env


# --------------------------------------------------------------------------- query inventory


def _substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLE_VALUES.items():
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"unresolved Grafana variable in {expr!r}")
    return expr


def panel_and_alert_queries(cfg: StackConfig) -> list[tuple[str, str]]:
    """(name, PromQL) for every dashboard target, the template variable's metric, and every alert.

    Grafana variables are replaced (`$__rate_interval` -> 1m, `$model_name` -> .*) so each
    expression runs as-is against Prometheus.
    """
    out: list[tuple[str, str]] = []
    dash = dashboard(cfg)
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']} [{target['refId']}]", _substitute(target["expr"])))
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+), *\w+\)", var["query"])
        if m:
            out.append((f"variable {var['name']}", m.group(1)))
    for rule in alert_rules(cfg):
        out.append((f"alert {rule.name}", rule.expr))
    return out


_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, label names and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def metric_names_used(cfg: StackConfig) -> set[str]:
    """Every metric name the dashboard and the alert rules query (histograms as `<name>_bucket`)."""
    names: set[str] = set()
    for _, expr in panel_and_alert_queries(cfg):
        names |= metric_names(expr)
    return names
