"""Where the things the rules look at live in each resource shape.

Pure readers over a resource's type and props (plain dicts offline, CrossGuard's read-only
proxies under the CLI: only `Mapping`/`Sequence` behaviour is used). Nothing here decides a
violation.

Shapes read:
* `docker:index/container:Container`: `command` (vLLM argv after `vllm serve`), `entrypoints`,
  `envs` (`K=V`), `labels` ([{label, value}]), `ports` ([{internal, external, ip}]), `image`,
  `networkMode`;
* `docker:index/remoteImage:RemoteImage`: `name`;
* `command:remote:Command` / `command:local:Command`: `create`/`update`/`delete` strings and
  `stdin` (scripts, unit files, wrappers, config files pushed over SSH);
* Kubernetes workloads (`apps/v1` Deployment/StatefulSet/DaemonSet/ReplicaSet, `core/v1` Pod,
  `batch/v1` Job/CronJob): the pod spec's containers (`image`, `command`, `args`, `env`,
  `envFrom`, `resources`, `readinessProbe`, `lifecycle`, `ports`), `metadata.labels` and the
  template's labels; ConfigMap `data`; Service `spec`; PodDisruptionBudget `spec.selector`.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Iterator

from vllm_stack import defaults as D

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
COMMAND_TYPES = ("command:remote:Command", "command:local:Command")
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
#: GPU model (catalog id) of a vLLM workload: docker/k8s label, or a marker in a rendered unit/wrapper.
LABEL_GPU = D.LABEL_GPU
#: Label-like markers in rendered scripts/units (`# vllm-stack/model: llama-8b`), for workloads
#: that carry no labels (systemd units pushed by `command:remote:Command`; render/systemd.unit_markers).
_MARKER = re.compile(r"(?m)(?:^|[\s#;])(vllm-stack/[a-z-]+)\s*[:=]\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: Flags that only a vLLM server argv carries (to recognise a vLLM container by its args).
VLLM_MARKER_FLAGS = (
    "--served-model-name",
    "--gpu-memory-utilization",
    "--tensor-parallel-size",
    "--max-model-len",
    "--max-num-seqs",
    "--kv-cache-dtype",
)
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


# --- generic access ----------------------------------------------------------------------


def get(obj: Any, *path: str | int, default: Any = None) -> Any:
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not is_list(cur) or key >= len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping) or key not in cur:
                return default
            cur = cur[key]
    return default if cur is None else cur


def get_known(obj: Any, *path: str | int, default: Any = None) -> Any:
    """`get`, but a value unknown during `pulumi preview` reads as `default` instead of raising.

    For fields that only help recognise a shape (a Container's `image` is the RemoteImage's
    digest, unknown until it is pulled) or that the stack only fills from secret Outputs (the
    stdin of secret files): reading them strictly would stop every check on the resource during
    preview. Fields a rule judges are read with `get`: an unknown one raises CrossGuard's
    UnknownValueError ("can't run policy during preview"), and `pulumi up` checks it again.
    """
    try:
        return get(obj, *path, default=default)
    except Exception as exc:  # noqa: BLE001 - only pulumi_policy's UnknownValueError is expected
        if type(exc).__name__ == "UnknownValueError":
            return default
        raise


def is_list(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


def as_list(v: Any) -> list:
    return list(v) if is_list(v) else []


def strings(v: Any) -> list[str]:
    """Every string in a list (non-strings skipped)."""
    return [x for x in as_list(v) if isinstance(x, str)]


def walk_strings(v: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every string nested in v."""
    if isinstance(v, str):
        yield path, v
    elif isinstance(v, Mapping):
        for k in v:
            yield from walk_strings(v[k], f"{path}.{k}" if path else str(k))
    elif is_list(v):
        for i, x in enumerate(v):
            yield from walk_strings(x, f"{path}[{i}]")


def number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# --- labels -------------------------------------------------------------------------------


