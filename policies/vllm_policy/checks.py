"""The rules: one plain function per policy id, shared by the CrossGuard pack and the offline plan.

Resource rules: `(resource_type, props, ctx, report, secret_keys=None)`; stack rules:
`(resources, ctx, report)` with `resources` a list of `Res`. `report(message)` (stack rules:
`report(message, urn)`) records a violation; `advisory=True` marks a finding that never
blocks (e.g. FP8 weights on an Ampere GPU). `secret_keys` is the set of top-level inputs that
are Pulumi secrets, or None when unknown (CrossGuard hands policies unwrapped values).

Messages name the offending value (secrets redacted to a prefix) and what to do instead.
`RULES` at the bottom is the registry the pack and `offline.evaluate` iterate.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from vllm_stack import defaults as D
from vllm_stack import flags
from vllm_stack.catalog import FP8_MIN_COMPUTE_CAPABILITY, gpus, lookup_model
from vllm_stack.offline.engine import SECRET_PLACEHOLDER, VALUE_PLACEHOLDER
from vllm_stack.render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN
from vllm_stack.sizing import KIB, KV_BYTES_PER_ELEMENT, WEIGHT_BYTES_PER_PARAM, fit

from . import healing_rules, quantization_rules, rollout_rules, routing_rules
from . import shapes as S
from .context import ADVISORY, MANDATORY, PolicyContext, Rule, Threshold

Report = Callable[..., None]


@dataclass(frozen=True)
class Res:
    """One resource as the stack rules see it (offline: a RecordedResource; CLI: a PolicyResource)."""

    type: str
    props: Mapping
    urn: str = ""
    name: str = ""
    secret_keys: Optional[frozenset] = None
    parent: str = ""  # parent URN (a component): ties a unit to its start wrapper


# --- shared helpers --------------------------------------------------------------------------

SECRET_ENV_NAMES = (ENV_API_KEY, ENV_HF_TOKEN, "HUGGING_FACE_HUB_TOKEN", "GF_SECURITY_ADMIN_PASSWORD")
_SECRET_ASSIGN = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(SECRET_ENV_NAMES) + r")(?![A-Za-z0-9_])\s*[=:]\s*(\"[^\"\n]*\"|'[^'\n]*'|[^\s;#]*)"
)
_PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_TOKEN_PATTERNS = (
    ("an OpenAI-style key", re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}")),
    ("a Hugging Face token", re.compile(r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{20,}")),
    ("a bearer token", re.compile(r"\bBearer\\?\s+(?![$\\])([A-Za-z0-9._~+/=-]{%d,})" % D.API_KEY_MIN_LEN)),
)


def _looks_random(token: str) -> bool:
    """A credential, not prose: has a digit, or mixes cases (`Bearer authentication` is a word)."""
    return bool(re.search(r"\d", token) or (re.search(r"[a-z]", token) and re.search(r"[A-Z]", token)))


#: What a secret is replaced by offline: the plan feeds VALUE_PLACEHOLDER as every secret value
#: (so it can travel inside a larger string, `Bearer secret-placeholder`), and the mocks return
#: `[secret]-<name>` for random passwords. Either one in a plain input is a leak.
#: (The mocks' fake PEM bodies also read `[secret]`, public certificates included: only a whole
#: `[secret]...` value counts.)
_PLACEHOLDER = re.compile(
    re.escape(VALUE_PLACEHOLDER) + "|^" + re.escape(SECRET_PLACEHOLDER) + r"(?:-[A-Za-z0-9_.-]+)?$"
)


def redact(value: str) -> str:
    value = value.strip()
    return f"{value[:4]}…({len(value)} chars)" if len(value) > 6 else "…"


def _literal(value: str) -> bool:
    """A value that is the secret itself (not empty, not a reference like `$VAR` or `$(cat f)`)."""
    v = value.strip().strip("'\"")
    return bool(v) and not v.startswith("$") and not v.startswith("%")


def _token_findings(text: str) -> list[str]:
    out = []
    for what, rx in _TOKEN_PATTERNS:
        for m in rx.finditer(text):
            if rx.groups and not _looks_random(m.group(1)):
                continue
            out.append(f"{what} ({redact(m.group(0))})")
    return out


def _secret_flag_findings(tokens: Iterable[str]) -> list[str]:
    return [f"`{flags.normalize(t)}`" for t in tokens if t.startswith("-") and flags.normalize(t) in flags.SECRET_FLAGS]


def _shell_words(text: str) -> list[str]:
    import shlex

    try:
        return shlex.split(text, comments=False)
    except ValueError:
        return text.split()


def _ci() -> bool:
    """Under CI (`CI=true`) a vLLM workload a mandatory rule cannot judge is a finding, not a silent skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


_UNJUDGEABLE = (
    "under CI a vLLM workload the rule cannot judge fails instead of being skipped; give the server "
    "component a catalog GPU (`gpu` input) or label the workload"
)


def _gpu_of(resource_type: str, props: Mapping) -> str | None:
    srv = S.server(resource_type, props)
    return srv.gpu if srv is not None else None


def _float(v: Any) -> float | None:
    return S.number(v)


