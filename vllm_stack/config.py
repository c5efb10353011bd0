"""The stack config contract: `vllm-stack:*` keys of `Pulumi.<stack>.yaml`, parsed into frozen objects.

The pydantic models below are the single definition of every key, its default and its
allowed values: the README reference and `docs/config.schema.json` are generated from
them (`python -m vllm_stack docs`), so the documentation cannot drift.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import defaults as D
from .catalog import Architecture, ModelInfo, gpu_ids, lookup_model
from .grammar import (
    NAME_RE,
    Cron,
    DnsSubdomain,
    Domain,
    Duration,
    Email,
    ExtraArg,
    HostAddress,
    HostPort,
    HttpUrl,
    ModelRef,
    Name,
    NginxSize,
    OciImage,
    Revision,
    PosixUser,
    StorageQuantity,
    Timezone,
)

#: Keys that hold credentials. They are only accepted as Pulumi secrets (`secure:` values).
SECRET_KEYS: dict[str, str] = {
    "apiKey": "front/vLLM API key, >= 16 characters of A-Z a-z 0-9 - . _ ~ + / (generated with pulumi-random "
    "when absent)",
    "apiKeys": "additional API keys accepted by the front, comma-separated, same alphabet (optional)",
    "hfToken": "Hugging Face token for gated models (needed by `pulumi up`, not by the plan)",
    "grafanaAdminPassword": "Grafana admin password (generated with pulumi-random when absent)",
    "sshPrivateKey": "private key for the `hosts` (docker platform)",
    "tlsCertificate": "PEM certificate chain when front.tls is `provided`",
    "tlsPrivateKey": "PEM private key when front.tls is `provided`",
    "alertWebhookUrl": "URL a `webhook` alert receiver posts to (monitoring.alertmanager.receivers)",
    "alertSlackUrl": "Slack incoming-webhook URL of a `slack` alert receiver",
    "alertPagerdutyKey": "PagerDuty Events API v2 routing key of a `pagerduty` alert receiver",
    "alertEmailPassword": "SMTP password of an `email` alert receiver that sets `username`",
}

#: The secret key each alert receiver type reads its URL or key from.
RECEIVER_SECRET: dict[str, str] = {
    "webhook": "alertWebhookUrl",
    "slack": "alertSlackUrl",
    "pagerduty": "alertPagerdutyKey",
    "email": "alertEmailPassword",
}
MAX_RECEIVERS = 16

if TYPE_CHECKING:
    GpuId = str  # a Literal built from the catalog at import time is beyond mypy
else:
    GpuId = Literal[gpu_ids()]
__all__ = ["NAME_RE", "SECRET_KEYS", "StackConfig"]

#: Upper bounds on list sizes: a stack file is read by people; 500k extraArgs is an attack.
MAX_HOSTS, MAX_MODELS, MAX_EXTRA_ARGS, MAX_REPLICAS = 256, 64, 128, 1000


class _Model(BaseModel):
    """Strict: `true` is not the port 1, `"8"` is not the integer 8; `.inf`/`.nan` are refused
    everywhere (allow_inf_nan=False); unknown keys are refused with a suggestion."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=True, allow_inf_nan=False
    )