def docker_labels(props: Mapping) -> dict[str, str]:
    out = {}
    for item in as_list(get(props, "labels")):
        if isinstance(item, Mapping) and isinstance(item.get("label"), str):
            out[item["label"]] = str(item.get("value", ""))
    return out


def k8s_labels(props: Mapping) -> dict[str, str]:
    """Object labels merged with the pod template's (template wins) and the nodeSelector."""
    out: dict[str, str] = {}
    for path in (("metadata", "labels"),):
        lbl = get(props, *path)
        if isinstance(lbl, Mapping):
            out.update({str(k): str(v) for k, v in lbl.items()})
    tpl = pod_template_path(props)
    if tpl is not None:
        lbl = get(props, *tpl[:-1], "metadata", "labels")
        if isinstance(lbl, Mapping):
            out.update({str(k): str(v) for k, v in lbl.items()})
    return out


def markers(text: str) -> dict[str, str]:
    """`vllm-stack/<key>: value` markers in a rendered script or unit (last one wins)."""
    return {m.group(1): m.group(2) for m in _MARKER.finditer(text or "")}


def resource_labels(resource_type: str, props: Mapping) -> dict[str, str]:
    if resource_type == CONTAINER:
        return docker_labels(props)
    if resource_type.startswith("kubernetes:"):
        labels = k8s_labels(props)
        sel = get(props, *(pod_template_path(props) or ("spec",)), "nodeSelector")
        if isinstance(sel, Mapping) and LABEL_GPU in sel and LABEL_GPU not in labels:
            labels[LABEL_GPU] = str(sel[LABEL_GPU])
        return labels
    if resource_type in COMMAND_TYPES:
        out: dict[str, str] = {}
        for key in ("create", "update", "stdin"):
            v = get_known(props, key)
            if isinstance(v, str):
                out.update(markers(v))
        return out
    return {}


def capacity_class(value: str | None) -> str | None:
    """`on-demand`/`onDemand` → onDemand, `spot` → spot."""
    if not value:
        return None
    v = value.replace("-", "").replace("_", "").lower()
    return {"ondemand": "onDemand", "spot": "spot"}.get(v)


# --- kubernetes pod specs --------------------------------------------------------------------


def pod_template_path(props: Mapping) -> tuple[str, ...] | None:
    """Path of the pod spec inside a workload's props (guessed from the shape, any kind)."""
    if get(props, "spec", "jobTemplate", "spec", "template", "spec") is not None:
        return ("spec", "jobTemplate", "spec", "template", "spec")
    if get(props, "spec", "template", "spec") is not None:
        return ("spec", "template", "spec")
    if is_list(get(props, "spec", "containers")):
        return ("spec",)
    return None


def pod_spec(resource_type: str, props: Mapping) -> Mapping | None:
    if resource_type not in WORKLOAD_TYPES:
        return None
    spec = get(props, *WORKLOAD_TYPES[resource_type])
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping | None, *, init: bool = True) -> list[Mapping]:
    if not isinstance(spec, Mapping):
        return []
    keys = ("initContainers", "containers") if init else ("containers",)
    return [c for k in keys for c in as_list(spec.get(k)) if isinstance(c, Mapping)]


def image_is_vllm(image: Any) -> bool:
    if not isinstance(image, str) or not image:
        return False
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0]
    return last.startswith("vllm")


# --- shell scripts ------------------------------------------------------------------------------

_PUNCT = "();<>|&"
_ARRAY_REF = re.compile(r"^\$\{(\w+)\[[@*]\]\}$")
_VAR_REF = re.compile(r"^\$\{?(\w+)\}?$")
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)=(.*)$", re.S)
_DECLARERS = {"readonly", "declare", "local", "export", "typeset"}


def _tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=_PUNCT)
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def _split_commands(tokens: list[str]) -> Iterator[list[str]]:
    cmd: list[str] = []
    for t in tokens:
        if t and all(c in ";&|" for c in t):
            if cmd:
                yield cmd
            cmd = []
        else:
            cmd.append(t)
    if cmd:
        yield cmd