def _max_model_len(raw: str | None) -> int | None:
    """vLLM's parser: `16k` = 16000, `16K` = 16384 (vllm-facts)."""
    if raw is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", raw.strip())
    if not m:
        return None
    num, unit = float(m.group(1)), m.group(2)
    mult = {"": 1, "k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2}[unit]
    return int(num * mult)


# --- gpu-memory-utilization-ceiling ------------------------------------------------------------


def gpu_memory_utilization_ceiling(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    pid = "gpu-memory-utilization-ceiling"
    hard = float(ctx.threshold(pid, "hardCeiling"))
    prod_ceiling = min(float(ctx.threshold(pid, "prodCeiling")), hard)
    for argv in S.vllm_argvs(resource_type, props):
        for raw in flags.flag_values(argv.args, "--gpu-memory-utilization"):
            v = _float(raw)
            if v is None or not (0 < v <= 1):
                report(f"{argv.where}: --gpu-memory-utilization {raw!r} is not a fraction in (0, 1]")
            elif v > hard:
                report(
                    f"{argv.where}: --gpu-memory-utilization {raw} is above the hard ceiling {hard:g} "
                    f"(any environment): vLLM OOMs under load; use <= {prod_ceiling:g}"
                )
            elif ctx.prod and v > prod_ceiling:
                report(
                    f"{argv.where}: --gpu-memory-utilization {raw} is above the production ceiling "
                    f"{prod_ceiling:g} (seed 004: the safe ceiling in production); lower it or raise "
                    f"prodCeiling in the pack config"
                )


# --- model-fits-gpu ---------------------------------------------------------------------------------


def model_fits_gpu(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    pid = "model-fits-gpu"
    for argv in S.vllm_argvs(resource_type, props):
        a = argv.args
        model, gpu_id = S.model_of(a), _gpu_of(resource_type, props)
        info = lookup_model(model) if model else None
        gpu = gpus().get(gpu_id) if gpu_id else None
        if not model or info is None or gpu is None:
            if info is not None and _ci():
                what = "missing" if gpu_id is None else f"{gpu_id!r}, not a catalog GPU"
                report(
                    f"{argv.where}: the `gpu` input of this vLLM server ({model}) is {what}: "
                    f"model-fits-gpu cannot size it; {_UNJUDGEABLE}"
                )
            continue  # unknown model (inline architecture) or no GPU label: nothing to size against
        quant = (S.last_value(a, "--quantization") or "none").lower()
        kv = (S.last_value(a, "--kv-cache-dtype") or "auto").lower()
        kv = "fp8" if kv.startswith("fp8") else kv
        tp = _float(S.last_value(a, "--tensor-parallel-size") or 1)
        util = _float(S.last_value(a, "--gpu-memory-utilization") or ctx.threshold(pid, "defaultUtilization"))
        mml = _max_model_len(S.last_value(a, "--max-model-len")) or info.architecture.max_positions
        seqs = _float(S.last_value(a, "--max-num-seqs") or D.VLLM_MAX_NUM_SEQS)
        if quant not in WEIGHT_BYTES_PER_PARAM or kv not in KV_BYTES_PER_ELEMENT or not tp or not util or not seqs:
            continue  # a format the sizing model does not know, or a flag other rules report
        f = fit(
            model,
            info.architecture,
            gpu,
            tensor_parallel=int(tp),
            quantization=quant,
            kv_cache_dtype=kv,
            max_model_len=mml,
            max_num_seqs=int(seqs),
            gpu_memory_utilization=util,
            overhead_gib=float(ctx.threshold(pid, "overheadGiB")),
        )
        if not f.fits:
            report(
                f"{argv.where}: {model} does not fit {int(tp)}x {gpu.id} at --gpu-memory-utilization {util:g}: "
                f"{f.reason} (budget {f.budget_gib:g} GiB of {f.vram_gib_total:g} GiB VRAM, weights "
                f"{f.weights_gib:g} GiB [{quant}], overhead {f.overhead_gib:g} GiB, KV {f.kv_gib:g} GiB at "
                f"{f.kv_bytes_per_token / KIB:g} KiB/token [{kv}], maxModelLen {mml})"
            )


# --- fp8-requires-fp8-gpu --------------------------------------------------------------------------


def fp8_requires_fp8_gpu(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    pid = "fp8-requires-fp8-gpu"
    min_cc = float(ctx.threshold(pid, "minComputeCapability"))
    for argv in S.vllm_argvs(resource_type, props):
        gpu_id = _gpu_of(resource_type, props)
        gpu = gpus().get(gpu_id) if gpu_id else None
        quant = (S.last_value(argv.args, "--quantization") or "").lower()
        kv = (S.last_value(argv.args, "--kv-cache-dtype") or "").lower()
        if gpu is None and _ci() and (kv.startswith("fp8") or quant == "fp8"):
            what = "missing" if gpu_id is None else f"{gpu_id!r}, not a catalog GPU"
            report(
                f"{argv.where}: FP8 ({'--kv-cache-dtype ' + kv if kv.startswith('fp8') else '--quantization fp8'}) "
                f"but the `gpu` input is {what}: fp8-requires-fp8-gpu cannot check the GPU; "
                f"{_UNJUDGEABLE}",
                advisory=not kv.startswith("fp8"),
            )
        if gpu is None or gpu.compute_capability >= min_cc:
            continue
        if kv.startswith("fp8"):
            report(
                f"{argv.where}: --kv-cache-dtype {kv} on {gpu.id} (compute capability {gpu.compute_capability:g} "
                f"< {min_cc:g}): the GPU has no FP8 support for the KV cache; use --kv-cache-dtype auto or an "
                f"FP8 GPU (L40S, L4, H100, H200)"
            )
        if quant == "fp8":
            report(
                f"{argv.where}: --quantization fp8 on {gpu.id} (compute capability {gpu.compute_capability:g} "
                f"< {min_cc:g}): vLLM falls back to weight-only FP8 (Marlin kernels), saving memory but no "
                f"FP8 compute speed-up; AWQ/GPTQ are the usual choice on this GPU",
                advisory=True,
            )


# --- no-secrets-in-argv ------------------------------------------------------------------------------


def _argv_strings(resource_type: str, props: Mapping) -> list[tuple[str, list[str]]]:
    """(where, tokens) of every command line / label a resource shows to anyone who can list it."""
    out: list[tuple[str, list[str]]] = []
    if resource_type == S.CONTAINER:
        out.append(("command", S.strings(S.get(props, "command"))))
        out.append(("entrypoints", S.strings(S.get(props, "entrypoints"))))
        out.append(("envs", S.strings(S.get(props, "envs"))))
        out.append(("healthcheck.tests", S.strings(S.get(props, "healthcheck", "tests"))))
        out.append(("labels", [f"{k}={v}" for k, v in S.docker_labels(props).items()]))
    elif resource_type in S.COMMAND_TYPES:
        for key in ("create", "update", "delete"):
            v = S.get(props, key)
            if isinstance(v, str):
                out.append((key, _shell_words(v)))
    elif resource_type.startswith("kubernetes:"):
        tpl = S.pod_template_path(props)
        paths = [("metadata",)] + ([tpl[:-1] + ("metadata",)] if tpl and len(tpl) > 1 else [])
        for path in paths:
            if S.get(props, *path) is None:
                continue
            for kind in ("labels", "annotations"):
                m = S.get(props, *path, kind)
                if isinstance(m, Mapping):
                    out.append((".".join(path + (kind,)), [f"{k}={v}" for k, v in m.items()]))
        spec = S.pod_spec(resource_type, props)
        for c in S.containers(spec):
            name = c.get("name") or "?"
            out.append((f"containers[{name}].command", S.strings(c.get("command"))))
            out.append((f"containers[{name}].args", S.strings(c.get("args"))))
    return out


def no_secrets_in_argv(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    for where, tokens in _argv_strings(resource_type, props):
        if not tokens:
            continue
        words = [w for t in tokens for w in ([t] if t.startswith("-") else _shell_words(t) or [t])]
        findings = _secret_flag_findings(words)
        findings += _token_findings("\n".join(tokens))
        for f in dict.fromkeys(findings):
            report(
                f"{where} carries {f}: anything on a command line, label or annotation is readable "
                f"(`ps`, /proc/<pid>/cmdline, docker/kubectl inspect); pass it through VLLM_API_KEY/HF_TOKEN "
                f"from a 0600 env file or a Kubernetes Secret"
            )


# --- secrets-only-in-secret-stores -------------------------------------------------------------------

_MODE_600 = re.compile(r"(?:-m\s*0?600\b|--mode[= ]0?600\b|umask\s+0?077\b|chmod\s+0?600\b)")


def _secret_material(text: str) -> list[str]:
    out = []
    for m in _SECRET_ASSIGN.finditer(text):
        if _literal(m.group(2)):
            out.append(f"{m.group(1)}={redact(m.group(2).strip(chr(34) + chr(39)))}")
    if _PEM_PRIVATE.search(text):
        out.append("a PEM private key")
    for what, rx in _TOKEN_PATTERNS[2:]:  # the front's API-key map (`~^Bearer\ <key>$ 1;`)
        if any(_looks_random(m.group(1)) for m in rx.finditer(text)):
            out.append(f"{what} literal")
    return out


def _writes_secret_file(create: str) -> bool:
    """The Command installs stdin with mode 0600 (or through the stack's secret writer)."""
    return bool(_MODE_600.search(create)) or "vllm-write-secrets" in create


def secrets_only_in_secret_stores(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    advice = "keep it in a Kubernetes Secret, a 0600 file written from secret stdin, or a Pulumi secret output"
    if resource_type == S.SECRET:
        pass
    elif resource_type == S.CONFIG_MAP:
        for section in ("data", "binaryData"):
            data = S.get(props, section)
            if not isinstance(data, Mapping):
                continue
            for k, v in data.items():
                if k in SECRET_ENV_NAMES and isinstance(v, str) and _literal(v):
                    report(f"ConfigMap {section}.{k} holds a secret ({redact(v)}): ConfigMaps are plain text; {advice}")
                if isinstance(v, str):
                    for what in _secret_material(v):
                        report(f"ConfigMap {section}.{k} contains {what}; {advice}")
    elif resource_type == S.CONTAINER:
        for e in S.strings(S.get(props, "envs")):
            name, _, value = e.partition("=")
            if name in SECRET_ENV_NAMES and _literal(value):
                report(
                    f"container envs set {name}={redact(value)}: `docker inspect` shows it; mount the "
                    f"0600 env file instead; {advice}"
                )
            elif _PEM_PRIVATE.search(value):
                report(f"container envs {name} holds a PEM private key; {advice}")
    elif resource_type in S.COMMAND_TYPES:
        for key in ("create", "update", "delete"):
            v = S.get(props, key)
            if isinstance(v, str):
                for what in _secret_material(v):
                    report(
                        f"Command {key} contains {what}: command strings are logged and stored in plain "
                        f"state; send secrets on secret stdin; {advice}"
                    )
        stdin = S.get(props, "stdin")
        if isinstance(stdin, str):
            found = _secret_material(stdin)
            if found:
                create = S.get(props, "create") or ""
                what = ", ".join(dict.fromkeys(found))
                if re.search(r"/etc/systemd/system/|\.service\b", create):
                    report(
                        f"a unit file ({create.split()[-1] if create.split() else '?'}) contains {what}: unit "
                        f"files are world-readable; use EnvironmentFile= with a 0600 file; {advice}"
                    )
                elif not _writes_secret_file(create):
                    report(f"Command stdin with {what} is written without mode 0600 (create: {create!r}); {advice}")
                if secret_keys is not None and "stdin" not in secret_keys:
                    report(
                        f"Command stdin with {what} is not a Pulumi secret: it is stored in plain text in the "
                        f"state; wrap it with pulumi.Output.secret"
                    )
    else:
        spec = S.pod_spec(resource_type, props)
        for c in S.containers(spec):
            name = c.get("name") or "?"
            for e in S.as_list(c.get("env")):
                if not isinstance(e, Mapping):
                    continue
                n, v = e.get("name"), e.get("value")
                if n in SECRET_ENV_NAMES and isinstance(v, str) and _literal(v):
                    report(
                        f"containers[{name}].env {n} has a literal value ({redact(v)}): use valueFrom.secretKeyRef "
                        f"or envFrom.secretRef; {advice}"
                    )
                elif isinstance(v, str) and _PEM_PRIVATE.search(v):
                    report(f"containers[{name}].env {n} holds a PEM private key; {advice}")
        if (
            resource_type.startswith("tls:")
            and secret_keys is not None
            and "privateKeyPem" in props
            and "privateKeyPem" not in secret_keys
        ):
            report(f"{resource_type} input privateKeyPem is not a Pulumi secret; {advice}")
    # Offline: a secret placeholder in a plain input means a secret flowed into a non-secret field.
    if secret_keys is not None:
        for key in props:
            if key in secret_keys:
                continue
            for path, s in S.walk_strings(props[key], key):
                if _PLACEHOLDER.search(s.strip()):
                    report(
                        f"input {path} carries a secret value but is not a Pulumi secret (it would be stored "
                        f"in plain text); {advice}"
                    )


# --- vllm-not-exposed -----------------------------------------------------------------------------


def _bind_problem(addr: Any) -> str | None:
    kind = S.address_kind(addr)
    if kind in ("loopback", "private"):
        return None
    if kind == "unspecified":
        return f"{addr or '(empty)'} listens on every interface"
    if kind == "invalid":
        return f"{addr!r} is not an IP address (cannot tell whether it is private)"
    return f"{addr} is a public address"


def vllm_not_exposed(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    tail = (
        "vLLM's /health and /metrics are unauthenticated: bind 127.0.0.1 or a private address and "
        "publish only the front"
    )
    if resource_type == S.CONTAINER:
        argvs = S.container_argvs(props)
        if not argvs:
            return
        if S.get(props, "networkMode") == "host":
            host = S.last_value(argvs[0].args, "--host")
            problem = _bind_problem(host)
            if problem:
                report(f"host-network container: vLLM --host {problem}; {tail}")
            return
        for i, p in enumerate(S.as_list(S.get(props, "ports"))):
            if not isinstance(p, Mapping):
                continue
            problem = _bind_problem(p.get("ip"))
            if problem:
                ext, internal = S.number(p.get("external")), S.number(p.get("internal"))
                report(
                    f"ports[{i}] publishes {f'{ext:g}' if ext else '(random)'}->{f'{internal:g}' if internal else '?'} "
                    f"on ip {problem}; {tail}"
                )
    elif resource_type in S.HOST_SERVER_COMPONENTS:
        srv = S.server(resource_type, props)
        problem = _bind_problem(srv.address) if srv is not None else None
        if problem:
            report(f"vLLM server address {problem}; {tail}")
    elif resource_type == S.SERVICE:
        sel = S.get(props, "spec", "selector")
        if not isinstance(sel, Mapping) or not (
            D.LABEL_MODEL in sel or sel.get("app.kubernetes.io/component") == "vllm"
        ):
            return
        typ = S.get(props, "spec", "type") or "ClusterIP"
        if typ != "ClusterIP":
            report(
                f"vLLM Service has spec.type {typ}; vLLM Services must be ClusterIP (only the front is public); {tail}"
            )
        if S.as_list(S.get(props, "spec", "externalIPs")):
            report(f"vLLM Service sets spec.externalIPs {list(S.get(props, 'spec', 'externalIPs'))}; {tail}")
    else:
        spec = S.pod_spec(resource_type, props)
        if spec is None or not S.vllm_containers(resource_type, props):
            return
        if spec.get("hostNetwork") is True:
            report(f"vLLM pod uses hostNetwork: it listens on the node's interfaces; {tail}")
        for c, _ in S.vllm_containers(resource_type, props):
            for p in S.as_list(c.get("ports")):
                if isinstance(p, Mapping) and p.get("hostPort"):
                    report(f"vLLM container {c.get('name')} sets hostPort {int(S.number(p['hostPort']) or 0)}; {tail}")


# --- nginx front: tls-required-in-prod, tls-min-version, api-key-required -------------------------

_TLS_ORDER = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def tls_required_in_prod(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    if not ctx.prod:
        return
    for where, text in S.nginx_confs(resource_type, props):
        conf = S.nginx_skeleton(text)
        ssl = re.compile(r"(?m)^\s*listen\s+[^;]*\bssl\b")
        if not ssl.search(conf):
            report(
                f"{where}: the front's nginx.conf has no `listen ... ssl`: prod traffic (and API keys) would "
                f"travel in clear text; set front.tls to provided or selfSigned"
            )
            continue
        if not re.search(r"(?m)^\s*ssl_certificate\s", conf):
            report(f"{where}: `listen ... ssl` without `ssl_certificate`: nginx cannot serve TLS")
        for args, body in S.nginx_blocks(conf, "server"):
            if not ssl.search(body) and re.search(r"\bproxy_pass\b", body):
                listen = re.search(r"(?m)^\s*listen\s+([^;]*);", body)
                report(
                    f"{where}: a server block listening on {listen.group(1) if listen else '?'} without TLS "
                    f"proxies to the models; plain HTTP may only redirect to https"
                )


def tls_min_version(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    minimum = str(ctx.threshold("tls-min-version", "minVersion"))
    allowed = _TLS_ORDER[_TLS_ORDER.index(minimum) :] if minimum in _TLS_ORDER else _TLS_ORDER[-2:]
    for where, text in S.nginx_confs(resource_type, props):
        for m in re.finditer(r"(?m)^\s*ssl_protocols\s+([^;]*);", S.strip_nginx_comments(text)):
            old = [p for p in m.group(1).split() if p not in allowed]
            if old:
                report(
                    f"{where}: ssl_protocols enables {', '.join(old)}; the minimum is {minimum} "
                    f"(ssl_protocols {' '.join(allowed)})"
                )


def api_key_required(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    for where, text in S.nginx_confs(resource_type, props):
        conf = S.nginx_skeleton(text)
        maps = [re.match(r"\$http_authorization\s+\$(\w+)", a) for a, _ in S.nginx_blocks(conf, "map")]
        keys = [m.group(1) for m in maps if m]
        if not keys:
            report(
                f"{where}: the front has no API-key gate (`map $http_authorization $<var> {{ include "
                f"<0600 keys map>; }}`): anyone reaching it can use the models"
            )
            continue
        gate = re.compile(
            r"\bif\s*\(\s*\$(?:" + "|".join(map(re.escape, keys)) + r")\b[^)]*\)\s*\{[^}]*\breturn\s+(?:401|403)\b"
        )
        for args, body in S.nginx_blocks(conf, "location"):
            if re.search(r"\bproxy_pass\b", body) and not gate.search(body):
                report(
                    f"{where}: location {args} proxies to a model without the API-key check "
                    f"(`if (${keys[0]} = 0) {{ return 401; }}`)"
                )


# --- on-demand-floor ---------------------------------------------------------------------------------


@dataclass
class _Workload:
    """A Kubernetes vLLM container with its workload's labels (gpu-limits-and-probes, preStop drain)."""

    res: Res
    capacity: str | None
    argv: S.VllmArgv
    container: Mapping
    pod: Mapping | None


def _k8s_workloads(resources: Iterable[Res]) -> list[_Workload]:
    out = []
    for r in resources:
        if r.type in S.WORKLOAD_TYPES:
            capacity = S.capacity_class(S.k8s_labels(r.props).get(D.LABEL_CAPACITY))
            for c, argv in S.vllm_containers(r.type, r.props):
                out.append(_Workload(r, capacity, argv, c, S.pod_spec(r.type, r.props)))
    return out


def _sleep_seconds(command: list[str]) -> float | None:
    """`sleep N` of a preStop exec list (`["sleep", "20"]`)."""
    if len(command) == 2 and posixpath.basename(command[0]) == "sleep":
        return S.number(command[1])
    return None


def on_demand_floor(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    """Pools: the on-demand floor (prod). Host spot servers: their drain hook's seconds. Kubernetes
    vLLM pods: the preStop sleep and the grace period around it."""
    pid = "on-demand-floor"
    lo, hi = int(ctx.threshold(pid, "drainSecondsMin")), int(ctx.threshold(pid, "drainSecondsMax"))
    if resource_type in S.POOL_COMPONENTS:
        floor = int(ctx.threshold(pid, "minOnDemand"))
        on_demand, spot = S.number(S.get(props, "onDemand")) or 0, S.number(S.get(props, "spot")) or 0
        model = S.get_known(props, "model")
        if ctx.prod and on_demand < floor:
            report(
                f"model {model} has {on_demand:g} on-demand replica(s) and {spot:g} spot: prod keeps >= "
                f"{floor} on-demand (seed 000: losing every spot instance must not take the model down); "
                f"set models[{model}].pool.onDemand"
            )
        return
    srv = S.server(resource_type, props)
    if srv is not None and resource_type in S.HOST_SERVER_COMPONENTS:
        if srv.capacity != "spot":
            return
        secs = S.number(S.get(srv.drain, "seconds")) if srv.drain is not None else None
        if secs is None:
            if ctx.prod:
                report(
                    f"spot vLLM server for {srv.model} has no drain hook ({lo}-{hi} s): in-flight requests are "
                    f"cut when the replica is removed"
                )
        elif not lo <= secs <= hi:
            report(f"drain hook for {srv.model} waits {secs:g} s; drain within {lo}-{hi} s (seed 000)")
        return
    for w in _k8s_workloads([Res(resource_type, props)]):
        pre = S.get(w.container, "lifecycle", "preStop")
        secs = _sleep_seconds(S.strings(S.get(pre, "exec", "command"))) if isinstance(pre, Mapping) else None
        name = w.container.get("name")
        if secs is None:
            if ctx.prod:
                report(
                    f"vLLM container {name} has no preStop drain (`sleep N`, {lo}-{hi} s): in-flight requests "
                    f"are cut when the pod stops"
                )
            continue
        if not lo <= secs <= hi:
            report(f"vLLM container {name}: preStop sleeps {secs:g} s; drain within {lo}-{hi} s (seed 000)")
        grace = S.number(S.get(w.pod, "terminationGracePeriodSeconds"))
        grace = 30.0 if grace is None else grace  # Kubernetes default
        if grace <= secs:
            report(
                f"vLLM pod terminationGracePeriodSeconds {grace:g} <= preStop sleep {secs:g} s: the kubelet "
                f"kills vLLM before the drain ends"
            )


# --- gpu-limits-and-probes (stack) --------------------------------------------------------------------


def _selects(selector: Mapping, labels: Mapping) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def gpu_limits_and_probes(resources: list[Res], ctx: PolicyContext, report: Report) -> None:
    pid = "gpu-limits-and-probes"
    min_delay = float(ctx.threshold(pid, "readinessDelayMinSeconds"))
    pdbs = [r for r in resources if r.type == S.PDB]
    for w in _k8s_workloads(resources):
        name, urn = w.container.get("name") or "?", w.res.urn or None
        tp_raw = S.last_value(w.argv.args, "--tensor-parallel-size")
        tp = S.number(tp_raw) if tp_raw is not None else 1.0
        limit = S.number(S.get(w.container, "resources", "limits", D.GPU_RESOURCE))
        if limit is None:
            report(
                f"vLLM container {name} has no resources.limits[{D.GPU_RESOURCE}] (--tensor-parallel-size "
                f"{tp:g}): the scheduler would not reserve its GPUs",
                urn,
            )
        elif tp is not None and limit != tp:
            report(
                f"vLLM container {name}: resources.limits[{D.GPU_RESOURCE}] is {limit:g} but "
                f"--tensor-parallel-size is {tp:g}: they must match (one GPU per tensor-parallel rank)",
                urn,
            )
        probe = S.get(w.container, "readinessProbe")
        if not isinstance(probe, Mapping):
            report(f"vLLM container {name} has no readinessProbe: traffic would reach it while weights load", urn)
        else:
            delay = S.number(probe.get("initialDelaySeconds")) or 0.0
            if delay < min_delay:
                report(
                    f"vLLM container {name}: readinessProbe.initialDelaySeconds {delay:g} < {min_delay:g} "
                    f"(model loading takes minutes; seed 003: 120-300 s)",
                    urn,
                )
        if ctx.prod and w.capacity is None and w.res.type == S.DEPLOYMENT and _ci():
            report(
                f"vLLM Deployment {S.get(w.res.props, 'metadata', 'name') or w.res.name} has no valid "
                f"{D.LABEL_CAPACITY} label: gpu-limits-and-probes cannot tell whether it needs a "
                f"PodDisruptionBudget; {_UNJUDGEABLE}",
                urn,
            )
        if ctx.prod and w.capacity == "onDemand" and w.res.type == S.DEPLOYMENT:
            tpl_labels = S.get(w.res.props, "spec", "template", "metadata", "labels") or {}
            ns = S.get(w.res.props, "metadata", "namespace")
            covered = any(
                _selects(S.get(p.props, "spec", "selector", "matchLabels") or {}, tpl_labels)
                and S.get(p.props, "metadata", "namespace") == ns
                for p in pdbs
            )
            if not covered:
                report(
                    f"on-demand vLLM Deployment {S.get(w.res.props, 'metadata', 'name') or w.res.name} has no "
                    f"PodDisruptionBudget: a node drain can evict the whole on-demand floor",
                    urn,
                )


# --- pinned-images --------------------------------------------------------------------------------


def pinned_images(resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None) -> None:
    refs: list[tuple[str, Any]] = []
    if resource_type == S.CONTAINER:
        refs.append(("image", S.get(props, "image")))
    elif resource_type == S.REMOTE_IMAGE:
        refs.append(("name", S.get(props, "name")))
    else:
        for c in S.containers(S.pod_spec(resource_type, props)):
            refs.append((f"containers[{c.get('name') or '?'}].image", c.get("image")))
    for where, ref in refs:
        problem = S.image_problem(ref)
        if problem:
            report(
                f"{where} {ref} {problem}: pin a version tag (e.g. {D.VLLM_IMAGE}) or a digest so a redeploy "
                f"cannot silently change what runs"
            )


# --- grafana-no-default-password ---------------------------------------------------------------------

_GF_PW, _GF_PW_FILE, _GF_ANON = (
    "GF_SECURITY_ADMIN_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD__FILE",
    "GF_AUTH_ANONYMOUS_ENABLED",
)


def _grafana_env_findings(env: Mapping[Any, Any], secret_sourced: set[Any], env_from_secret: bool) -> list[str]:
    out = []
    pw = env.get(_GF_PW)
    if _GF_PW in secret_sourced or env.get(_GF_PW_FILE):
        pass
    elif isinstance(pw, str):
        if pw.strip() in ("", "admin"):
            out.append(f"{_GF_PW} is {pw.strip() or 'empty'!r}: the default admin password")
        else:
            out.append(
                f"{_GF_PW} is a literal value ({redact(pw)}): read it from a secret ({_GF_PW_FILE} or secretKeyRef)"
            )
    elif not env_from_secret:
        out.append(f"neither {_GF_PW_FILE} nor a secret-sourced {_GF_PW} is set: Grafana starts with admin/admin")
    if str(env.get(_GF_ANON, "false")).strip().lower() == "true":
        out.append(f"{_GF_ANON}=true: anonymous users can read every dashboard")
    return out


def grafana_no_default_password(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    if resource_type == S.CONTAINER:
        envs = dict(e.partition("=")[::2] for e in S.strings(S.get(props, "envs")))
        image = S.get(props, "image") or ""
        if "grafana" in str(image) or any(k.startswith("GF_") for k in envs):
            for f in _grafana_env_findings(envs, set(), False):
                report(f"Grafana container: {f}")
    elif resource_type == S.CONFIG_MAP:
        data = S.get(props, "data")
        for k, v in data.items() if isinstance(data, Mapping) else []:
            if not isinstance(v, str) or "[auth.anonymous]" not in v and "admin_password" not in v:
                continue
            anon = re.search(r"(?ms)^\[auth\.anonymous\][^\[]*?^\s*enabled\s*=\s*true\b", v)
            if anon:
                report(f"ConfigMap data.{k}: [auth.anonymous] enabled = true")
            pw = re.search(r"(?m)^\s*admin_password\s*=\s*(\S*)\s*$", v)
            if pw and not pw.group(1).startswith("$__file"):
                report(f"ConfigMap data.{k}: admin_password set in plain text ({redact(pw.group(1)) or 'empty'})")
    else:
        for c in S.containers(S.pod_spec(resource_type, props)):
            env_list = [e for e in S.as_list(c.get("env")) if isinstance(e, Mapping)]
            is_grafana = "grafana" in str(c.get("image") or "") or any(
                str(e.get("name", "")).startswith("GF_") for e in env_list
            )
            if not is_grafana:
                continue
            env = {e.get("name"): e.get("value") for e in env_list if "value" in e}
            secret_sourced = {e.get("name") for e in env_list if S.get(e, "valueFrom", "secretKeyRef") is not None}
            env_from_secret = any(isinstance(e, Mapping) and "secretRef" in e for e in S.as_list(c.get("envFrom")))
            for f in _grafana_env_findings(env, secret_sourced, env_from_secret):
                report(f"Grafana container {c.get('name')}: {f}")


# --- no-invalid-vllm-flags -------------------------------------------------------------------------


def no_invalid_vllm_flags(
    resource_type: str, props: Mapping, ctx: PolicyContext, report: Report, secret_keys=None
) -> None:
    for argv in S.vllm_argvs(resource_type, props):
        for i, msg in flags.problems(list(argv.args), managed_allowed=True):
            report(f"{argv.where} argument {i}: {msg}")


# --- registry: one declaration per rule ---------------------------------------------------------------

# prod: everything blocks. dev: what only hurts availability or hygiene warns; what leaks a secret,
# exposes an unauthenticated port or cannot start at all still blocks.
_BLOCKS = {"dev": MANDATORY, "prod": MANDATORY}
_WARNS_IN_DEV = {"dev": ADVISORY, "prod": MANDATORY}

RULES: tuple[Rule, ...] = (
    Rule(
        "gpu-memory-utilization-ceiling",
        "vLLM --gpu-memory-utilization stays at or below the production ceiling (0.93, configurable) in prod "
        "and below the hard ceiling (0.95) everywhere (the `argv` a vLLM server component runs, any spelling).",
        gpu_memory_utilization_ceiling,
        _BLOCKS,  # dev is judged at the hard ceiling
        thresholds=(
            Threshold(
                "prodCeiling",
                D.GPU_MEMORY_UTILIZATION_PROD_CEILING,
                "Highest --gpu-memory-utilization allowed in prod (seed 004).",
                maximum=1,
            ),
            Threshold(
                "hardCeiling",
                D.GPU_MEMORY_UTILIZATION_HARD_CEILING,
                "Highest --gpu-memory-utilization allowed anywhere.",
                maximum=1,
            ),
        ),
        reads=(
            "`argv` of the `DockerVllmServer` / `SystemdVllmServer` / `KubernetesVllmServer` components; "
            "every spelling (`--flag=v`, `--gpu_memory_utilization`), every occurrence (a value smuggled "
            "through `extraArgs` repeats the flag)"
        ),
        remediation="Lower models[].gpuMemoryUtilization.",
    ),
    Rule(
        "model-fits-gpu",
        "Per GPU, as vLLM accounts for it: weights by module class (Linear layers at the quantization's bytes, "
        "a pre-quantized checkpoint at its own format; embedding, lm_head, norms 16-bit), activation peak, "
        "non-torch/NCCL and CUDA-graph estimates, `overheadGiB` extra reserve and the KV cache of one sequence "
        "at --max-model-len fit in the CUDA-visible total x utilization (`vllm_stack.sizing.fit`).",
        model_fits_gpu,
        _WARNS_IN_DEV,  # an estimate; dev is where you try
        thresholds=(
            Threshold(
                "overheadGiB",
                D.RUNTIME_OVERHEAD_GIB,
                "Extra reserve per GPU on top of the vLLM-like estimate, GiB (default 0).",
            ),
            Threshold(
                "defaultUtilization",
                D.VLLM_UPSTREAM_GPU_MEMORY_UTILIZATION,
                "Utilization assumed when an argv omits --gpu-memory-utilization.",
                maximum=1,
            ),
        ),
        reads=(
            "server components: `argv` (model positional or `--model`, `--tensor-parallel-size`, "
            "`--quantization`, `--kv-cache-dtype`, `--max-model-len`, `--gpu-memory-utilization`) and `gpu`;"
            " unknown models (inline `architecture`) are skipped"
        ),
        remediation="Quantize, raise tensorParallel, lower maxModelLen or use a bigger GPU.",
    ),
    Rule(
        "fp8-requires-fp8-gpu",
        "--kv-cache-dtype fp8 needs an FP8 GPU (compute capability >= 8.9); --quantization fp8 on older GPUs "
        "only gets weight-only FP8 (advisory).",
        fp8_requires_fp8_gpu,
        _BLOCKS,
        thresholds=(
            Threshold(
                "minComputeCapability", FP8_MIN_COMPUTE_CAPABILITY, "Lowest CUDA compute capability with FP8 compute."
            ),
        ),
        reads=(
            "server components: `argv` and `gpu`; the weight-only FP8 finding is advisory (vLLM falls back to Marlin)"
        ),
        remediation="Use an Ada/Hopper GPU or AWQ/GPTQ and kvCacheDtype auto.",
        advisory_findings=True,  # weight-only FP8 on an older GPU saves memory: a warning, never a block
    ),
    Rule(
        "no-secrets-in-argv",
        "No --api-key/--hf-token and no token-looking values (sk-..., hf_..., Bearer ...) on command lines, "
        "container entrypoints/envs/labels, remote command strings, or Kubernetes labels/annotations.",
        no_secrets_in_argv,
        _BLOCKS,
        reads=(
            "Container `command`/`entrypoints`/`envs`/`labels`/`healthcheck`, Command `create/update/delete`"
            " (split into words, not run), k8s `metadata.labels/annotations` (object and pod template), "
            "container `command`/`args`"
        ),
        remediation="Use the apiKey/hfToken secrets (VLLM_API_KEY/HF_TOKEN).",
    ),
    Rule(
        "secrets-only-in-secret-stores",
        "API keys, HF tokens, the Grafana password and TLS private keys live only in Kubernetes Secrets, 0600 "
        "files written from secret stdin, or Pulumi secrets; never in ConfigMaps, plain env values, container "
        "envs or unit files.",
        secrets_only_in_secret_stores,
        _BLOCKS,
        reads=(
            "ConfigMap `data`/`binaryData`, pod `env`, Container `envs`, Command "
            "`create/update/delete/stdin` (+ whether `stdin` is secret and the install mode is 600/`umask "
            "077`/`vllm-write-secrets`), `tls:*` `privateKeyPem`; offline also every non-secret input of "
            "every resource and component carrying the plan's secret value"
        ),
        remediation="Move the value to a secret store.",
    ),
    Rule(
        "vllm-not-exposed",
        "vLLM binds loopback or a private address (docker port ip, a host server's address) and its Kubernetes "
        "Services are ClusterIP; only the front is public.",
        vllm_not_exposed,
        _WARNS_IN_DEV,
        reads=(
            "Container `ports`/`networkMode` and `command` `--host`, host server components' `address`, "
            "Service `spec` (selector with `vllm-stack/model` or component `vllm`), pod spec "
            "`hostNetwork`/`hostPort`"
        ),
        remediation="Bind 127.0.0.1/private IPs; route clients through the front.",
    ),
    Rule(
        "tls-required-in-prod",
        "In prod the front's nginx listens with TLS (`listen ... ssl` and a certificate).",
        tls_required_in_prod,
        _WARNS_IN_DEV,  # only fires in prod
        reads="the front's nginx.conf in ConfigMap `data` or Command `stdin`",
        remediation="Set front.tls to provided (or selfSigned).",
    ),
    Rule(
        "tls-min-version",
        "The front's ssl_protocols enable nothing older than TLSv1.2 (configurable).",
        tls_min_version,
        _BLOCKS,
        thresholds=(
            Threshold(
                "minVersion",
                D.TLS_MIN_VERSION,
                "Oldest protocol `ssl_protocols` may list.",
                enum=("TLSv1.2", "TLSv1.3"),
            ),
        ),
        reads="the front's nginx.conf (`ssl_protocols`)",
        remediation="ssl_protocols TLSv1.2 TLSv1.3;",
    ),
    Rule(
        "api-key-required",
        "The public front rejects requests without a valid API key (map $http_authorization + return 401).",
        api_key_required,
        _BLOCKS,
        reads="the front's nginx.conf (`map $http_authorization`, `location` blocks with `proxy_pass`)",
        remediation="Render the front with the API-key map include.",
    ),
    Rule(
        "on-demand-floor",
        "Prod keeps >= 1 on-demand replica per model under spot capacity (a pool component's `onDemand`), and "
        "drains (a spot server's drain hook `seconds`, a vLLM pod's preStop sleep) last 10-30 s.",
        on_demand_floor,
        _WARNS_IN_DEV,  # the floor only in prod; drain everywhere
        thresholds=(
            Threshold("minOnDemand", 1, "On-demand replicas every model keeps in prod (seed 000).", integer=True),
            Threshold(
                "drainSecondsMin",
                D.DRAIN_SECONDS_MIN,
                "Shortest drain (preStop sleep / drain hook), seconds.",
                integer=True,
            ),
            Threshold("drainSecondsMax", D.DRAIN_SECONDS_MAX, "Longest drain, seconds.", integer=True),
        ),
        reads=(
            "pool components' `onDemand`/`spot`, host server components' `capacity` and `drain.seconds`, k8s"
            " vLLM containers' `lifecycle.preStop.exec.command` and `terminationGracePeriodSeconds`"
        ),
        remediation="Set pool.onDemand >= 1 and drainSeconds 10-30.",
    ),
    Rule(
        "gpu-limits-and-probes",
        "Kubernetes vLLM containers request nvidia.com/gpu = --tensor-parallel-size, wait >= 120 s before "
        "readiness, and prod on-demand pods have a PodDisruptionBudget.",
        gpu_limits_and_probes,
        _WARNS_IN_DEV,  # the PDB only in prod
        scope="stack",
        thresholds=(
            Threshold(
                "readinessDelayMinSeconds",
                D.READINESS_DELAY_MIN_SEC,
                "Lowest readinessProbe.initialDelaySeconds of a vLLM container.",
                integer=True,
            ),
        ),
        reads=(
            "stack: k8s vLLM Deployments (container `args`, `resources.limits`, `readinessProbe`, labels), "
            "PodDisruptionBudgets"
        ),
        remediation="Render pods with vllm_stack.render.k8s_model.",
    ),
    Rule(
        "pinned-images",
        "Images are pinned (a version tag other than latest, or a digest); untagged or :latest blocks in prod.",
        pinned_images,
        _WARNS_IN_DEV,
        reads="Container `image`, RemoteImage `name`, pod spec `containers`/`initContainers`",
        remediation="Set models[].image to a versioned tag.",
    ),
    Rule(
        "grafana-no-default-password",
        "Grafana's admin password is neither admin nor empty, comes from a secret (GF_SECURITY_ADMIN_PASSWORD__FILE "
        "or secretKeyRef), and anonymous access is off.",
        grafana_no_default_password,
        _BLOCKS,
        reads="Grafana Container `envs`, pod `env`/`envFrom`, ConfigMap `data` (grafana.ini)",
        remediation="Mount the password file from a secret.",
    ),
    Rule(
        "no-invalid-vllm-flags",
        "Every vLLM server component's `argv` passes the stack's flag table: no --dtype fp8, no removed flags, "
        "no managed flag given twice, no secret flags.",
        no_invalid_vllm_flags,
        _BLOCKS,
        reads=(
            "server components' `argv`, read as vLLM's parser reads it (`vllm_stack.flags.problems`: unique "
            "prefixes, `_` spellings, `=` forms, short options and aliases)"
        ),
        remediation="Fix models[].extraArgs (see vllm_stack/flags.py).",
    ),
    Rule(
        "quantization-matches-checkpoint",
        "A vLLM server's --quantization is one its checkpoint can load (else vLLM refuses to start); an explicit "
        "AWQ/GPTQ flag on a checkpoint that carries it is redundant (advisory: vLLM picks the Marlin kernel).",
        quantization_rules.quantization_matches_checkpoint,
        _BLOCKS,
        advisory_findings=True,
        reads="server components' `argv` (`--quantization`, the model) against the model catalog's checkpoints",
        remediation="Leave models[].quantization to the checkpoint (see `python -m vllm_stack recommend`).",
    ),
    Rule(
        "vllm-replica-heals",
        "A hung vLLM replica on an SSH host is restarted and its unit sandboxed: the SystemdVllmServer's unit has "
        "WatchdogSec >= TimeoutStopSec + marginSec and the sandbox settings (systemd-analyze security <= 3.5); a "
        "vLLM container has a healthcheck (what the host's vllm-heal timer acts on).",
        healing_rules.vllm_replica_heals,
        _WARNS_IN_DEV,
        thresholds=(
            Threshold("marginSec", D.PROBE_PERIOD_SEC, "WatchdogSec must be at least TimeoutStopSec + this, seconds."),
        ),
        reads="SystemdVllmServer `unit.content` ([Service] settings), vLLM Container `healthcheck`",
        remediation="Render units with vllm_stack.render.systemd; set models[].unhealthyRestartSeconds.",
    ),
    Rule(
        "rollout-timeout-covers-startup",
        "A vLLM server's rollout timeout (how long `pulumi up` waits for Ready / healthy) covers its startup "
        "budget: download + load + engine init from the weight size, and the startup probe's own budget; "
        "Kubernetes: progressDeadlineSeconds is not shorter.",
        rollout_rules.rollout_timeout_covers_startup,
        _WARNS_IN_DEV,  # a slow first start only costs a retry in dev
        thresholds=(
            Threshold(
                "minRolloutOverStartup",
                D.ROLLOUT_MIN_OVER_STARTUP,
                "Rollout timeout / startup budget must be at least this.",
                minimum=1,
            ),
        ),
        reads="KubernetesVllmServer `rolloutTimeout`, `startupBudgetSeconds`, `deployment`; DockerVllmServer "
        "`healthWaitSeconds`, `startupBudgetSeconds`, `argv`",
        remediation="Leave the timeouts to vllm_stack.startup (the stack computes them per model).",
    ),
    Rule(
        "router-pinned",
        "The routing tier's vllm-router is pinned: its image by digest (it has no official image, so a tag can "
        "be pushed again), its pip install by version.",
        routing_rules.router_pinned,
        _WARNS_IN_DEV,
        thresholds=(
            Threshold("requireDigest", True, "Require router images as repo@sha256:<digest> (else a tag suffices)."),
        ),
        reads="router Container `image`, router pod spec images, the router install Command's `create`",
        remediation="Set router.image to repo@sha256:<digest>; router.version pins the pip install.",
    ),
    Rule(
        "router-not-exposed",
        "vllm-router's unauthenticated admin and metrics endpoints are reachable only from the front: "
        "loopback on hosts, a ClusterIP Service without externalIPs, hostNetwork or hostPort on Kubernetes.",
        routing_rules.router_not_exposed,
        _BLOCKS,
        reads="router Container `command` `--host`/`ports`, the router unit's ExecStart, router Service `spec`, pod spec",
        remediation="Render the router with vllm_stack.render.router.",
    ),
    Rule(
        "router-network-policy",
        "Every router Deployment has a NetworkPolicy selecting its pods that admits only named peers "
        "(the front, Prometheus) on the routing port.",
        routing_rules.router_network_policy,
        _BLOCKS,
        scope="stack",
        reads="stack: router Deployments (pod template labels), NetworkPolicies",
        remediation="Render the router with vllm_stack.render.router (router_objects).",
    ),
)

#: Derived views (report order = declaration order).
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
POLICY_IDS: tuple[str, ...] = tuple(RULES_BY_ID)
assert len(POLICY_IDS) == len(RULES), "duplicate rule id"


def rule(policy_id: str) -> Rule:
    return RULES_BY_ID[policy_id]