class ArchitectureSpec(_Model):
    """Inline architecture for a model that is not in the catalog (numbers from its config.json)."""

    params: float = Field(gt=0, le=1e13, description="Parameter count, e.g. 7.2e9.")
    layers: int = Field(gt=0, le=1024, description="num_hidden_layers.")
    kv_heads: int = Field(gt=0, le=1024, description="num_key_value_heads.")
    head_dim: int = Field(gt=0, le=4096, description="head_dim (hidden_size / num_attention_heads).")
    attention_heads: int = Field(gt=0, le=1024, description="num_attention_heads (tensorParallel must divide it).")
    max_positions: int = Field(
        gt=0, le=D.MAX_MODEL_LEN_LIMIT, description="max_position_embeddings (upper bound for maxModelLen)."
    )
    hidden_size: int | None = Field(
        default=None, gt=0, le=1_000_000, description="hidden_size (with intermediateSize and vocabSize: weights "
        "by module class; without them every parameter is sized as a Linear one)."
    )  # fmt: skip
    intermediate_size: int | None = Field(default=None, gt=0, le=10_000_000, description="intermediate_size.")
    vocab_size: int | None = Field(default=None, gt=0, le=10_000_000, description="vocab_size.")
    tie_word_embeddings: bool = Field(default=False, description="tie_word_embeddings (lm_head shares the embedding).")

    def to_architecture(self) -> Architecture:
        return Architecture(
            params=self.params,
            layers=self.layers,
            attention_heads=self.attention_heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            max_positions=self.max_positions,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            vocab_size=self.vocab_size,
            tied_embeddings=self.tie_word_embeddings,
        )


class PeakSchedule(_Model):
    """Predictable peak (seed 003 'predictive scaling'): spot replicas held warm on a cron window."""

    start: Cron = Field(description="Cron expression when the window opens, e.g. `45 8 * * 1-5`.")
    end: Cron = Field(description="Cron expression when it closes, e.g. `0 19 * * 1-5`.")
    timezone: Timezone = Field(default="UTC", description="IANA timezone of the cron expressions.")
    replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Spot replicas held during the window.")


class PoolSpec(_Model):
    """Replicas of one model: an on-demand floor plus spot capacity (seed 000 'keep >= 1 on-demand')."""

    on_demand: int = Field(
        default=1, ge=0, le=MAX_REPLICAS, description="On-demand replicas (the floor that survives spot loss)."
    )
    spot: int = Field(
        default=0, ge=0, le=MAX_REPLICAS, description="Spot replicas kept warm (KEDA minimum on kubernetes)."
    )
    spot_max: int | None = Field(
        default=None,
        ge=0,
        le=MAX_REPLICAS,
        description="Upper bound for spot replicas scaled on queue depth (kubernetes); "
        "default `spot`; may not be below `spot`.",
    )
    drain_seconds: int = Field(
        default=D.DRAIN_SECONDS_DEFAULT,
        ge=1,
        le=3600,
        description=f"Seconds a draining replica keeps serving in-flight requests "
        f"({D.DRAIN_SECONDS_MIN}-{D.DRAIN_SECONDS_MAX} recommended); also vLLM's `--shutdown-timeout` "
        "(vLLM 0.32 aborts in-flight requests on SIGTERM when it is 0, its default).",
    )
    peak_schedule: PeakSchedule | None = Field(default=None, description="Optional cron-driven warm window.")

    @field_validator("spot_max")
    @classmethod
    def _spot_max_not_below_spot(cls, v: int | None, info: ValidationInfo) -> int | None:
        spot = info.data.get("spot")
        if v is not None and spot is not None and v < spot:
            raise ValueError(f"must be >= spot ({spot}); spotMax is the ceiling the autoscaler may reach")
        return v

    @property
    def replicas(self) -> int:
        return self.on_demand + self.spot

    @property
    def spot_ceiling(self) -> int:
        return self.spot if self.spot_max is None else max(self.spot_max, self.spot)


class LoadSpec(_Model):
    """Traffic expectations that size the pool and price the tokens (seed 000 'Scale')."""

    peak_rps: float = Field(default=1.0, gt=0, le=1e6, description="Peak requests/second for this model.")
    single_instance_rps: float = Field(
        default=1.0, gt=0, le=1e6, description="Requests/second one replica sustains at your SLA (from a load test)."
    )
    buffer_pct: float = Field(
        default=D.LOAD_BUFFER_PCT_DEFAULT, ge=0, le=200, description="Head-room added to the instance count, percent."
    )
    tokens_per_second: float | None = Field(
        default=None, gt=0, le=1e9, description="Aggregate generated tokens/s of one replica, for $/1M tokens."
    )