def _commands(text: str) -> Iterator[list[str]]:
    """Simple commands of a shell script or unit file (best effort, never raises)."""
    pending = ""
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        try:
            toks = _tokens(line)
        except ValueError:  # an open quote: the command goes on on the next line
            pending = line + "\n"
            if pending.count("\n") > 400:  # not shell after all: give up on this chunk
                pending = ""
            continue
        if toks.count("(") > toks.count(")"):  # multi-line array assignment
            pending = line + "\n"
            continue
        pending = ""
        yield from _split_commands(toks)
    if pending:
        for line in pending.splitlines():
            try:
                yield from _split_commands(_tokens(line))
            except ValueError:
                continue


def _program(token: str) -> str:
    """`ExecStart=-/usr/local/bin/vllm` → `vllm`; `"$VLLM"` stays a variable reference."""
    m = re.match(r"^[A-Za-z][A-Za-z0-9]*=(.*)$", token)
    if m and not token.startswith("$"):
        token = m.group(1)
    token = token.lstrip("-@+!:")
    return posixpath.basename(token)


#: A script can only start a vLLM server if it names one of these; everything else (host
#: bootstraps mention the `vllm` user on every line) is skipped without tokenizing.
_SERVER_HINT = re.compile(r"\bserve\b|vllm\.entrypoints")


def script_argvs(text: str) -> list[list[str]]:
    """vLLM server argvs (after `vllm serve`) written in a shell script / unit file.

    Every check asks for the argvs of every script, so results are cached by script text
    (copies are returned: callers may mutate them).
    """
    if not isinstance(text, str) or "vllm" not in text or not _SERVER_HINT.search(text):
        return []
    return [list(a) for a in _script_argvs_cached(text)]


@functools.lru_cache(maxsize=4096)
def _script_argvs_cached(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(a) for a in _script_argvs(text))


def _script_argvs(text: str) -> list[list[str]]:
    """Parse `text` (see script_argvs).

    Recognises `vllm serve ...` (any path, `$VAR` resolved when assigned in the script),
    `python -m vllm.entrypoints.openai.api_server ...`, systemd `ExecStart=.../vllm serve ...`,
    and bash arrays expanded in the call (`"${SERVE_ARGS[@]}"`). `"$@"` is dropped (the caller's
    argv, e.g. a container command, is checked separately).
    """
    if not isinstance(text, str) or "vllm" not in text:
        return []
    scalars: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    found: list[list[str]] = []

    def expand(tok: str) -> list[str]:
        m = _ARRAY_REF.match(tok)
        if m:
            return list(arrays.get(m.group(1), [tok]))
        if tok in ("$@", "$*", "${@}", "${*}"):
            return []
        m = _VAR_REF.match(tok)
        if m and m.group(1) in scalars:
            return [scalars[m.group(1)]]
        return [tok]

    for cmd in _commands(text):
        # assignments: NAME=value, readonly [-a] NAME=( ... )
        i = 0
        while i < len(cmd) and (cmd[i] in _DECLARERS or (cmd[i].startswith("-") and i > 0 and cmd[0] in _DECLARERS)):
            i += 1
        j = i
        while j < len(cmd):
            m = _ASSIGN.match(cmd[j])
            if not m:
                break
            name, value = m.group(1), m.group(2)
            if value == "" and j + 1 < len(cmd) and cmd[j + 1] == "(":
                end = cmd.index(")", j + 2) if ")" in cmd[j + 2 :] else len(cmd)
                arrays[name] = cmd[j + 2 : end]
                j = end + 1
            else:
                scalars[name] = value
                j += 1
        for k, tok in enumerate(cmd):
            prog = _program(expand(tok)[0] if expand(tok) else tok)
            nxt = cmd[k + 1] if k + 1 < len(cmd) else None
            if prog == "vllm" and nxt == "serve":
                rest = cmd[k + 2 :]
            elif tok == "-m" and nxt == API_SERVER_MODULE:
                rest = cmd[k + 2 :]
            else:
                continue
            argv: list[str] = []
            for a in rest:
                if a in ("(", ")", "<", ">"):
                    break
                argv.extend(expand(a))
            found.append(argv)
            break
    return found


