"""Every number the stack relies on, in one place.

Config defaults, policy thresholds, renderers and tests import these names; no other
module writes the literal. Where a number comes from a field guide or vLLM itself,
the comment says which (seeds live in ../shared/seeds, corrections in
../shared/notes/vllm-facts.md).
"""

from __future__ import annotations

from typing import Final

PROJECT = "vllm-stack"
LOOPBACK = "127.0.0.1"  # where a service binds when only its own host talks to it
PROVIDER_NAME = "vllmstack"  # package name of the component provider (provider/)
COMPONENT_PREFIX = f"{PROVIDER_NAME}:index"

# --- vLLM (0.33) -------------------------------------------------------------------
VLLM_PORT = 8000  # vllm serve default
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
VLLM_GPU_MEMORY_UTILIZATION = 0.90  # the stack's default (seed 000/001 baseline); always rendered explicitly
VLLM_UPSTREAM_GPU_MEMORY_UTILIZATION = 0.92  # what vLLM 0.33 uses when the flag is absent
GPU_MEMORY_UTILIZATION_PROD_CEILING = 0.93  # seed 004: "the safe ceiling in production is 0.93"
GPU_MEMORY_UTILIZATION_HARD_CEILING = 0.95  # seed 000: "0.92-0.95 if you need more KV cache"
VLLM_MAX_MODEL_LEN = 8192
VLLM_MAX_NUM_SEQS = 256
MAX_MODEL_LEN_LIMIT = 10_000_000  # largest context any released model claims (Llama 4 Scout: 10M)
#: Extra reserve per GPU ON TOP of the vLLM-like overhead estimate below (activation peak, non-torch,
#: CUDA graphs): 0 = plan exactly what vLLM would leave for the KV cache. The model-fits-gpu policy's
#: `overheadGiB` threshold is this number (raise it for head-room; it used to be a fixed 4 GiB that
#: stood in for the whole overhead, ~3 GiB too high for 7-8B on an L40S: shared/notes/sizing.md).
RUNTIME_OVERHEAD_GIB = 0.0

# --- sizing like vLLM's memory accounting (shared/notes/sizing.md) ----------------------------------
#: Weight/activation dtype of 16-bit checkpoints (bf16/fp16).
BYTES_16BIT = 2
#: Vocabulary rows are padded to a multiple of this (vllm/model_executor/layers/vocab_parallel_embedding.py
#: DEFAULT_VOCAB_PADDING_SIZE).
VOCAB_PADDING = 64
#: FP8 per-channel weight scales are float32 (compressed-tensors FP8 checkpoints).
SCALE_BYTES_FP32 = 4
#: AWQ/GPTQ group scales are fp16 (awq/gptq `scales` tensors).
SCALE_BYTES_FP16 = 2
#: Default max_num_batched_tokens of `vllm serve` by device class (vllm/engine/arg_utils.py
#: get_batch_defaults, OPENAI_API_SERVER): >= 160 GiB -> 16384; >= 70 GiB and not an A100 -> 8192;
#: otherwise 2048. The activation peak vLLM profiles scales with it.
BATCHED_TOKENS_LARGE_GIB, BATCHED_TOKENS_LARGE = 160, 16384
BATCHED_TOKENS_H100_GIB, BATCHED_TOKENS_H100 = 70, 8192
BATCHED_TOKENS_SMALL = 2048
#: Dummy sampler pass of the profile run: logits [max_num_seqs, vocab] in float32 and the copies the
#: sampler makes (softmax, logprobs, sort): calibrated so 8B at 256 seqs gives ~0.6 GiB (issue 16: the
#: whole overhead of 8B on an L40S is ~1 GiB).
SAMPLER_LOGITS_BYTES = 4
SAMPLER_LOGITS_COPIES = 5
#: Memory outside torch's allocator that grows during profiling (CUDA context is before the
#: snapshot): vLLM logs "non_torch_memory takes 0.16GiB" (vllm PR #12126, H100, TP 1).
NON_TORCH_GIB = 0.16
#: Extra non-torch memory per GPU at tensor parallel > 1 (NCCL + custom all-reduce buffers): vllm PR
#: #10511 logs non_torch_memory 1.79 GiB at TP 1 and 3.58 GiB at TP 2 for the same model and build.
NCCL_GIB = 1.79
#: CUDA-graph memory vLLM profiles and subtracts (default since v0.21: gpu_worker.py
#: profile_cudagraph_memory): a fixed pool plus the captured activations of every layer at the
#: largest capture size, min(2 x max_num_seqs, 512) tokens (vllm/config/vllm.py). Base from vllm PR
#: #11349 ("Graph capturing finished ..., took 0.21 GiB" for Llama-3.2-1B).
CUDAGRAPH_BASE_GIB = 0.15
CUDAGRAPH_MAX_CAPTURE_SIZE = 512
CUDAGRAPH_CAPTURE_PER_SEQ = 2