class RoutingSpec(_Model):
    """The routing tier of one model: vllm-router between the front and the replicas."""

    enabled: bool = Field(
        default=False,
        description="Put a vllm-router between nginx and this model's replicas (nginx stays the edge: TLS, keys, "
        "rate limits, routes).",
    )
    policy: Literal["prefix", "session", "least_conn"] = Field(
        default=D.ROUTER_POLICY_DEFAULT,
        description="`prefix`: the replica most likely to hold the prompt's prefix (least loaded under imbalance); "
        f"`session`: hash of the `{D.ROUTER_SESSION_HEADER}` header; `least_conn`: the less loaded replica.",
    )


def unhealthy_restart_floor(drain_seconds: int) -> int:
    """Smallest `unhealthyRestartSeconds` for a drain: a stopping replica is killed after
    drain + TERMINATION_GRACE_EXTRA_SEC, so with one more probe period it can never be seen
    failing that long (the healers never act on a replica that is being drained)."""
    return drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC + D.PROBE_PERIOD_SEC


class ModelSpec(_Model):
    """One served model: what vLLM loads, on which GPU, with which limits."""

    name: Name = Field(
        description="Served model name (`--served-model-name`), route `/<name>/v1/`, resource names; "
        f"not {', '.join(sorted(D.FRONT_RESERVED_ROUTES))} (the front's own routes)."
    )
    model: ModelRef = Field(
        description="Hugging Face id (catalog) or an absolute path; unknown ids need `architecture`."
    )
    revision: Revision | None = Field(
        default=None,
        description="Hub revision the weights are pre-fetched at (branch, tag or commit sha; pin a sha in "
        f"prod); unset: `{D.WEIGHTS_DEFAULT_REVISION}`. Ignored when `model` is a path.",
    )
    gpu: GpuId = Field(description="GPU id from the catalog.")
    tensor_parallel: int = Field(default=1, ge=1, le=8, description="`--tensor-parallel-size`; GPUs per replica.")
    quantization: Literal["none", "fp8", "awq", "gptq"] = Field(
        default="none", description="`--quantization` (none = model dtype)."
    )
    kv_cache_dtype: Literal["auto", "fp8"] = Field(default="auto", description="`--kv-cache-dtype`.")
    max_model_len: int = Field(
        default=D.VLLM_MAX_MODEL_LEN,
        gt=0,
        le=D.MAX_MODEL_LEN_LIMIT,
        description="`--max-model-len` (an integer: vLLM reads `16k` as 16000).",
    )
    max_num_seqs: int = Field(
        default=D.VLLM_MAX_NUM_SEQS,
        gt=0,
        le=65536,
        description="`--max-num-seqs` (rendered explicitly: vLLM's default depends on the GPU).",
    )
    gpu_memory_utilization: float = Field(
        default=D.VLLM_GPU_MEMORY_UTILIZATION, gt=0, le=1, description="`--gpu-memory-utilization`, in (0, 1]."
    )
    extra_args: tuple[ExtraArg, ...] = Field(
        default=(),
        max_length=MAX_EXTRA_ARGS,
        strict=False,
        description="Extra vLLM flags; may not name (in any spelling or "
        "abbreviation vLLM accepts) a flag the stack manages or a "
        "secret flag.",
    )
    pool: PoolSpec = Field(default_factory=PoolSpec, description="Replica split (see pool.*).")
    load: LoadSpec = Field(default_factory=LoadSpec, description="Traffic expectations (see load.*).")
    image: OciImage = Field(default=D.VLLM_IMAGE, description="vLLM container image (pin a tag in prod).")
    architecture: ArchitectureSpec | None = Field(default=None, description="Required for models not in the catalog.")
    default: bool = Field(default=False, description="Route plain `/v1/` to this model (default: the first model).")
    routing: RoutingSpec = Field(default_factory=RoutingSpec, description="Routing tier (see routing.*).")
    unhealthy_restart_seconds: int = Field(
        default=D.UNHEALTHY_RESTART_SEC,
        ge=1,
        le=D.UNHEALTHY_RESTART_SEC_MAX,
        description="Seconds a replica's /health may fail before the host restarts it (systemd: "
        "WatchdogSec=, fed only while /health answers 200; docker: the vllm-heal timer). At least "
        f"pool.drainSeconds + {D.TERMINATION_GRACE_EXTRA_SEC} + {D.PROBE_PERIOD_SEC}, so a stopping "
        "replica is never restarted by the healer; unset, that floor when it is above the default.",
    )

    @model_validator(mode="before")
    @classmethod
    def _heal_default_above_the_drain(cls, data: Any) -> Any:
        """Unset, `unhealthyRestartSeconds` is the default or the drain's floor, whichever is higher
        (a 45 s drain needs 70 s): only a value the user wrote can be refused for it."""
        if not isinstance(data, dict) or "unhealthyRestartSeconds" in data or "unhealthy_restart_seconds" in data:
            return data
        pool = data.get("pool")
        if isinstance(pool, PoolSpec):
            drain: Any = pool.drain_seconds
        else:
            drain = pool.get("drainSeconds", pool.get("drain_seconds")) if isinstance(pool, dict) else None
        if not isinstance(drain, int) or isinstance(drain, bool):
            return data  # absent (the default drain fits the default) or invalid (its own error)
        return {**data, "unhealthyRestartSeconds": max(D.UNHEALTHY_RESTART_SEC, unhealthy_restart_floor(drain))}

    @field_validator("name")
    @classmethod
    def _not_a_front_route(cls, v: str) -> str:
        if v in D.FRONT_RESERVED_ROUTES:
            raise ValueError(
                f"is a route the front serves itself; not allowed: {', '.join(sorted(D.FRONT_RESERVED_ROUTES))}"
            )
        return v

    @field_validator("unhealthy_restart_seconds")
    @classmethod
    def _heal_after_drain(cls, v: int, info: ValidationInfo) -> int:
        pool = info.data.get("pool")
        if isinstance(pool, PoolSpec) and v < unhealthy_restart_floor(pool.drain_seconds):
            raise ValueError(
                f"must be >= {unhealthy_restart_floor(pool.drain_seconds)} (pool.drainSeconds "
                f"{pool.drain_seconds} + {D.TERMINATION_GRACE_EXTRA_SEC} s stop margin + {D.PROBE_PERIOD_SEC} s "
                f"probe period: a draining replica must never look hung) and <= {D.UNHEALTHY_RESTART_SEC_MAX}"
            )
        return v

    @property
    def gpus(self) -> int:
        """GPUs the model's pool holds (on-demand + spot replicas x tensor parallel)."""
        return self.pool.replicas * self.tensor_parallel

    def model_info(self) -> ModelInfo:
        """Catalog entry, or the inline architecture for models the catalog does not know."""
        if self.architecture is not None:
            return ModelInfo(id=self.model, architecture=self.architecture.to_architecture(), gated=False)
        info = lookup_model(self.model)
        if info is None:  # guarded by validate_semantics; kept for direct callers
            raise KeyError(self.model)
        return info