# --- vLLM argv per shape -------------------------------------------------------------------------


@dataclass(frozen=True)
class VllmArgv:
    where: str  # e.g. "command", "containers[vllm].args", "stdin"
    args: tuple[str, ...]  # after `vllm serve`: model positional first when present
    text: str = ""  # the script it came from (markers), if any


def _strip_prefix(argv: list[str]) -> list[str]:
    if len(argv) >= 2 and posixpath.basename(argv[0]) == "vllm" and argv[1] == "serve":
        return argv[2:]
    for i in range(len(argv) - 1):
        if argv[i] == "-m" and argv[i + 1] == API_SERVER_MODULE:
            return argv[i + 2 :]
    return argv


def _looks_vllm(argv: Sequence[str]) -> bool:
    from vllm_stack import flags

    return any(flags.normalize(a, abbrev=False) in VLLM_MARKER_FLAGS for a in argv if a.startswith("-"))


def container_argvs(props: Mapping) -> list[VllmArgv]:
    """A docker container's vLLM argv: its `command` when the entrypoint (or image) is vLLM."""
    command = strings(get(props, "command"))
    entry = strings(get(props, "entrypoints"))
    out: list[VllmArgv] = []
    entry_text = " ".join(entry)
    entry_is_vllm = (
        bool(re.search(r"\bvllm\s+serve\b", entry_text))
        or API_SERVER_MODULE in entry_text
        or (len(entry) >= 2 and posixpath.basename(entry[0]) == "vllm" and entry[1] == "serve")
    )
    is_vllm = (
        entry_is_vllm
        or image_is_vllm(get_known(props, "image"))
        or D.LABEL_MODEL in docker_labels(props)
        or _looks_vllm(command)
        or _strip_prefix(command) != command
    )
    if command and is_vllm:
        out.append(VllmArgv("command", tuple(_strip_prefix(command))))
    for s in entry:
        for argv in script_argvs(s):
            if argv:
                out.append(VllmArgv("entrypoints", tuple(argv), s))
    return out


def k8s_container_argvs(c: Mapping) -> list[VllmArgv]:
    name = c.get("name") or "?"
    command = strings(c.get("command"))
    args = strings(c.get("args"))
    out: list[VllmArgv] = []
    shell = len(command) >= 2 and posixpath.basename(command[0]) in ("sh", "bash", "dash") and "-c" in command
    if shell:
        for s in command + args:
            for argv in script_argvs(s):
                if argv:
                    out.append(VllmArgv(f"containers[{name}].command", tuple(argv), s))
        return out
    full = command + args
    stripped = _strip_prefix(full)
    if stripped != full:
        out.append(VllmArgv(f"containers[{name}].args", tuple(stripped)))
    elif args and (image_is_vllm(c.get("image")) or _looks_vllm(args)) and not command:
        out.append(VllmArgv(f"containers[{name}].args", tuple(args)))
    elif _looks_vllm(full):
        out.append(VllmArgv(f"containers[{name}].args", tuple(full)))
    return out


def command_scripts(props: Mapping) -> list[tuple[str, str]]:
    """(field, text) of a Command's create/update/delete/stdin strings."""
    return [(k, v) for k in ("create", "update", "delete", "stdin") if isinstance(v := get_known(props, k), str)]


