"""Prometheus alert rules for vLLM and DCGM, and `promtool test rules` cases generated from the same thresholds.

Every threshold comes from `cfg.monitoring.alerts`; every metric and label name from
`vllm_stack.defaults`. `render_promtool_tests` derives its input series from the same
numbers, so changing a threshold keeps the unit tests meaningful (and a rules file whose
threshold drifted from the config fails them: tests/artifacts proves it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import yaml

from .. import defaults as D
from ..config import AlertSpec, StackConfig

# Alert names (also the runbook section anchors, lower-cased).
QUEUE_DEPTH = "VllmQueueDepth"
KV_CACHE_PRESSURE = "VllmKvCachePressure"
HIGH_TTFT_P95 = "VllmHighTtftP95"
PREEMPTIONS = "VllmPreemptions"
BACKEND_DOWN = "VllmBackendDown"
NO_HEALTHY_BACKEND = "VllmNoHealthyBackend"
GPU_TEMPERATURE_HIGH = "GpuTemperatureHigh"
GPU_VRAM_HIGH = "GpuVramHigh"
ERROR_RATE = "VllmErrorRate"
HIGH_ITL_P95 = "VllmHighItlP95"
HIGH_E2E_P95 = "VllmHighE2eLatencyP95"
HIGH_QUEUE_TIME_P95 = "VllmHighQueueTimeP95"
# The front (render/front_monitoring.py says where each signal comes from).
FRONT_NGINX_DOWN = "FrontNginxDown"
FRONT_REQUEST_RATE = "FrontRequestRateAbovePlan"
HTTP_5XX_RATIO = "VllmHttp5xxRatio"
FRONT_PROBE_FAILED = "FrontProbeFailed"
FRONT_CERT_EXPIRY = "FrontCertificateExpiresSoon"

ALERT_NAMES = (
    QUEUE_DEPTH,
    KV_CACHE_PRESSURE,
    HIGH_TTFT_P95,
    PREEMPTIONS,
    BACKEND_DOWN,
    NO_HEALTHY_BACKEND,
    GPU_TEMPERATURE_HIGH,
    GPU_VRAM_HIGH,
    ERROR_RATE,
    HIGH_ITL_P95,
    HIGH_E2E_P95,
    HIGH_QUEUE_TIME_P95,
    FRONT_NGINX_DOWN,
    FRONT_REQUEST_RATE,
    HTTP_5XX_RATIO,
    FRONT_PROBE_FAILED,
    FRONT_CERT_EXPIRY,
)
#: The p95 latency alerts besides TTFT: (alert, histogram, AlertSpec threshold field, what it measures).
LATENCY_ALERTS = (
    (HIGH_ITL_P95, D.METRIC_ITL, "itl_p95_seconds", "inter-token latency"),
    (HIGH_E2E_P95, D.METRIC_E2E_LATENCY, "e2e_p95_seconds", "end-to-end request latency"),
    (HIGH_QUEUE_TIME_P95, D.METRIC_QUEUE_TIME, "queue_time_p95_seconds", "time in vLLM's queue"),
)

#: AlertSpec field holding each alert's threshold / `for` (None: the alert has no numeric threshold).
THRESHOLD_FIELD: dict[str, str | None] = {
    QUEUE_DEPTH: "queue_waiting",
    KV_CACHE_PRESSURE: "kv_cache_usage",
    HIGH_TTFT_P95: "ttft_p95_seconds",
    PREEMPTIONS: "preemptions_5m",
    BACKEND_DOWN: None,
    NO_HEALTHY_BACKEND: None,
    GPU_TEMPERATURE_HIGH: "gpu_temp_celsius",
    GPU_VRAM_HIGH: "vram_usage",
    ERROR_RATE: "error_rate",
    HIGH_ITL_P95: "itl_p95_seconds",
    HIGH_E2E_P95: "e2e_p95_seconds",
    HIGH_QUEUE_TIME_P95: "queue_time_p95_seconds",
    FRONT_NGINX_DOWN: None,
    FRONT_REQUEST_RATE: "front_rate_factor",
    HTTP_5XX_RATIO: "http_5xx_ratio",
    FRONT_PROBE_FAILED: None,
    FRONT_CERT_EXPIRY: "tls_expiry_days",
}
FOR_FIELD: dict[str, str] = {
    QUEUE_DEPTH: "queue_for",
    KV_CACHE_PRESSURE: "kv_cache_for",
    HIGH_TTFT_P95: "ttft_for",
    PREEMPTIONS: "preemptions_for",
    BACKEND_DOWN: "backend_down_for",
    NO_HEALTHY_BACKEND: "backend_down_for",
    GPU_TEMPERATURE_HIGH: "gpu_temp_for",
    GPU_VRAM_HIGH: "vram_for",
    ERROR_RATE: "error_rate_for",
    HIGH_ITL_P95: "itl_for",
    HIGH_E2E_P95: "e2e_for",
    HIGH_QUEUE_TIME_P95: "queue_time_for",
    FRONT_NGINX_DOWN: "backend_down_for",
    FRONT_REQUEST_RATE: "front_rate_for",
    HTTP_5XX_RATIO: "http_5xx_for",
    FRONT_PROBE_FAILED: "backend_down_for",
    FRONT_CERT_EXPIRY: "tls_expiry_for",
}


def anchor(alert_name: str) -> str:
    """Runbook section anchor of an alert (docs/runbooks.md has `<a id="...">` for each)."""
    return alert_name.lower()


def num(x: float) -> str:
    """A number as PromQL/YAML text: 20 not 20.0, 0.9 not 0.90000001."""
    x = float(x)
    if math.isfinite(x) and x.is_integer():
        return str(int(x))
    return repr(x)


def duration_seconds(text: str) -> int:
    m = re.fullmatch(r"([0-9]+)([smh])", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def duration_text(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _sel(metric: str, **matchers: str) -> str:
    if not matchers:
        return metric
    inner = ",".join(f"{k}{v}" for k, v in matchers.items())
    return f"{metric}{{{inner}}}"


def _eq(value: str) -> str:
    return f'="{value}"'


def _re(values: tuple[str, ...]) -> str:
    return f'=~"{"|".join(values)}"'


# --------------------------------------------------------------------------- rule definitions


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    threshold: float | None = None

    def runbook_url(self, base: str) -> str:
        return f"{base}#{anchor(self.name)}"

    def as_rule(self, runbook_base: str) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url(runbook_base),
            },
        }


def quantile_expr(metric: str, q: float, window: str = D.ALERT_RATE_WINDOW, selector: str = "") -> str:
    """A histogram quantile per served model (`model_name`), over all its replicas."""
    return (
        f"histogram_quantile({num(q)}, sum by (le, {D.LABEL_VLLM_MODEL_NAME}) "
        f"(rate({metric}_bucket{selector}[{window}])))"
    )


def ttft_quantile_expr(q: float, window: str = D.ALERT_RATE_WINDOW, selector: str = "") -> str:
    return quantile_expr(D.METRIC_TTFT, q, window, selector)


def error_share_expr(window: str = D.ALERT_RATE_WINDOW) -> str:
    failed = _sel(D.METRIC_REQUEST_SUCCESS, **{D.LABEL_FINISHED_REASON: _re(D.FAILED_FINISH_REASONS)})
    by = f"sum by ({D.LABEL_VLLM_MODEL_NAME})"
    return f"{by} (rate({failed}[{window}])) / {by} (rate({D.METRIC_REQUEST_SUCCESS}[{window}]))"


def vram_share_expr() -> str:
    return f"{D.DCGM_FB_USED} / ({D.DCGM_FB_USED} + {D.DCGM_FB_FREE})"


def planned_peak_rps(cfg: StackConfig) -> float:
    """The request rate the replicas are sized for: every model's peakRps plus its buffer."""
    return sum(m.load.peak_rps * (1 + m.load.buffer_pct / 100) for m in cfg.models)