# --- recommend: roofline throughput/latency model (vllm_stack/recommend.py) ------------------------
# GPU peak bandwidth and FLOPS are in the GPU catalog (data/gpus.yaml, datasheet sources). The
# efficiencies below are estimates; tests/unit/test_recommend.py checks the model against seed 000's
# measured figures (7B on L40S 2,500-4,000 tok/s; 70B FP8 on H100 400-700 tok/s at 50 users).
ROOFLINE_MBU = 0.75  # share of peak HBM bandwidth a decode step achieves (estimate)
ROOFLINE_MFU = 0.5  # share of peak dense tensor FLOPS a prefill achieves (estimate)
TP_EFFICIENCY = 0.85  # per-GPU efficiency at tensor parallel > 1 (all-reduce per layer; estimate)
DECODE_STEP_OVERHEAD_MS = 2.0  # scheduler, sampling, detokenization per engine step (estimate)
ITL_P95_FACTOR = 1.25  # p95 over mean ITL: prefill chunks share steps with decodes (estimate)
TTFT_P95_FACTOR = 2.0  # p95 over mean TTFT: queueing behind other prefills near capacity (estimate)
RECOMMEND_TP_SIZES = (1, 2, 4, 8)
RECOMMEND_ON_DEMAND_FLOOR = 1  # seed 000: keep >= 1 on-demand replica; the rest spot where the GPU has spot
RECOMMEND_TOP = 10
RECOMMEND_MAX_REPLICAS = 64

# --- live cost (vllm_stack/render/cost_rules.py) --------------------------------------------------
COST_RULE_GROUP = "vllm-cost"  # its own rule group, beside the `vllm` alert group
ALERT_COST_ABOVE_PLAN_FACTOR = 1.5  # live $/1M tokens above plan x this ...
ALERT_COST_ABOVE_PLAN_FOR = "1h"  # ... for an hour (issue 16)
REC_REPLICAS = "vllm_stack:replicas_running"  # {model, capacity}: vLLM targets up
REC_COST_PER_HOUR = "vllm_stack:cost_dollars_per_hour"  # {model}: running replicas x GPUs x price
REC_TOKENS_PER_SECOND = "vllm_stack:generation_tokens_per_second"  # {model}: measured rate
REC_COST_PER_MTOK = "vllm_stack:cost_dollars_per_million_tokens"  # {model}: live
REC_PLAN_COST_PER_HOUR = "vllm_stack:plan_cost_dollars_per_hour"  # {model}: the plan's blend
REC_PLAN_COST_PER_MTOK = "vllm_stack:plan_cost_dollars_per_million_tokens"  # {model}: the plan's figure