class AlertSpec(_Model):
    """Alert thresholds (defaults from seeds 000/003 and vllm-facts.md)."""

    queue_waiting: float = Field(
        default=D.ALERT_QUEUE_WAITING, gt=0, le=1e6, description="`vllm:num_requests_waiting` above this ..."
    )
    queue_for: Duration = Field(default=D.ALERT_QUEUE_FOR, description="... for this long.")
    kv_cache_usage: float = Field(
        default=D.ALERT_KV_CACHE_USAGE, gt=0, le=1, description="`vllm:kv_cache_usage_perc` above this ..."
    )
    kv_cache_for: Duration = Field(default=D.ALERT_KV_CACHE_FOR, description="... for this long.")
    ttft_p95_seconds: float = Field(
        default=D.ALERT_TTFT_P95_SEC, gt=0, le=3600, description="p95 time to first token above this ..."
    )
    ttft_for: Duration = Field(default=D.ALERT_TTFT_FOR, description="... for this long.")
    preemptions_5m: float = Field(
        default=D.ALERT_PREEMPTIONS_5M,
        ge=0,
        le=1e6,
        alias="preemptions5m",
        description="Preemptions per 5 minutes above this.",
    )
    preemptions_for: Duration = Field(default=D.ALERT_PREEMPTIONS_FOR, description="... for this long.")
    backend_down_for: Duration = Field(default=D.ALERT_BACKEND_DOWN_FOR, description="A scrape target down this long.")
    gpu_temp_celsius: float = Field(
        default=D.ALERT_GPU_TEMP_C, gt=0, le=150, description="DCGM GPU temperature above this ..."
    )
    gpu_temp_for: Duration = Field(default=D.ALERT_GPU_TEMP_FOR, description="... for this long.")
    vram_usage: float = Field(
        default=D.ALERT_VRAM_USAGE, gt=0, le=1, description="DCGM framebuffer used/total above this ..."
    )
    vram_for: Duration = Field(default=D.ALERT_VRAM_FOR, description="... for this long.")
    error_rate: float = Field(
        default=D.ALERT_ERROR_RATE, gt=0, le=1, description="Share of failed requests above this ..."
    )
    error_rate_for: Duration = Field(default=D.ALERT_ERROR_RATE_FOR, description="... for this long.")
    itl_p95_seconds: float = Field(
        default=D.ALERT_ITL_P95_SEC, gt=0, le=60, description="p95 inter-token latency above this ..."
    )
    itl_for: Duration = Field(default=D.ALERT_ITL_FOR, description="... for this long.")
    e2e_p95_seconds: float = Field(
        default=D.ALERT_E2E_P95_SEC,
        gt=0,
        le=86400,
        alias="e2eP95Seconds",
        description="p95 end-to-end request latency above this ...",
    )
    e2e_for: Duration = Field(default=D.ALERT_E2E_FOR, alias="e2eFor", description="... for this long.")
    cost_above_plan_factor: float = Field(
        default=D.ALERT_COST_ABOVE_PLAN_FACTOR,
        gt=1,
        le=100,
        description="Live $/1M generated tokens above the plan's x this ...",
    )
    cost_above_plan_for: Duration = Field(default=D.ALERT_COST_ABOVE_PLAN_FOR, description="... for this long.")
    queue_time_p95_seconds: float = Field(
        default=D.ALERT_QUEUE_TIME_P95_SEC,
        gt=0,
        le=3600,
        description="p95 time requests wait in vLLM's queue above this ...",
    )
    queue_time_for: Duration = Field(default=D.ALERT_QUEUE_TIME_FOR, description="... for this long.")
    http_5xx_ratio: float = Field(
        default=D.ALERT_HTTP_5XX_RATIO,
        gt=0,
        le=1,
        alias="http5xxRatio",
        description="Share of vLLM's API responses that are 5xx (its `http_requests_total`) above this ...",
    )
    http_5xx_for: Duration = Field(default=D.ALERT_HTTP_5XX_FOR, alias="http5xxFor", description="... for this long.")
    front_rate_factor: float = Field(
        default=D.ALERT_FRONT_RATE_FACTOR,
        gt=0,
        le=100,
        description="Front request rate (nginx) above this x the planned peak, the summed peakRps x (1 + bufferPct) ...",
    )
    front_rate_for: Duration = Field(default=D.ALERT_FRONT_RATE_FOR, description="... for this long.")
    tls_expiry_days: float = Field(
        default=D.ALERT_TLS_EXPIRY_DAYS,
        gt=0,
        le=365,
        description="The front's certificate (blackbox probe) expires in fewer days than this ...",
    )
    tls_expiry_for: Duration = Field(default=D.ALERT_TLS_EXPIRY_FOR, description="... for this long.")