def front_rate_expr(window: str = D.ALERT_RATE_WINDOW) -> str:
    return f"sum by (job) (rate({_sel(D.METRIC_NGINX_REQUESTS, job=_eq(D.JOB_NGINX))}[{window}]))"


def http_5xx_share_expr(window: str = D.ALERT_RATE_WINDOW) -> str:
    """vLLM's 5xx responses over all its responses, per model (the scrape label: the metric has no model_name)."""
    every = _sel(D.METRIC_HTTP_REQUESTS, job=_eq(D.JOB_VLLM))
    failed = _sel(D.METRIC_HTTP_REQUESTS, job=_eq(D.JOB_VLLM), **{D.LABEL_HTTP_STATUS: _eq(D.HTTP_5XX)})
    by = f"sum by ({D.SCRAPE_LABEL_MODEL})"
    total = f"{by} (rate({every}[{window}]))"
    # a model with traffic but no 5xx yet has no 5xx series: `or 0 * total` makes its share 0, not absent
    return f"({by} (rate({failed}[{window}])) or 0 * {total}) / {total}"


def nginx_down_expr() -> str:
    """The exporter unreachable, or reachable but unable to read stub_status (nginx down)."""
    return f"{_sel('up', job=_eq(D.JOB_NGINX))} == 0 or {_sel(D.METRIC_NGINX_UP, job=_eq(D.JOB_NGINX))} == 0"


def cert_days_left_expr() -> str:
    return f"({_sel(D.METRIC_SSL_EARLIEST_EXPIRY, job=_eq(D.JOB_BLACKBOX))} - time()) / 86400"


def up_vllm() -> str:
    return _sel("up", job=_eq(D.JOB_VLLM))


def no_healthy_backend_expr(cfg: StackConfig) -> str:
    """Every target of a model down, or no target of a configured model scraped at all.

    The `absent` arms matter on kubernetes: pods that lost their node (spot reclaim) leave
    the endpoints, so their `up` series disappear instead of turning 0.
    """
    by = f"sum by ({D.SCRAPE_LABEL_MODEL})"
    arms = [f"{by} ({up_vllm()}) == 0"]
    for m in cfg.models:
        arms.append(f"{by} (absent({_sel('up', job=_eq(D.JOB_VLLM), **{D.SCRAPE_LABEL_MODEL: _eq(m.name)})}))")
    return " or ".join(arms)