# --- health and lifecycle ------------------------------------------------------------
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
SYSTEMD_TIMEOUT_START_SEC = 900  # seed 001: 70B loads take 5-15 min
SYSTEMD_RESTART_SEC = 10
#: LimitNOFILE= of the vLLM unit: vLLM raises its soft limit to 65535 itself and warns when the hard
#: limit is lower (vllm/utils/system_utils.py set_ulimit(target_soft_limit=65535), vLLM 0.32; seen
#: under systemd's default hard limit in tests/systemd).
VLLM_LIMIT_NOFILE = 65535
HEALTH_POLL_SECONDS = 5
DOCKER_HEALTH_START_PERIOD_SEC = 180  # >= 120 s (seed 003 compose start_period)
READINESS_DELAY_MIN_SEC = 120  # seed 003: initialDelaySeconds 120-300
READINESS_DELAY_MAX_SEC = 300
READINESS_DELAY_PER_B_PARAMS = 2.5  # seconds of delay per billion params, clamped to the range above
LIVENESS_FAILURE_THRESHOLD = 6
STARTUP_PROBE_BUDGET_SEC = SYSTEMD_TIMEOUT_START_SEC
PROBE_PERIOD_SEC = 10
#: Startup budget of a first start (vllm_stack/startup.py): the weights are downloaded, loaded,
#: the engine compiled; pulumi-kubernetes fails a Deployment not Ready after 10 min unless told
#: otherwise (notes/pulumi-engine.md), so the rollout timeout is computed from these.
WEIGHT_DOWNLOAD_MIB_S = 100  # HF Hub to one replica without hf_transfer: a conservative 100 MiB/s
#: safetensors from local disk / the weights PVC into GPU memory; sizing.md's 8B log line
#: ("Model loading took 14.9888 GiB") takes ~30 s on NVMe, i.e. ~500 MiB/s.
WEIGHT_LOAD_MIB_S = 500
ENGINE_INIT_SEC = 180  # vLLM profiling + torch.compile + CUDA graph capture (V1: 1-3 min)
IMAGE_PULL_SEC = 300  # vllm/vllm-openai (~10 GB compressed) on a fresh node
STARTUP_MARGIN_PCT = 50  # on top of download + load + init: slow mirrors, cold disks
#: Weights pre-fetch (vllm_stack/render/weights.py): `hf download` (huggingface_hub, beside vllm in its
#: install: the vLLM 0.32 CPU venv has bin/hf, huggingface_hub 2.4) into one local directory per
#: model and revision, once per host / per cluster; vLLM then loads that directory.
WEIGHTS_DEFAULT_REVISION = "main"  # what `vllm serve <hub id>` itself downloads without --revision
HF_BIN = "/usr/local/bin/hf"  # systemd runtime: installed by the same `pip install vllm` as VLLM_BIN
HF_BIN_IMAGE = "hf"  # inside the vLLM image (docker runtime, Kubernetes Job): on the image's PATH
#: Meta's repos also ship the original consolidated .pth checkpoint under original/ (as large as the
#: safetensors); vLLM loads the safetensors and never reads it.
WEIGHTS_EXCLUDE = ("original/*",)
WEIGHTS_FETCH_FLOOR_SEC = 600  # the pre-fetch's own timeout never below 10 minutes (a cold mirror)
WEIGHTS_JOB_BACKOFF_LIMIT = 4  # Kubernetes Job: container restarts (each one resumes the download)
WEIGHTS_JOB_CPU_REQUEST = "1"
WEIGHTS_JOB_MEMORY_REQUEST = "2Gi"
#: Policy rollout-timeout-covers-startup: rollout timeout / startup budget must be at least this.
ROLLOUT_MIN_OVER_STARTUP = 1.0
DRAIN_SECONDS_MIN = 10  # seed 000: "short connection drain timeout (10-30 seconds)"
DRAIN_SECONDS_MAX = 30
DRAIN_SECONDS_DEFAULT = 20
TERMINATION_GRACE_EXTRA_SEC = 15  # terminationGracePeriodSeconds = drain + this
#: Hosts heal (issue 15): a replica whose /health has failed this long is restarted (systemd
#: WatchdogSec= fed by the start wrapper only while /health answers 200; docker: the host's
#: vllm-heal timer restarts a container unhealthy this long). Default = the Kubernetes liveness
#: budget (LIVENESS_FAILURE_THRESHOLD x PROBE_PERIOD_SEC = 60 s), so all three runtimes give a
#: hung replica the same time. Floor: a stopping replica (drain + TERMINATION_GRACE_EXTRA_SEC
#: until SIGKILL) plus one probe period can never reach it, so healing never fights a drain.
UNHEALTHY_RESTART_SEC = 60
UNHEALTHY_RESTART_SEC_MAX = 3600
#: The docker healer's period (vllm-heal.timer OnUnitActiveSec=): one docker probe period.
HEALER_PERIOD_SEC = 10
HEALER_NAME = "vllm-heal"
DOCKER_DEFAULT_HEALTH_INTERVAL_SEC = 30  # docker run --health-interval default (Docker docs)
#: An operator's hold: a file named after a container here keeps vllm-heal away from it.
HEALER_HOLD_DIR = "/run/vllm-stack/no-heal"