def vllm_argvs(resource_type: str, props: Mapping) -> list[VllmArgv]:
    """Every vLLM server argv a resource carries."""
    if resource_type == CONTAINER:
        return container_argvs(props)
    if resource_type in COMMAND_TYPES:
        return [VllmArgv(k, tuple(a), text) for k, text in command_scripts(props) for a in script_argvs(text) if a]
    spec = pod_spec(resource_type, props)
    if spec is not None:
        return [a for c in containers(spec) for a in k8s_container_argvs(c)]
    if resource_type == CONFIG_MAP:
        data = get(props, "data")
        if isinstance(data, Mapping):
            return [
                VllmArgv(f"data.{k}", tuple(a), v)
                for k, v in data.items()
                if isinstance(v, str)
                for a in script_argvs(v)
                if a
            ]
    return []


def vllm_containers(resource_type: str, props: Mapping) -> list[tuple[Mapping, VllmArgv]]:
    """(container, argv) of the vLLM containers of a Kubernetes workload."""
    spec = pod_spec(resource_type, props)
    out = []
    for c in containers(spec, init=False):
        argvs = k8s_container_argvs(c)
        if argvs:
            out.append((c, argvs[0]))
    return out


def model_of(argv: Sequence[str]) -> str | None:
    from vllm_stack import flags

    vals = flags.flag_values(argv, "--model")
    if vals:
        return vals[-1]
    if argv and not argv[0].startswith("-"):
        return argv[0]
    return None


def last_value(argv: Sequence[str], flag: str) -> str | None:
    from vllm_stack import flags

    vals = flags.flag_values(argv, flag)
    return vals[-1] if vals else None


# --- addresses and images --------------------------------------------------------------------------

_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def address_kind(addr: Any) -> str:
    """loopback | private | unspecified | public | invalid."""
    if not isinstance(addr, str) or not addr.strip():
        return "unspecified"
    try:
        ip = ipaddress.ip_address(addr.strip().strip("[]"))
    except ValueError:
        return "invalid"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in _RFC1918 if net.version == ip.version):
        return "private"
    return "public"


def image_problem(ref: Any) -> str | None:
    """Why an image reference is not pinned (None when it is: a tag other than latest, or a digest)."""
    if not isinstance(ref, str) or not ref:
        return None
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses :latest"
    return None


# --- nginx ---------------------------------------------------------------------------------------

_NGINX_SERVER = re.compile(r"\bserver\s*\{")
_NGINX_LISTEN = re.compile(r"(?m)^\s*listen\s")


def is_nginx_front_conf(text: Any) -> bool:
    return isinstance(text, str) and bool(_NGINX_SERVER.search(text)) and bool(_NGINX_LISTEN.search(text))


def nginx_confs(resource_type: str, props: Mapping) -> list[tuple[str, str]]:
    """(where, text) of nginx configs with a listening `server {}` (the front's nginx.conf)."""
    out = []
    if resource_type == CONFIG_MAP:
        data = get(props, "data")
        if isinstance(data, Mapping):
            out = [(f"data.{k}", v) for k, v in data.items() if is_nginx_front_conf(v)]
    elif resource_type in COMMAND_TYPES:
        stdin = get_known(props, "stdin")
        if is_nginx_front_conf(stdin):
            out = [("stdin", stdin)]
    return out


def strip_nginx_comments(text: str) -> str:
    return re.sub(r"(?m)#.*$", "", text)


def nginx_skeleton(text: str) -> str:
    """Comments removed and quoted strings emptied (`return 401 '{...}'` has braces in quotes)."""
    text = strip_nginx_comments(text)  # first: comments hold apostrophes ("nginx's own")
    return re.sub(r"'(?:[^'\\]|\\.)*'|" + r'"(?:[^"\\]|\\.)*"', '""', text)


def nginx_blocks(conf: str, keyword: str) -> list[tuple[str, str]]:
    """(arguments, body) of every `keyword ... { body }` block (nested blocks stay in the body)."""
    out = []
    for m in re.finditer(r"(?<![\w$])" + re.escape(keyword) + r"\b([^{};]*)\{", conf):
        depth, i = 1, m.end()
        while i < len(conf) and depth:
            depth += {"{": 1, "}": -1}.get(conf[i], 0)
            i += 1
        out.append((m.group(1).strip(), conf[m.end() : i - 1]))
    return out