class GrafanaSpec(_Model):
    enabled: bool = Field(default=True, description="Deploy Grafana with the vLLM dashboard.")


Severity = Literal["critical", "warning"]  # D.ALERTMANAGER_SEVERITIES (the alert rules' labels)


class ReceiverSpec(_Model):
    """One Alertmanager receiver; its URL or key is the secret `RECEIVER_SECRET[type]`."""

    name: Name = Field(description="Receiver name (unique).")
    type: Literal["webhook", "slack", "pagerduty", "email"] = Field(
        description="`webhook` (secret alertWebhookUrl), `slack` (alertSlackUrl), `pagerduty` "
        "(alertPagerdutyKey), `email` (alertEmailPassword when `username` is set)."
    )
    severities: tuple[Severity, ...] = Field(
        default=("critical", "warning"),
        min_length=1,
        max_length=2,
        strict=False,
        description="Alert severities routed to this receiver.",
    )
    send_resolved: bool = Field(default=True, description="Also notify when the alert resolves.")
    to: Email | None = Field(default=None, description="email: recipient address.")
    from_: Email | None = Field(default=None, alias="from", description="email: sender address.")
    smarthost: HostPort | None = Field(default=None, description="email: SMTP server `host:port`.")
    username: PosixUser | None = Field(
        default=None, description="email: SMTP user (the password is the alertEmailPassword secret)."
    )

    @field_validator("username", "smarthost", "to", "from_")
    @classmethod
    def _email_only(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("type") != "email":
            raise ValueError(f"only an `email` receiver takes this key (type is {info.data.get('type')})")
        return v

    @property
    def secret_key(self) -> str | None:
        """The secret config key this receiver reads (None: an email receiver without SMTP auth)."""
        if self.type == "email" and self.username is None:
            return None
        return RECEIVER_SECRET[self.type]


class AlertmanagerSpec(_Model):
    """Alertmanager: deployed by the stack (default) or an existing one (`external`)."""

    enabled: bool = Field(default=True, description="Deploy Alertmanager beside Prometheus.")
    external: HostPort | None = Field(
        default=None, description="Notify this existing Alertmanager `host:port` instead of deploying one."
    )
    receivers: tuple[ReceiverSpec, ...] = Field(
        default=(),
        max_length=MAX_RECEIVERS,
        strict=False,
        description="Receivers (see monitoring.alertmanager.receivers[].*); none: alerts are only shown in "
        "Alertmanager's UI.",
    )
    group_wait: Duration = Field(default=D.ALERTMANAGER_GROUP_WAIT, description="Route group_wait.")
    group_interval: Duration = Field(default=D.ALERTMANAGER_GROUP_INTERVAL, description="Route group_interval.")
    repeat_interval: Duration = Field(
        default=D.ALERTMANAGER_REPEAT_INTERVAL, description="Route repeat_interval (warnings)."
    )
    critical_repeat_interval: Duration = Field(
        default=D.ALERTMANAGER_CRITICAL_REPEAT_INTERVAL, description="repeat_interval of critical alerts."
    )

    @field_validator("receivers")
    @classmethod
    def _unique(cls, v: tuple[ReceiverSpec, ...]) -> tuple[ReceiverSpec, ...]:
        names = [r.name for r in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receiver names must be unique; repeated: {', '.join(dupes)}")
        if D.ALERTMANAGER_NULL_RECEIVER in names:
            raise ValueError(f"receiver name {D.ALERTMANAGER_NULL_RECEIVER!r} is reserved")
        for r in v:
            if r.type == "email" and (r.to is None or r.from_ is None or r.smarthost is None):
                raise ValueError(f"email receiver {r.name!r} needs `to`, `from` and `smarthost`")
        return v

    @property
    def deployed(self) -> bool:
        return self.enabled and self.external is None


class MonitoringSpec(_Model):
    """Prometheus + Grafana + alert rules."""

    scrape_interval_seconds: int = Field(
        default=D.SCRAPE_INTERVAL_SEC, gt=0, le=300, description="Prometheus scrape interval."
    )
    grafana: GrafanaSpec = Field(default_factory=GrafanaSpec, description="Grafana settings.")
    alerts: AlertSpec = Field(default_factory=AlertSpec, description="Alert thresholds (see monitoring.alerts.*).")
    alertmanager: AlertmanagerSpec = Field(
        default_factory=AlertmanagerSpec, description="Alert delivery (see monitoring.alertmanager.*)."
    )
    runbook_base_url: HttpUrl = Field(
        default=D.RUNBOOK_BASE_URL, description="Absolute URL of docs/runbooks.md; alert runbook_url = <this>#<alert>."
    )
    prometheus_operator: bool = Field(
        default=False, description="kubernetes: emit PrometheusRule/ServiceMonitor instead of a Prometheus Deployment."
    )
    prometheus_url: HttpUrl | None = Field(
        default=None,
        description="kubernetes with prometheusOperator: URL of the operator-managed "
        "Prometheus that KEDA and Grafana query (required when a model "
        "has spot replicas).",
    )
    host: Name | None = Field(
        default=None, description="docker: host name that runs Prometheus/Grafana (default: the front host)."
    )


class FrontSpec(_Model):
    """The nginx TLS front: the only public entry point."""

    domain: Domain = Field(default="localhost", description="server_name and certificate subject.")
    tls: Literal["selfSigned", "provided", "none"] = Field(
        default="selfSigned", description="`provided` reads the tlsCertificate/tlsPrivateKey secrets."
    )
    client_max_body_size: NginxSize = Field(default=D.CLIENT_MAX_BODY_SIZE, description="nginx client_max_body_size.")
    read_timeout_seconds: int = Field(
        default=D.PROXY_READ_TIMEOUT_SEC, gt=0, le=86400, description="proxy_read_timeout for long generations."
    )
    rate_limit_rps: float = Field(
        default=D.RATE_LIMIT_PER_KEY_RPS,
        gt=0,
        le=D.RATE_LIMIT_RPS_MAX,
        description="Requests/second per API key (below 1: rendered per minute).",
    )
    rate_limit_burst: int = Field(
        default=D.RATE_LIMIT_BURST, ge=0, le=1_000_000, description="Burst allowance per API key."
    )
    service_type: Literal["LoadBalancer", "NodePort"] = Field(
        default="LoadBalancer", description="kubernetes: Service type of the front."
    )
    host: Name | None = Field(
        default=None, description="docker: host name that runs nginx (default: the first on-demand host)."
    )


class HostSpec(_Model):
    """An existing GPU host reached over SSH (docker platform)."""

    name: Name = Field(description="Host name used in resource names.")
    address: HostAddress = Field(description="IP or DNS name for SSH; unique across hosts.")
    user: PosixUser = Field(default="ubuntu", description="SSH user with sudo.")
    port: int = Field(default=D.SSH_PORT, gt=0, lt=65536, description="SSH port.")
    gpu: GpuId = Field(description="GPU id from the catalog.")
    gpu_count: int = Field(default=1, ge=1, le=16, description="GPUs on the host.")
    capacity: Literal["onDemand", "spot"] = Field(default="onDemand", description="Capacity class of the host.")


class KubernetesSpec(_Model):
    namespace: Name = Field(default=D.K8S_NAMESPACE, description="Namespace for every object.")
    storage_class: DnsSubdomain | None = Field(
        default=None, description="StorageClass of the weights PVC (cluster default when empty)."
    )
    weights_pvc_size: StorageQuantity = Field(default=D.WEIGHTS_PVC_SIZE, description="Size of the model-weights PVC.")


class PriceSpec(_Model):
    on_demand_per_hour: float = Field(gt=0, le=1000, description="USD per GPU-hour, on-demand.")
    spot_per_hour: float | None = Field(default=None, gt=0, le=1000, description="USD per GPU-hour, spot.")


class RouterSpec(_Model):
    """How the router is installed (shared by every model with `routing.enabled`)."""

    version: Literal["0.1.17"] = Field(
        default=D.ROUTER_VERSION, description="PyPI `vllm-router` version (systemd runtime installs it in a venv)."
    )
    image: OciImage | None = Field(
        default=None,
        description="Router container image (docker runtime, kubernetes): the project publishes none; build "
        "one from the pinned wheel and push it, then give `repo@sha256:<digest>` (prod requires a digest).",
    )


class StackConfig(_Model):
    """Everything under the `vllm-stack:` namespace except secrets."""

    environment: Literal["dev", "prod"] = Field(description="`prod` turns on the strict policies.")
    platform: Literal["docker", "kubernetes"] = Field(
        description="`docker`: GPU hosts over SSH; `kubernetes`: a cluster."
    )
    host_runtime: Literal["docker", "systemd"] = Field(
        default="docker", description="docker platform: run vLLM as a container or a systemd unit."
    )
    hosts: tuple[HostSpec, ...] = Field(
        default=(), max_length=MAX_HOSTS, strict=False, description="docker platform: the GPU hosts (see hosts[].*)."
    )
    models: tuple[ModelSpec, ...] = Field(
        min_length=1, max_length=MAX_MODELS, strict=False, description="Served models (see models[].*)."
    )
    front: FrontSpec = Field(default_factory=FrontSpec, description="nginx front (see front.*).")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Monitoring (see monitoring.*).")
    prices: dict[GpuId, PriceSpec] = Field(default_factory=dict, description="Per-GPU price overrides (USD/hour).")
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec, description="kubernetes platform settings.")
    router: RouterSpec = Field(
        default_factory=RouterSpec, validate_default=True, description="Router install (see router.*)."
    )
    #: Secret keys that are set (as `secure:` values); never their values.
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
        names = [m.name for m in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("router")
    @classmethod
    def _router_image_when_needed(cls, v: RouterSpec, info: ValidationInfo) -> RouterSpec:
        models = info.data.get("models") or ()
        if v.image is None and any(m.routing.enabled for m in models):
            platform, runtime = info.data.get("platform"), info.data.get("host_runtime")
            if platform == "kubernetes" or runtime == "docker":
                raise ValueError(
                    "image is required when a model has routing.enabled on this platform "
                    "(kubernetes, docker runtime): give a pinned image, e.g. registry/vllm-router@sha256:<digest>"
                )
        return v

    def routed(self, model: str) -> bool:
        return any(m.name == model and m.routing.enabled for m in self.models)

    @property
    def default_model(self) -> ModelSpec:
        return next((m for m in self.models if m.default), self.models[0])

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    @property
    def front_host(self) -> HostSpec | None:
        if self.front.host:
            return self.host(self.front.host)
        return next((h for h in self.hosts if h.capacity == "onDemand"), self.hosts[0] if self.hosts else None)

    @property
    def monitoring_host(self) -> HostSpec | None:
        return self.host(self.monitoring.host) if self.monitoring.host else self.front_host


def config_keys() -> list[str]:
    """Top-level keys a stack file may set under `vllm-stack:` (secrets included)."""
    return [f.alias or n for n, f in StackConfig.model_fields.items() if not f.exclude] + list(SECRET_KEYS)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def dump_public(cfg: StackConfig) -> dict[str, Any]:
    """camelCase dict of the config (no secrets) for `--json` and the Pulumi config map."""
    return cfg.model_dump(mode="json", by_alias=True, exclude={"secrets"})