def alert_rules(cfg: StackConfig, *, for_override: str | None = None) -> list[AlertRule]:
    """The alert definitions, in rule-file order."""
    a: AlertSpec = cfg.monitoring.alerts

    def f(field_name: str) -> str:
        return for_override or getattr(a, field_name)

    mn = f"{{{{ $labels.{D.LABEL_VLLM_MODEL_NAME} }}}}"
    inst = "{{ $labels.instance }}"
    model = f"{{{{ $labels.{D.SCRAPE_LABEL_MODEL} }}}}"
    host = f"{{{{ $labels.{D.SCRAPE_LABEL_HOST} }}}}"
    gpu = f"{{{{ $labels.{D.LABEL_DCGM_GPU} }}}}"

    def v(fmt: str) -> str:
        return f'{{{{ printf "{fmt}" $value }}}}'

    w = D.ALERT_RATE_WINDOW
    rules = [
        AlertRule(
            QUEUE_DEPTH,
            f"{D.METRIC_REQUESTS_WAITING} > {num(a.queue_waiting)}",
            f("queue_for"),
            D.SEVERITY_WARNING,
            f"vLLM request queue is backing up for model {mn}",
            f"{inst} has {v('%.0f')} requests waiting (threshold {num(a.queue_waiting)}) for more than "
            f"{f('queue_for')}: the replicas are saturated; scale out or check --max-num-seqs.",
            a.queue_waiting,
        ),
        AlertRule(
            KV_CACHE_PRESSURE,
            f"{D.METRIC_KV_CACHE_USAGE} > {num(a.kv_cache_usage)}",
            f("kv_cache_for"),
            D.SEVERITY_WARNING,
            f"vLLM KV cache nearly full for model {mn}",
            f"{inst} KV cache usage is {v('%.2f')} (threshold {num(a.kv_cache_usage)}) for more than "
            f"{f('kv_cache_for')}: requests queue or get preempted; lower --max-model-len/--max-num-seqs, "
            f"use --kv-cache-dtype fp8 or scale out.",
            a.kv_cache_usage,
        ),
        AlertRule(
            HIGH_TTFT_P95,
            f"{ttft_quantile_expr(D.ALERT_QUANTILE)} > {num(a.ttft_p95_seconds)}",
            f("ttft_for"),
            D.SEVERITY_CRITICAL,
            f"vLLM p95 time to first token above SLA for model {mn}",
            f"p95 TTFT of {mn} is {v('%.2f')}s (threshold {num(a.ttft_p95_seconds)}s) for more than {f('ttft_for')}.",
            a.ttft_p95_seconds,
        ),
        AlertRule(
            PREEMPTIONS,
            f"increase({D.METRIC_PREEMPTIONS}[{w}]) > {num(a.preemptions_5m)}",
            f("preemptions_for"),
            D.SEVERITY_WARNING,
            f"vLLM is preempting sequences for model {mn}",
            f"{inst} preempted {v('%.1f')} sequences in {w} (threshold {num(a.preemptions_5m)}): the KV cache "
            f"is too small for the batch; lower --max-num-seqs.",
            a.preemptions_5m,
        ),
        AlertRule(
            BACKEND_DOWN,
            f"{up_vllm()} == 0",
            f("backend_down_for"),
            D.SEVERITY_CRITICAL,
            f"vLLM backend {inst} is down",
            f"Prometheus cannot scrape {inst} (model {model}) for {f('backend_down_for')}: the process died, "
            f"is still loading, or the host was preempted.",
        ),
        AlertRule(
            NO_HEALTHY_BACKEND,
            no_healthy_backend_expr(cfg),
            f("backend_down_for"),
            D.SEVERITY_CRITICAL,
            f"No healthy vLLM backend for model {model}",
            f"No replica of model {model} has been up (or scraped at all) for {f('backend_down_for')}: "
            f"requests for it fail.",
        ),
        AlertRule(
            GPU_TEMPERATURE_HIGH,
            f"{D.DCGM_GPU_TEMP} > {num(a.gpu_temp_celsius)}",
            f("gpu_temp_for"),
            D.SEVERITY_WARNING,
            f"GPU {gpu} on {host} is running hot",
            f"GPU {gpu} on {host} ({inst}) is at {v('%.0f')} °C (threshold {num(a.gpu_temp_celsius)} °C) for "
            f"more than {f('gpu_temp_for')}: thermal throttling costs 20-30 % throughput.",
            a.gpu_temp_celsius,
        ),
        AlertRule(
            GPU_VRAM_HIGH,
            f"{vram_share_expr()} > {num(a.vram_usage)}",
            f("vram_for"),
            D.SEVERITY_WARNING,
            f"GPU {gpu} on {host} framebuffer nearly full",
            f"GPU {gpu} on {host} ({inst}) uses {v('%.2f')} of its memory (threshold {num(a.vram_usage)}) for "
            f"more than {f('vram_for')}: OOM risk.",
            a.vram_usage,
        ),
        AlertRule(
            ERROR_RATE,
            f"{error_share_expr()} > {num(a.error_rate)}",
            f("error_rate_for"),
            D.SEVERITY_CRITICAL,
            f"vLLM requests failing for model {mn}",
            f"{v('%.2f')} of the requests of {mn} finished as "
            f"{'/'.join(D.FAILED_FINISH_REASONS)} over {w} (threshold {num(a.error_rate)}) for more than "
            f"{f('error_rate_for')}.",
            a.error_rate,
        ),
    ]
    for name, metric, field_name, what in LATENCY_ALERTS:
        t = getattr(a, field_name)
        for_ = f(FOR_FIELD[name])
        rules.append(
            AlertRule(
                name,
                f"{quantile_expr(metric, D.ALERT_QUANTILE)} > {num(t)}",
                for_,
                D.SEVERITY_WARNING,
                f"vLLM p95 {what} high for model {mn}",
                f"p95 {what} of {mn} is {v('%.2f')}s (threshold {num(t)}s) for more than {for_}.",
                t,
            )
        )
    peak = planned_peak_rps(cfg) * a.front_rate_factor
    rules += [
        AlertRule(
            FRONT_NGINX_DOWN,
            nginx_down_expr(),
            f("backend_down_for"),
            D.SEVERITY_CRITICAL,
            f"The front's nginx is not observed on {host}",
            f"The nginx exporter {inst} is not scraped or cannot read nginx's stub_status for "
            f"{f('backend_down_for')}: nginx is down, or its exporter is; clients may get no answer.",
        ),
        AlertRule(
            FRONT_REQUEST_RATE,
            f"{front_rate_expr()} > {num(peak)}",
            f("front_rate_for"),
            D.SEVERITY_WARNING,
            "Front request rate above the planned peak",
            f"The front's nginx (job {{{{ $labels.job }}}}) reads {v('%.1f')} requests/s over {w} (every request, rejected ones too; the plan's peak "
            f"with buffer x {num(a.front_rate_factor)} is {num(peak)}/s) for more than {f('front_rate_for')}: "
            f"raise models[].load.peakRps and re-plan, or scale out.",
            a.front_rate_factor,
        ),
        AlertRule(
            HTTP_5XX_RATIO,
            f"{http_5xx_share_expr()} > {num(a.http_5xx_ratio)}",
            f("http_5xx_for"),
            D.SEVERITY_CRITICAL,
            f"vLLM answers 5xx for model {model}",
            f"{v('%.3f')} of vLLM's HTTP responses for {model} were 5xx over {w} (threshold "
            f"{num(a.http_5xx_ratio)}) for more than {f('http_5xx_for')}. Counted by vLLM: the front's own "
            f"502/503/504 (no backend) are VllmNoHealthyBackend's.",
            a.http_5xx_ratio,
        ),
        AlertRule(
            FRONT_PROBE_FAILED,
            f"{_sel(D.METRIC_PROBE_SUCCESS, job=_eq(D.JOB_BLACKBOX))} == 0",
            f("backend_down_for"),
            D.SEVERITY_CRITICAL,
            f"HTTPS probe of the front fails: {inst}",
            f"The blackbox exporter cannot get a 200 over TLS from {inst} for {f('backend_down_for')}: "
            f"the front is down, unreachable, or its certificate/handshake is broken.",
        ),
        AlertRule(
            FRONT_CERT_EXPIRY,
            f"{cert_days_left_expr()} < {num(a.tls_expiry_days)}",
            f("tls_expiry_for"),
            D.SEVERITY_WARNING,
            f"The front's TLS certificate expires soon: {inst}",
            f"The certificate {inst} serves expires in {v('%.1f')} days (threshold {num(a.tls_expiry_days)} "
            f"days): renew it (front.tls provided: new tlsCertificate/tlsPrivateKey; selfSigned: replace "
            f"the certificate resource) and redeploy.",
            a.tls_expiry_days,
        ),
    ]
    assert tuple(r.name for r in rules) == ALERT_NAMES
    return rules