# --- front (nginx) -------------------------------------------------------------------
HTTP_PORT = 80
HTTPS_PORT = 443
NGINX_IMAGE = "nginx:1.27.3"
CLIENT_MAX_BODY_SIZE = "50m"  # seed 001
PROXY_READ_TIMEOUT_SEC = 300  # seed 000/001
PROXY_CONNECT_TIMEOUT_SEC = 10
UPSTREAM_MAX_FAILS = 2
UPSTREAM_FAIL_TIMEOUT_SEC = 10
UPSTREAM_KEEPALIVE = 32
RATE_LIMIT_PER_KEY_RPS = 20
RATE_LIMIT_BURST = 40
RATE_LIMIT_RPS_MAX = 100_000  # nginx limit_req keeps rate x 1000 in an integer; far above any GPU's rate
#: Paths the front serves itself (`/v1/`, `/health`): a model of that name would shadow them.
FRONT_RESERVED_ROUTES = frozenset({"v1", "health"})
TLS_MIN_VERSION = "TLSv1.2"
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")

# --- monitoring ----------------------------------------------------------------------
PROMETHEUS_PORT = 9090
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
GRAFANA_PORT = 3000
GRAFANA_IMAGE = "grafana/grafana:11.4.0"
DCGM_EXPORTER_PORT = 9400
# The front's own metrics (issue 15). nginx OSS has only stub_status: connection counts and one
# request counter, no status codes (nginx docs, ngx_http_stub_status_module).
NGINX_STATUS_PORT = 8080  # nginx-prometheus-exporter's default --nginx.scrape-uri port
NGINX_STATUS_PATH = (
    "/stub_status"  # ... and path (exporter README: "expose the stub_status page at /stub_status on port 8080")
)
NGINX_EXPORTER_PORT = 9113  # nginx-prometheus-exporter --web.listen-address default (":9113")
#: github.com/nginx/nginx-prometheus-exporter release 1.4.0 (Docker Hub nginx/nginx-prometheus-exporter, tags
#: without the `v`). Its OSS metrics: nginx_up, nginx_connections_{accepted,active,handled,reading,waiting,writing},
#: nginx_http_requests_total. Debian bookworm's prometheus-nginx-exporter (0.11.0, used by the tests and the
#: systemd runtime) exports the same names; both accept `--nginx.scrape-uri=` and `--web.listen-address=`.
NGINX_EXPORTER_IMAGE = "nginx/nginx-prometheus-exporter:1.4.0"
NGINX_EXPORTER_DEBIAN_PACKAGE = "prometheus-nginx-exporter"
NGINX_EXPORTER_DEBIAN_BIN = "/usr/bin/prometheus-nginx-exporter"
NGINX_EXPORTER_UID = 65534  # nginx/nginx-prometheus-exporter image user (nobody)
#: github.com/prometheus/blackbox_exporter release v0.25.0 (Docker Hub prom/blackbox-exporter); Debian
#: bookworm's prometheus-blackbox-exporter 0.23.0 (tests) reads the same module config.
BLACKBOX_IMAGE = "prom/blackbox-exporter:v0.25.0"
BLACKBOX_PORT = 9115  # blackbox_exporter --web.listen-address default
BLACKBOX_PROBE_PATH = "/probe"
BLACKBOX_MODULE = "front_tls"  # the one module of the rendered blackbox.yml
BLACKBOX_CONFIG_FILE = "blackbox.yml"
BLACKBOX_TIMEOUT_SEC = 5
BLACKBOX_UID = 65534  # prom/blackbox-exporter image user (nobody)
DCGM_LIVENESS_DELAY_SEC = 45  # NVIDIA dcgm-exporter Helm chart: livenessProbe initialDelaySeconds 45
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04"
NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"
SCRAPE_INTERVAL_SEC = 10  # seed 000
ALERT_QUEUE_WAITING = 20  # seed 000: vllm:num_requests_waiting > 20 for 2m
ALERT_QUEUE_FOR = "2m"
ALERT_KV_CACHE_USAGE = 0.90  # seed 000: > 0.90 for 5m
ALERT_KV_CACHE_FOR = "5m"
ALERT_TTFT_P95_SEC = 2.0  # seed 000: p95 TTFT > 2 s for 3m
ALERT_TTFT_FOR = "3m"
ALERT_PREEMPTIONS_5M = 5  # vllm-facts: increase(...[5m]) > 5
ALERT_PREEMPTIONS_FOR = "5m"
ALERT_BACKEND_DOWN_FOR = "1m"
ALERT_GPU_TEMP_C = 80  # seed 003: throttling above 80 °C
ALERT_GPU_TEMP_FOR = "5m"
#: seed 003 says VRAM > 90 %, but vLLM pre-allocates gpu_memory_utilization (0.90-0.93) of the card
#: at start, so 0.90 would fire permanently; alert only when usage leaves vLLM's own reservation.
ALERT_VRAM_USAGE = 0.97
ALERT_VRAM_FOR = "5m"
ALERT_ERROR_RATE = 0.05  # share of non-stop/length finishes or 5xx
ALERT_ERROR_RATE_FOR = "5m"
#: Latency beyond TTFT (vllm-facts: vLLM 0.33 histograms). ITL p95 200 ms = 5 tokens/s per stream,
#: far below what an interactive client tolerates; queue time p95 at the TTFT SLA means queueing
#: alone uses it up; end-to-end p95 60 s for chat-sized answers.
ALERT_ITL_P95_SEC = 0.2
ALERT_ITL_FOR = "5m"
ALERT_E2E_P95_SEC = 60.0
ALERT_E2E_FOR = "5m"
ALERT_QUEUE_TIME_P95_SEC = 2.0
ALERT_QUEUE_TIME_FOR = "5m"
#: Certificate expiry: alert two weeks ahead (the issue's "< 14 days"; a self-signed front certificate is
#: valid CERT_VALIDITY_HOURS = 90 days and never renewed, so this fires on day 76).
ALERT_TLS_EXPIRY_DAYS = 14.0
ALERT_TLS_EXPIRY_FOR = "10m"
#: vLLM's own HTTP 5xx share (prometheus-fastapi-instrumentator's http_requests_total, grouped `status`).
ALERT_HTTP_5XX_RATIO = 0.05
ALERT_HTTP_5XX_FOR = "5m"
#: Front request rate above the plan: the summed peakRps x (1 + bufferPct) the replicas are sized for.
ALERT_FRONT_RATE_FACTOR = 1.0  # above the buffered peak itself: the replicas were sized for no more
ALERT_FRONT_RATE_FOR = "10m"