def alert_rules_doc(
    cfg: StackConfig, *, for_override: str | None = None, runbook_base: str | None = None
) -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": D.ALERT_GROUP,
                "rules": [
                    r.as_rule(runbook_base or cfg.monitoring.runbook_base_url)
                    for r in alert_rules(cfg, for_override=for_override)
                ],
            }
        ]
    }


def render_alert_rules(cfg: StackConfig, *, for_override: str | None = None, runbook_base: str | None = None) -> str:
    """Prometheus rules YAML (group `vllm`).

    `for_override` (e.g. "5s") replaces every `for`: the test profile for loopback e2e runs.
    `runbook_base` prefixes each `runbook_url` (`<base>#<alert name lower-cased>`).
    """
    return yaml.safe_dump(
        alert_rules_doc(cfg, for_override=for_override, runbook_base=runbook_base),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )


# --------------------------------------------------------------------------- promtool tests

_TEMPLATE_RE = re.compile(r"\{\{\s*(?:\$labels\.(\w+)|printf \"(%\.\d+f)\" \$value)\s*\}\}")


def expand_template(text: str, labels: dict[str, str], value: float) -> str:
    """Expand the two template forms our annotations use, as Prometheus would."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return labels.get(m.group(1), "")
        return m.group(2) % value

    out = _TEMPLATE_RE.sub(sub, text)
    if "{{" in out:
        raise ValueError(f"unsupported template in {text!r}")
    return out


def _printed_digits(*texts: str) -> list[int]:
    return sorted({int(d) for t in texts for d in re.findall(r'printf "%\.(\d+)f" \$value', t)})


def _robust(value: float, digits_list: Sequence[int] = (0, 1, 2)) -> bool:
    """True when `value` is far from a rounding edge of the `%.Nf` formats we print."""
    for digits in digits_list:
        frac = (abs(value) * 10**digits) % 1
        if abs(frac - 0.5) < 1e-6:
            return False
    return True


def _nudge(value: float, digits_list: Sequence[int]) -> float:
    """The smallest 'nice' value >= `value` that formats the same in Go and Python (no rounding tie)."""
    unit = 10.0 ** -(max(digits_list, default=0) + 1)
    while not _robust(value, digits_list):
        value = float(num(round(value + unit, 9)))
    return value


def _series_values(start: float, step: float, n: int) -> list[float]:
    """Values of promtool's `start+stepxn` notation (repeated addition, as promtool does)."""
    vals, k = [], float(start)
    for _ in range(n + 1):
        vals.append(k)
        k += step
    return vals


def _notation(start: float, step: float, n: int) -> str:
    if step == 0:
        return f"{num(start)}x{n}"
    return f"{num(start)}+{num(step)}x{n}"


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