# --- cost ----------------------------------------------------------------------------
HOURS_PER_MONTH = 720  # seed 000
LOAD_BUFFER_PCT_DEFAULT = 25  # seed 000: "+20-30% buffer"

# --- kubernetes ----------------------------------------------------------------------
K8S_VERSION = "1.31.0"  # schema version the rendered objects are validated against
K8S_NAMESPACE = "vllm"
SHM_SIZE = "16Gi"
WEIGHTS_PVC_SIZE = "500Gi"
LABEL_CAPACITY = "vllm-stack/capacity"
LABEL_MODEL = "vllm-stack/model"
LABEL_ENVIRONMENT = "vllm-stack/environment"
LABEL_GPU = "vllm-stack/gpu"  # catalog GPU id of a vLLM workload (read by the model-fits-gpu policy)
LABEL_PART_OF = "app.kubernetes.io/part-of"
KEDA_POLLING_INTERVAL_SEC = 15
KEDA_COOLDOWN_SEC = 300  # seed 003: 5-minute scale-down cooldown
KEDA_QUEUE_TARGET = 5  # waiting requests per spot replica before scaling out

# --- hosts (docker platform) ----------------------------------------------------------
SSH_PORT = 22
VLLM_USER = "vllm"
VLLM_ETC_DIR = "/etc/vllm"
VLLM_WEIGHTS_DIR = "/var/lib/vllm/models"
SECRET_FILE_MODE = 0o600