@dataclass
class _Case:
    """One alert's tests: a firing group and a quiet group."""

    rule: AlertRule
    fire_series: list[dict[str, str]]
    fire_labels: list[dict[str, str]]  # exp_labels of each expected alert
    fire_values: list[float]  # $value of each expected alert
    quiet_series: list[dict[str, str]]
    quiet_note: str
    lead: int = 0  # seconds before the expression first holds
    fire_note: str = ""
    value_at: Callable[[int], float] | None = None  # $value at sample index i, when it depends on time
    #: further firing groups: (note, input series, exp_labels of each alert, $value of each alert)
    more_fires: list[tuple[str, list[dict[str, str]], list[dict[str, str]], list[float]]] = dataclasses.field(
        default_factory=list
    )


def _cases(cfg: StackConfig, rules: dict[str, AlertRule], step: int, n: int) -> list[_Case]:
    a = cfg.monitoring.alerts
    model = cfg.models[0].name
    window = duration_seconds(D.ALERT_RATE_WINDOW)
    per_window = max(1, window // step)  # samples per rate window
    vllm_labels = {
        D.LABEL_VLLM_MODEL_NAME: model,
        D.LABEL_VLLM_ENGINE: "0",
        "job": D.JOB_VLLM,
        "instance": f"10.0.0.1:{D.VLLM_PORT}",
        D.SCRAPE_LABEL_MODEL: model,
        D.SCRAPE_LABEL_CAPACITY: "onDemand",
        D.SCRAPE_LABEL_HOST: "gpu-1",
    }
    dcgm_labels = {
        D.LABEL_DCGM_GPU: "0",
        "UUID": "GPU-00000000-0000-0000-0000-000000000000",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-1",
        "job": D.JOB_DCGM,
        "instance": f"10.0.0.1:{D.DCGM_EXPORTER_PORT}",
        D.SCRAPE_LABEL_HOST: "gpu-1",
    }

    def sev(r: AlertRule, labels: dict[str, str]) -> dict[str, str]:
        return {**labels, "severity": r.severity}

    cases: list[_Case] = []

    # Gauges: fire clearly above, stay quiet AT the threshold (catches `>=`).
    for name, metric, t, labels, hi in (
        (
            QUEUE_DEPTH,
            D.METRIC_REQUESTS_WAITING,
            a.queue_waiting,
            vllm_labels,
            a.queue_waiting + max(1.0, a.queue_waiting * 0.25),
        ),
        (KV_CACHE_PRESSURE, D.METRIC_KV_CACHE_USAGE, a.kv_cache_usage, vllm_labels, a.kv_cache_usage + 0.05),
        (GPU_TEMPERATURE_HIGH, D.DCGM_GPU_TEMP, a.gpu_temp_celsius, dcgm_labels, a.gpu_temp_celsius + 5.0),
    ):
        hi = _nudge(float(num(round(hi, 6))), _printed_digits(rules[name].description))
        cases.append(
            _Case(
                rules[name],
                [_series(metric, labels, _notation(hi, 0, n))],
                [sev(rules[name], labels)],
                [hi],
                [_series(metric, labels, _notation(t, 0, n))],
                f"at the threshold ({num(t)})",
                fire_note=f"{num(hi)} > {num(t)}",
            )
        )

    # TTFT p95: every observation in the bucket (T, T+w] fires (p95 = T + 0.95 w);
    # every observation in (T/2, T] stays quiet (p95 = 0.975 T).
    t = a.ttft_p95_seconds
    width = t / 2
    while not _robust(t + width * D.ALERT_QUANTILE, _printed_digits(rules[HIGH_TTFT_P95].description)):
        width += 0.01
    les = [t / 2, t, t + width]
    ttft_labels = vllm_labels

    def ttft_series(first_full: int) -> list[dict[str, str]]:
        out = []
        for i, le in enumerate(les + [math.inf]):
            step_inc = 10.0 if i >= first_full else 0.0
            le_text = "+Inf" if le == math.inf else num(le)
            out.append(_series(f"{D.METRIC_TTFT}_bucket", {**ttft_labels, "le": le_text}, _notation(0, step_inc, n)))
        return out

    r = rules[HIGH_TTFT_P95]
    cases.append(
        _Case(
            r,
            ttft_series(2),
            [sev(r, {D.LABEL_VLLM_MODEL_NAME: model})],
            [t + width * D.ALERT_QUANTILE],
            ttft_series(1),
            f"all requests at or below {num(t)}s (p95 {num(0.975 * t)}s)",
            lead=step,
            fire_note=f"p95 {num(t + width * D.ALERT_QUANTILE)}s",
        )
    )

    # The other p95 latency alerts: the same construction on their own histogram and threshold.
    for lname, metric, field_name, _ in LATENCY_ALERTS:
        lt = float(getattr(a, field_name))
        r = rules[lname]
        lwidth = lt / 2
        while not _robust(lt + lwidth * D.ALERT_QUANTILE, _printed_digits(r.description)):
            lwidth += lt / 200
        lles = [lt / 2, lt, lt + lwidth]

        def hist(first_full: int, metric: str = metric, lles: list[float] = lles) -> list[dict[str, str]]:
            out = []
            for i, le in enumerate(lles + [math.inf]):
                inc = 10.0 if i >= first_full else 0.0
                le_text = "+Inf" if le == math.inf else num(le)
                out.append(_series(f"{metric}_bucket", {**vllm_labels, "le": le_text}, _notation(0, inc, n)))
            return out

        cases.append(
            _Case(
                r,
                hist(2),
                [sev(r, {D.LABEL_VLLM_MODEL_NAME: model})],
                [lt + lwidth * D.ALERT_QUANTILE],
                hist(1),
                f"all observations at or below {num(lt)}s (p95 {num(0.975 * lt)}s)",
                lead=step,
                fire_note=f"p95 {num(lt + lwidth * D.ALERT_QUANTILE)}s",
            )
        )

    # Preemptions: a counter growing `total` per rate window fires; half the threshold stays quiet.
    p = a.preemptions_5m
    total = _nudge(p + max(1.0, p), _printed_digits(rules[PREEMPTIONS].description))
    inc = total / per_window
    vals = _series_values(0, inc, n)

    def increase_at(i: int) -> float:
        j = max(0, i - per_window)
        return vals[i] - vals[j]

    first = next(i for i in range(1, n) if increase_at(i) > p)
    r = rules[PREEMPTIONS]
    cases.append(
        _Case(
            r,
            [_series(D.METRIC_PREEMPTIONS, vllm_labels, _notation(0, inc, n))],
            [sev(r, vllm_labels)],
            [],
            [_series(D.METRIC_PREEMPTIONS, vllm_labels, _notation(0, (p / 2) / per_window, n))],
            f"{num(p / 2)} per {D.ALERT_RATE_WINDOW}",
            lead=first * step,
            fire_note=f"{num(total)} per {D.ALERT_RATE_WINDOW}",
            value_at=increase_at,
        )
    )

    # Backend down: one target with up == 0 fires; a healthy target stays quiet.
    up_labels = {
        "job": D.JOB_VLLM,
        "instance": f"10.0.0.1:{D.VLLM_PORT}",
        D.SCRAPE_LABEL_MODEL: model,
        D.SCRAPE_LABEL_CAPACITY: "onDemand",
        D.SCRAPE_LABEL_HOST: "gpu-1",
    }
    up_labels2 = {
        **up_labels,
        "instance": f"10.0.0.2:{D.VLLM_PORT}",
        D.SCRAPE_LABEL_CAPACITY: "spot",
        D.SCRAPE_LABEL_HOST: "gpu-2",
    }
    r = rules[BACKEND_DOWN]
    cases.append(
        _Case(
            r,
            [_series("up", up_labels, _notation(0, 0, n)), _series("up", up_labels2, _notation(1, 0, n))],
            [sev(r, up_labels)],
            [0.0],
            [_series("up", up_labels, _notation(1, 0, n)), _series("up", up_labels2, _notation(1, 0, n))],
            "every target up",
            fire_note="one of two targets down",
        )
    )

    # No healthy backend: both replicas of the model down fires, and so does a model with no
    # scraped target at all; one of two down stays quiet. The other models stay up throughout.
    r = rules[NO_HEALTHY_BACKEND]
    others = [
        _series(
            "up",
            {**up_labels, "instance": f"10.0.1.{i}:{D.VLLM_PORT}", D.SCRAPE_LABEL_MODEL: m.name},
            _notation(1, 0, n),
        )
        for i, m in enumerate(cfg.models[1:], start=1)
    ]
    dcgm_up = _series("up", {"job": D.JOB_DCGM, "instance": f"10.0.0.1:{D.DCGM_EXPORTER_PORT}"}, _notation(1, 0, n))
    cases.append(
        _Case(
            r,
            [_series("up", up_labels, _notation(0, 0, n)), _series("up", up_labels2, _notation(0, 0, n)), *others],
            [sev(r, {D.SCRAPE_LABEL_MODEL: model})],
            [0.0],
            [_series("up", up_labels, _notation(0, 0, n)), _series("up", up_labels2, _notation(1, 0, n)), *others],
            "one of two replicas still up",
            fire_note="both replicas down",
            more_fires=[
                ("no target scraped for the model", [dcgm_up, *others], [sev(r, {D.SCRAPE_LABEL_MODEL: model})], [1.0])
            ],
        )
    )

    # VRAM: used / (used + free) above fires; below stays quiet.
    v = a.vram_usage
    total_mib = 81559.0  # an H100 80GB's framebuffer in MiB
    used_hi = float(math.ceil(total_mib * (v + (1 - v) / 2)))
    used_lo = float(math.floor(total_mib * (v - 0.1 if v > 0.2 else v / 2)))
    r = rules[GPU_VRAM_HIGH]
    ratio_hi = used_hi / (used_hi + (total_mib - used_hi))
    ratio_lo = used_lo / (used_lo + (total_mib - used_lo))

    def vram_series(used: float) -> list[dict[str, str]]:
        return [
            _series(D.DCGM_FB_USED, dcgm_labels, _notation(used, 0, n)),
            _series(D.DCGM_FB_FREE, dcgm_labels, _notation(total_mib - used, 0, n)),
        ]

    fires = ratio_hi > v  # vramUsage 1.0 can never fire
    cases.append(
        _Case(
            r,
            vram_series(used_hi) if fires else [],
            [sev(r, dcgm_labels)] if fires else [],
            [ratio_hi],
            vram_series(used_lo),
            f"{num(round(ratio_lo, 4))} used",
            fire_note=f"{num(round(ratio_hi, 4))} used",
        )
    )

    # Error rate: failed (abort/error) share of finished requests above fires; half the threshold is quiet.
    e = a.error_rate
    per_step = 1000

    def error_series(failed: int) -> list[dict[str, str]]:
        aborts, errors = failed - failed // 2, failed // 2
        ok = per_step - failed
        lengths = ok // 10
        stops = ok - lengths
        out = []
        for reason, count in (("stop", stops), ("length", lengths), ("abort", aborts), ("error", errors)):
            out.append(
                _series(
                    D.METRIC_REQUEST_SUCCESS, {**vllm_labels, D.LABEL_FINISHED_REASON: reason}, _notation(0, count, n)
                )
            )
        return out

    r = rules[ERROR_RATE]
    cases.append(_share_case(r, e, per_step, error_series, sev(r, {D.LABEL_VLLM_MODEL_NAME: model}), step, "failed"))
    cases += _front_cases(cfg, rules, step, n)
    order = {name: i for i, name in enumerate(ALERT_NAMES)}
    return sorted(cases, key=lambda c: order[c.rule.name])


def _share_case(
    r: AlertRule,
    e: float,
    per_step: int,
    series: Callable[[int], list[dict[str, str]]],
    labels: dict[str, str],
    step: int,
    what: str,
) -> _Case:
    """A share alert (`e` of `per_step` per step): `series(k)` has k of them per step. Fires at
    1.5 e (or halfway to 1) rounded off any printing edge; stays quiet at e / 2."""
    failed_hi = math.floor(per_step * min(e * 1.5, e + (1 - e) / 2))
    while failed_hi / per_step <= e and failed_hi < per_step:
        failed_hi += 1
    while not _robust(failed_hi / per_step, _printed_digits(r.description)) and failed_hi < per_step:
        failed_hi += 1
    failed_lo = math.floor(per_step * e / 2)
    fires = failed_hi / per_step > e  # a share of 1.0 can never be exceeded
    return _Case(
        r,
        series(failed_hi) if fires else [],
        [labels] if fires else [],
        [failed_hi / per_step],
        series(failed_lo),
        f"{failed_lo}/{per_step} {what}",
        lead=step,
        fire_note=f"{failed_hi}/{per_step} {what}",
    )


def _front_cases(cfg: StackConfig, rules: dict[str, AlertRule], step: int, n: int) -> list[_Case]:
    """The front's alerts: nginx exporter, request rate, vLLM's 5xx share, the blackbox probe."""
    a = cfg.monitoring.alerts
    model = cfg.models[0].name
    front_host = "gpu-1"
    nginx_labels = {
        "job": D.JOB_NGINX,
        "instance": f"10.0.0.1:{D.NGINX_EXPORTER_PORT}",
        D.SCRAPE_LABEL_HOST: front_host,
    }
    probe_labels = {"job": D.JOB_BLACKBOX, "instance": f"https://10.0.0.1{D.HEALTH_PATH}"}

    def sev(r: AlertRule, labels: dict[str, str]) -> dict[str, str]:
        return {**labels, "severity": r.severity}

    cases: list[_Case] = []
    # nginx down: the exporter up but nginx_up 0 fires; so does the exporter itself down (no nginx_up).
    r = rules[FRONT_NGINX_DOWN]
    cases.append(
        _Case(
            r,
            [
                _series("up", nginx_labels, _notation(1, 0, n)),
                _series(D.METRIC_NGINX_UP, nginx_labels, _notation(0, 0, n)),
            ],
            [sev(r, nginx_labels)],
            [0.0],
            [
                _series("up", nginx_labels, _notation(1, 0, n)),
                _series(D.METRIC_NGINX_UP, nginx_labels, _notation(1, 0, n)),
            ],
            "exporter up, nginx_up 1",
            fire_note="stub_status unreadable (nginx_up 0)",
            more_fires=[
                (
                    "exporter not scraped",
                    [_series("up", nginx_labels, _notation(0, 0, n))],
                    [sev(r, nginx_labels)],
                    [0.0],
                )
            ],
        )
    )

    # Request rate: a counter growing 1.5x the (factor x planned) peak fires; half of it stays quiet.
    # A counter from 0 has no extrapolation before its first sample, so rate() ramps up linearly
    # over the first window (as increase() in the preemptions case); the alert is pending from the
    # first sample whose rate is above the threshold.
    r = rules[FRONT_REQUEST_RATE]
    peak = planned_peak_rps(cfg) * a.front_rate_factor
    hi = _nudge(float(num(round(peak * 1.5, 6))), _printed_digits(r.description))
    per_window = max(1, duration_seconds(D.ALERT_RATE_WINDOW) // step)
    first = next(i for i in range(1, n) if hi * min(i, per_window) / per_window > peak)
    cases.append(
        _Case(
            r,
            [_series(D.METRIC_NGINX_REQUESTS, nginx_labels, _notation(0, hi * step, n))],
            [sev(r, {"job": D.JOB_NGINX})],
            [hi],
            [_series(D.METRIC_NGINX_REQUESTS, nginx_labels, _notation(0, peak / 2 * step, n))],
            f"{num(round(peak / 2, 6))} requests/s",
            lead=first * step,
            fire_note=f"{num(hi)} requests/s",
        )
    )

    # vLLM's 5xx share: as the error rate, over http_requests_total's grouped statuses.
    r = rules[HTTP_5XX_RATIO]
    e = a.http_5xx_ratio
    per_step = 1000
    http_labels = {
        "job": D.JOB_VLLM,
        "instance": f"10.0.0.1:{D.VLLM_PORT}",
        D.SCRAPE_LABEL_MODEL: model,
        D.SCRAPE_LABEL_CAPACITY: "onDemand",
        D.SCRAPE_LABEL_HOST: front_host,
        "handler": "/v1/chat/completions",
        "method": "POST",
    }

    def http_series(failed: int) -> list[dict[str, str]]:
        rejected = (per_step - failed) // 20
        out = []
        for status, count in (("2xx", per_step - failed - rejected), ("4xx", rejected), (D.HTTP_5XX, failed)):
            out.append(
                _series(D.METRIC_HTTP_REQUESTS, {**http_labels, D.LABEL_HTTP_STATUS: status}, _notation(0, count, n))
            )
        return out

    cases.append(_share_case(r, e, per_step, http_series, sev(r, {D.SCRAPE_LABEL_MODEL: model}), step, D.HTTP_5XX))

    # Probe failing fires; a succeeding probe stays quiet.
    r = rules[FRONT_PROBE_FAILED]
    cases.append(
        _Case(
            r,
            [_series(D.METRIC_PROBE_SUCCESS, probe_labels, _notation(0, 0, n))],
            [sev(r, probe_labels)],
            [0.0],
            [_series(D.METRIC_PROBE_SUCCESS, probe_labels, _notation(1, 0, n))],
            "probe succeeds",
            fire_note="probe_success 0",
        )
    )

    # Certificate expiry: notAfter at 0.7 x the threshold (in days) fires; 1.4 x (plus the test's
    # horizon, so it never drifts under) stays quiet. $value is days left at the evaluation time.
    r = rules[FRONT_CERT_EXPIRY]
    days = float(a.tls_expiry_days)
    digits = _printed_digits(r.description)
    horizon_s = n * step
    expiry_hi = math.floor(days * 0.7 * 86400)

    def days_left(i: int, expiry: float) -> float:
        return (expiry - i * step) / 86400

    while not all(_robust(days_left(i, expiry_hi), digits) for i in range(n + 1)):
        expiry_hi += 7
    expiry_lo = math.ceil(days * 1.4 * 86400) + horizon_s
    cases.append(
        _Case(
            r,
            [_series(D.METRIC_SSL_EARLIEST_EXPIRY, probe_labels, _notation(expiry_hi, 0, n))],
            [sev(r, probe_labels)],
            [],
            [_series(D.METRIC_SSL_EARLIEST_EXPIRY, probe_labels, _notation(expiry_lo, 0, n))],
            f"{num(round(expiry_lo / 86400, 2))} days left",
            fire_note=f"{num(round(expiry_hi / 86400, 2))} days left",
            value_at=lambda i: days_left(i, expiry_hi),
        )
    )
    return cases


def promtool_tests_doc(
    cfg: StackConfig, rules_file: str, *, for_override: str | None = None, runbook_base: str | None = None
) -> dict[str, Any]:
    rules = {r.name: r for r in alert_rules(cfg, for_override=for_override)}
    fors = {name: duration_seconds(r.for_) for name, r in rules.items()}
    step = math.gcd(60, *[s for s in fors.values() if s]) if any(fors.values()) else 60
    window = duration_seconds(D.ALERT_RATE_WINDOW)
    horizon = max(fors.values()) + 2 * window + 4 * step
    n = horizon // step + 2
    tests: list[dict[str, Any]] = []
    for case in _cases(cfg, rules, step, n):
        r = case.rule
        hold = fors[r.name]
        lead = case.lead
        fire_at = lead + hold + step
        if case.value_at is not None:
            case.fire_values = [case.value_at(fire_at // step)]
        fires = [(case.fire_note, case.fire_series, case.fire_labels, case.fire_values), *case.more_fires]
        for note, series, fire_labels, fire_values in fires:
            if not series:
                continue  # the threshold cannot be exceeded (e.g. a share of 1.0)
            exp = []
            for labels, value in zip(fire_labels, fire_values):
                if not _robust(value, _printed_digits(r.summary, r.description)):
                    raise ValueError(f"{r.name}: test value {value!r} sits on a rounding edge; adjust the generator")
                exp.append(
                    {
                        "exp_labels": labels,
                        "exp_annotations": {
                            "summary": expand_template(r.summary, labels, value),
                            "description": expand_template(r.description, labels, value),
                            "runbook_url": r.runbook_url(runbook_base or cfg.monitoring.runbook_base_url),
                        },
                    }
                )
            checks: list[dict[str, Any]] = []
            if hold >= step:
                checks.append({"eval_time": duration_text(lead + hold - step), "alertname": r.name, "exp_alerts": []})
            checks.append({"eval_time": duration_text(fire_at), "alertname": r.name, "exp_alerts": exp})
            tests.append(
                {
                    "name": f"{r.name} fires: {note}, after for {r.for_}",
                    "interval": duration_text(step),
                    "input_series": series,
                    "alert_rule_test": checks,
                }
            )
        tests.append(
            {
                "name": f"{r.name} stays quiet: {case.quiet_note}",
                "interval": duration_text(step),
                "input_series": case.quiet_series,
                "alert_rule_test": [
                    {"eval_time": duration_text(fire_at), "alertname": r.name, "exp_alerts": []},
                    {"eval_time": duration_text(horizon), "alertname": r.name, "exp_alerts": []},
                ],
            }
        )
    return {"rule_files": [rules_file], "evaluation_interval": duration_text(step), "tests": tests}


def render_promtool_tests(
    cfg: StackConfig, rules_file: str, *, for_override: str | None = None, runbook_base: str | None = None
) -> str:
    """A `promtool test rules` file for the rules `render_alert_rules(cfg, ...)` writes to `rules_file`.

    For every alert: a firing group (input above the threshold; no alert one step before the
    `for` elapsed, the alert with its labels and expanded annotations one step after) and a
    quiet group (input at/below the threshold: no alert). Pass the same `for_override` and
    `runbook_base` as for the rules. `rules_file` is resolved relative to the tests file.
    """
    return yaml.safe_dump(
        promtool_tests_doc(cfg, rules_file, for_override=for_override, runbook_base=runbook_base),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