# --- monitoring (added) --------------------------------------------------------------
# Scrape jobs (ScrapeTarget.job) and the labels the scrape config attaches to every target.
JOB_VLLM = "vllm"
JOB_DCGM = "dcgm"
JOB_NGINX = "nginx"
JOB_BLACKBOX = "blackbox-tls"  # the blackbox exporter's probe of the front's HTTPS /health
# nginx-prometheus-exporter (OSS, from stub_status) and blackbox_exporter metric names.
METRIC_NGINX_UP = "nginx_up"  # 1 when the exporter's last read of stub_status worked
METRIC_NGINX_REQUESTS = "nginx_http_requests_total"  # every request nginx read (stub_status `requests`)
METRIC_PROBE_SUCCESS = "probe_success"
METRIC_SSL_EARLIEST_EXPIRY = "probe_ssl_earliest_cert_expiry"  # unix time of the earliest notAfter in the chain
#: vLLM's API server instruments its FastAPI app with prometheus-fastapi-instrumentator (default metrics,
#: `should_group_status_codes`): http_requests_total{handler, method, status="2xx"|"4xx"|"5xx"} (read in
#: vllm/entrypoints/serve/instrumentator/metrics.py of vLLM 0.32 CPU; tests/real_vllm/test_monitoring_real.py
#: queries it from a real server).
METRIC_HTTP_REQUESTS = "http_requests_total"
LABEL_HTTP_STATUS = "status"
HTTP_5XX = "5xx"
SCRAPE_LABEL_MODEL = "model"  # served model name (VllmNoHealthyBackend groups by it)
SCRAPE_LABEL_CAPACITY = "capacity"  # onDemand | spot
SCRAPE_LABEL_HOST = "host"
# Metric names exposed by vLLM 0.33 (vllm-facts.md; NOT gpu_cache_usage_perc / time_per_output_token).
METRIC_REQUESTS_RUNNING = "vllm:num_requests_running"
METRIC_REQUESTS_WAITING = "vllm:num_requests_waiting"
METRIC_KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
METRIC_TTFT = "vllm:time_to_first_token_seconds"  # histogram
METRIC_ITL = "vllm:inter_token_latency_seconds"  # histogram
METRIC_E2E_LATENCY = "vllm:e2e_request_latency_seconds"  # histogram
METRIC_QUEUE_TIME = "vllm:request_queue_time_seconds"  # histogram
METRIC_PROMPT_TOKENS = "vllm:prompt_tokens_total"
METRIC_GENERATION_TOKENS = "vllm:generation_tokens_total"
METRIC_PREEMPTIONS = "vllm:num_preemptions_total"
METRIC_REQUEST_SUCCESS = "vllm:request_success_total"
LABEL_VLLM_MODEL_NAME = "model_name"
LABEL_VLLM_ENGINE = "engine"
LABEL_FINISHED_REASON = "finished_reason"
#: vLLM 0.33 FINISH_REASON_STRINGS = stop, length, abort, error, repetition: these count as failed.
FAILED_FINISH_REASONS = ("abort", "error")
# NVIDIA DCGM exporter (vllm-facts.md).
DCGM_GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"
DCGM_XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"
LABEL_DCGM_GPU = "gpu"
ALERT_RATE_WINDOW = "5m"  # rate()/increase() window of the alert expressions (vllm-facts)
ALERT_QUANTILE = 0.95  # TTFT p95 alert
DASHBOARD_QUANTILES = (0.5, 0.95)
SEVERITY_WARNING = "warning"
SEVERITY_CRITICAL = "critical"
ALERT_GROUP = "vllm"
RULES_FILE = "vllm-alerts.yml"  # the alert rules file (SSH hosts) / ConfigMap key (kubernetes)
RUNBOOKS_DOC = "docs/runbooks.md"  # alert runbook_url = <base>#<alert name, lower case>
#: monitoring.runbookBaseUrl default: an absolute link (Alertmanager notifications leave the repo);
#: a deployment sets it to where its copy of docs/runbooks.md is served.
RUNBOOK_BASE_URL = f"https://vllm-stack.example/{RUNBOOKS_DOC}"
# Alertmanager (deployed by the stack; upstream defaults from alertmanager's config/config.go).
ALERTMANAGER_PORT = 9093  # alertmanager --web.listen-address default
#: Pinned image: v0.27 reads every receiver secret from its config; amtool 0.25 (Debian bookworm)
#: checks the rendered file, which only uses fields both versions know.
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.27.0"
ALERTMANAGER_CONFIG_FILE = "alertmanager.yml"  # file (SSH hosts) / Secret key (kubernetes)
ALERTMANAGER_GROUP_BY = ("alertname", "model")  # one notification per alert and model
ALERTMANAGER_GROUP_WAIT = "30s"  # upstream default route group_wait
ALERTMANAGER_GROUP_INTERVAL = "5m"  # upstream default
ALERTMANAGER_REPEAT_INTERVAL = "4h"  # upstream default
ALERTMANAGER_CRITICAL_REPEAT_INTERVAL = "1h"  # page again hourly while a critical alert stays firing
ALERTMANAGER_NULL_RECEIVER = "blackhole"  # the root route's receiver when no receiver takes an alert
#: resolve_timeout: Prometheus sends endsAt with every alert, so this only matters for other senders.
ALERTMANAGER_RESOLVE_TIMEOUT = "5m"
ALERTMANAGER_SEVERITIES = (SEVERITY_CRITICAL, SEVERITY_WARNING)
# Grafana provisioning.
GRAFANA_PROVISIONING_DIR = "/etc/grafana/provisioning"
GRAFANA_DATASOURCE_NAME = "Prometheus"
GRAFANA_DATASOURCE_UID = "vllm-stack-prometheus"
GRAFANA_DASHBOARD_UID = "vllm-stack-overview"
GRAFANA_DASHBOARD_FOLDER = "vLLM"
GRAFANA_SCHEMA_VERSION = 39
GRAFANA_DASHBOARD_REFRESH = "30s"
GRAFANA_ADMIN_USER = "admin"
GRAFANA_ADMIN_PASSWORD_FILE = "/run/secrets/admin-password"

# --- kubernetes (added) ----------------------------------------------------------------
GPU_RESOURCE = "nvidia.com/gpu"  # extended resource the NVIDIA device plugin advertises
GPU_TAINT_KEY = "nvidia.com/gpu"  # GPU nodes: nvidia.com/gpu=present:NoSchedule
GPU_TAINT_VALUE = "present"
K8S_PROBE_TIMEOUT_SEC = 5  # /health answers in ms; 5 s tolerates a busy event loop
#: Deployment progressDeadlineSeconds: image pull (~10 GB) + first weight download + the
#: startup budget; the 600 s default marks a 70B rollout failed while it is still loading.
K8S_PROGRESS_DEADLINE_SEC = 2 * STARTUP_PROBE_BUDGET_SEC
#: vLLM pod requests besides GPUs: without cpu/memory requests a pod is BestEffort and the
#: first to be evicted under node memory pressure (and a restart costs minutes of loading).
VLLM_CPU_REQUEST_PER_GPU = 2
VLLM_MEMORY_REQUEST_GIB_PER_GPU = 8
FRONT_REPLICAS_PROD = 2
FRONT_REPLICAS_DEV = 1
SECRET_VOLUME_MODE = 0o400  # TLS key / API-key map / Grafana password mounts
PROMETHEUS_UID = 65534  # prom/prometheus image user (nobody)
GRAFANA_UID = 472  # grafana/grafana image user
ALERTMANAGER_UID = 65534  # prom/alertmanager image user (nobody)
ALERTMANAGER_DATA_DIR = "/alertmanager"  # prom/alertmanager image: WORKDIR and --storage.path default
PROMETHEUS_RETENTION = "15d"
PROMETHEUS_STORAGE_SIZE = "20Gi"  # emptyDir sizeLimit of the TSDB
NGINX_IMAGE_USER = "nginx"  # worker user of the official nginx image (NGINX_IMAGE)

# --- hosts (added) -------------------------------------------------------------------
HOST_BIN_DIR = "/usr/local/bin"  # vLLM start wrappers: vllm-start-<unit>
HOST_SBIN_DIR = "/usr/local/sbin"  # root-only tools: bootstrap, secret writer
VLLM_BIN = "/usr/local/bin/vllm"  # seed 001: the wrapper runs /usr/local/bin/vllm serve
CURL_BIN = "/usr/bin/curl"  # Debian/Ubuntu `curl` package; the wrapper polls /health with it
DOCKER_BIN = "/usr/bin/docker"  # docker-ce / docker.io
SYSTEMD_UNIT_DIR = "/etc/systemd/system"
VLLM_CACHE_DIR = "/var/cache/vllm"  # systemd CacheDirectory=vllm: HOME and XDG cache of the nologin vllm user
VLLM_DIR_MODE = 0o750  # VLLM_ETC_DIR (root:vllm) and VLLM_WEIGHTS_DIR (vllm:vllm)
EXECUTABLE_MODE = 0o755
ROOT_EXECUTABLE_MODE = 0o700
UNIT_FILE_MODE = 0o644  # unit files are world-readable: never a secret in them (seed 001)
HOST_GPU_GROUPS = ("render", "video")  # seed 001: GPU device access; added only where the group exists
SECRET_WRITER_NAME = "vllm-write-secrets"
BOOTSTRAP_NAME = "vllm-stack-bootstrap"
DCGM_EXPORTER_CONTAINER = "dcgm-exporter"

# --- front (added)
NGINX_USER = "www-data"  # Debian nginx package user (official nginx image: "nginx")
NGINX_WORKER_CONNECTIONS = 4096
#: A proxied request holds two descriptors (client + upstream): each worker may need twice
#: worker_connections, above the 1024 soft limit most hosts start nginx with.
NGINX_WORKER_RLIMIT_NOFILE = 2 * NGINX_WORKER_CONNECTIONS
#: Strict-Transport-Security in prod (Mozilla server-side TLS guidelines: two years). Without
#: includeSubDomains: the front's domain may share its parent with services that are not HTTPS.
HSTS_HEADER = "max-age=63072000"
#: Idle keep-alive to a backend must end before vLLM's own (uvicorn, VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
#: default 5 s): otherwise nginx can reuse a connection vLLM is closing and the request fails.
UPSTREAM_KEEPALIVE_TIMEOUT_SEC = 4
UPSTREAM_ZONE_SIZE = "64k"  # shared memory so least_conn counts and max_fails are per front, not per worker
PROXY_NEXT_UPSTREAM_TRIES = 2
RATE_LIMIT_ZONE_SIZE = "10m"
#: Mozilla "intermediate" (v5.7+) TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
TLS_ECDH_CURVES = "X25519:prime256v1:secp384r1"
TLS_SESSION_CACHE = "shared:SSL:10m"
TLS_SESSION_TIMEOUT = "1d"
REQUEST_ID_MAX_LEN = 128  # longer/odd client X-Request-IDs are replaced by nginx's $request_id
API_KEY_MIN_LEN = 16

# --- routing tier (vllm-router, the vLLM project's Rust router; ../shared/notes/routing.md) ---------
ROUTER_VERSION: Final = "0.1.17"  # PyPI vllm-router, pinned (scripts/vllm_router_venv.sh installs the same)
ROUTER_PACKAGE = "vllm-router"
ROUTER_PORT_BASE = 30000  # vllm-router's default --port; model i listens on base + i
ROUTER_METRICS_PORT_BASE = 29000  # its default --prometheus-port; two routers on one port: the second panics
#: The stack's policy names -> vllm-router `--policy` (read from `vllm-router --help`, 0.1.17):
#: cache_aware = per-worker prefix tree of the prompt text, least-loaded fallback under imbalance;
#: consistent_hash = hash of the session header (x-session-id, read from the router's hash_key code);
#: power_of_two = the less loaded of two workers (exactly least-loaded with two replicas).
ROUTER_POLICIES = {"prefix": "cache_aware", "session": "consistent_hash", "least_conn": "power_of_two"}
ROUTER_POLICY_DEFAULT: Final = "prefix"  # the probe in routing.md: later-turn TTFT 0.26x round robin
ROUTER_SESSION_HEADER = "x-session-id"  # one of the headers consistent_hash keys on
ROUTER_HEALTH_INTERVAL_SEC = HEALTH_POLL_SECONDS
ROUTER_HEALTH_FAILURES = UPSTREAM_MAX_FAILS  # failed /health checks before a worker leaves the set
#: Failures that open a worker's circuit (no request is sent to it until the breaker half-opens).
#: 1, because the router retries on the worker it picked: with 2, a SIGKILLed idle backend failed
#: 1 request of 12 in 1 run of 3 (tests/e2e/test_routing_e2e.py); with 1, 0 failures in 8 runs.
ROUTER_CB_FAILURES = 1
ROUTER_RETRIES = PROXY_NEXT_UPSTREAM_TRIES  # retries on connect failure / 5xx
ROUTER_INSTALL_DIR = "/opt/vllm-router"  # venv on the front host (systemd runtime)
ROUTER_REPLICAS = 1
ROUTER_CPU_REQUEST = "250m"
ROUTER_MEMORY_REQUEST = "256Mi"
ROUTER_UID = 65532  # distroless nonroot
ALERT_PREFIX_HIT_RATE = 0.2  # hit rate below this (with steady traffic) for ALERT_PREFIX_HIT_FOR fires
ALERT_PREFIX_HIT_FOR = "10m"
ALERT_PREFIX_MIN_QUERY_TOKENS_PER_S = 1.0  # "traffic": prompt tokens/s looked up in the prefix cache, at least
ALERT_PREFIX_STEADY_SHARE = 0.5  # "steady": the lookup rate is at least this share of what it was
ALERT_PREFIX_STEADY_OFFSET = "30m"  # ... this long ago (a traffic drop is not a cache collapse)
ROUTING_ALERT_GROUP = "vllm-routing"  # its own rule group (kept apart from the `vllm` group)
METRIC_PREFIX_HITS = "vllm:prefix_cache_hits_total"  # tokens served from the prefix cache (vLLM V1)
METRIC_PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
JOB_ROUTER = "vllm-router"
