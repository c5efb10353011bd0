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
  `stdin` (scripts, unit files, wrappers, config files pushed over SSH), scanned as text for
  secret material only: nothing here interprets a shell script;
* the stack's components (`vllmstack:index:*`, their registered inputs, camelCased at the top
  level): a vLLM server's `model`, `capacity`, `argv` (after `vllm serve`), `gpu`, `address`,
  `drain.seconds`; a pool's `model`, `onDemand`, `spot`. The vLLM rules read only these;
* Kubernetes workloads (`apps/v1` Deployment/StatefulSet/DaemonSet/ReplicaSet, `core/v1` Pod,
  `batch/v1` Job/CronJob): the pod spec's containers (`image`, `command`, `args`, `env`,
  `envFrom`, `resources`, `readinessProbe`, `lifecycle`, `ports`), `metadata.labels` and the
  template's labels; ConfigMap `data`; Service `spec`; PodDisruptionBudget `spec.selector`.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Iterator

from vllm_stack import defaults as D
from vllm_stack.deployment import ROUTER_COMPONENT, ROUTER_PREFIX

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
#: GPU model (catalog id) of a Kubernetes vLLM workload (label or nodeSelector).
LABEL_GPU = D.LABEL_GPU


def component_type(cls: str) -> str:
    """The type token of one of the stack's components (`vllm_stack.components.base.Component`)."""
    return f"{D.COMPONENT_PREFIX}:{cls}"


#: vLLM replicas (one per platform variant) and pools, by type token (checked against the
#: component classes in tests/policy/test_pack.py).
SERVER_COMPONENTS = frozenset(map(component_type, ("DockerVllmServer", "SystemdVllmServer", "KubernetesVllmServer")))
HOST_SERVER_COMPONENTS = frozenset(map(component_type, ("DockerVllmServer", "SystemdVllmServer")))
POOL_COMPONENTS = frozenset(map(component_type, ("HostSpotOnDemandPool", "KubernetesSpotOnDemandPool")))
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


def resource_labels(resource_type: str, props: Mapping) -> dict[str, str]:
    if resource_type == CONTAINER:
        return docker_labels(props)
    if resource_type.startswith("kubernetes:"):
        labels = k8s_labels(props)
        sel = get(props, *(pod_template_path(props) or ("spec",)), "nodeSelector")
        if isinstance(sel, Mapping) and LABEL_GPU in sel and LABEL_GPU not in labels:
            labels[LABEL_GPU] = str(sel[LABEL_GPU])
        return labels
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
    """A vLLM server image (`vllm/vllm-openai`, `vllm-cpu`, ...), not the router's (`REG/vllm-router`,
    the name the README's build recipe gives it): the router pod is no GPU workload."""
    if not isinstance(image, str) or not image:
        return False
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0]
    return last.startswith("vllm") and not last.startswith(D.ROUTER_PACKAGE)


# --- vLLM argv per shape -------------------------------------------------------------------------


@dataclass(frozen=True)
class VllmArgv:
    where: str  # e.g. "argv", "command", "containers[vllm].args"
    args: tuple[str, ...]  # after `vllm serve`: model positional first when present


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
    """A docker container's vLLM argv: its `command` list when the container is vLLM (image,
    label, `vllm serve` prefix or vLLM-only flags). A shell script in `entrypoints` is not read."""
    command = strings(get(props, "command"))
    name = get_known(props, "name")
    if isinstance(name, str) and name.startswith(ROUTER_PREFIX):
        return []  # the stack's router container (whatever its image is called)
    is_vllm = (
        image_is_vllm(get_known(props, "image"))
        or D.LABEL_MODEL in docker_labels(props)
        or _looks_vllm(command)
        or _strip_prefix(command) != command
    )
    return [VllmArgv("command", tuple(_strip_prefix(command)))] if command and is_vllm else []


def k8s_container_argvs(c: Mapping) -> list[VllmArgv]:
    """A Kubernetes container's vLLM argv from its `command`/`args` lists (a `sh -c` script is not read)."""
    name = c.get("name") or "?"
    command = strings(c.get("command"))
    args = strings(c.get("args"))
    full = command + args
    stripped = _strip_prefix(full)
    if stripped != full:
        return [VllmArgv(f"containers[{name}].args", tuple(stripped))]
    if args and not command and (image_is_vllm(c.get("image")) or _looks_vllm(args)):
        return [VllmArgv(f"containers[{name}].args", tuple(args))]
    if _looks_vllm(full) and not (command and posixpath.basename(command[0]) in ("sh", "bash", "dash")):
        return [VllmArgv(f"containers[{name}].args", tuple(full))]
    return []


def vllm_containers(resource_type: str, props: Mapping) -> list[tuple[Mapping, VllmArgv]]:
    """(container, argv) of the vLLM containers of a Kubernetes workload."""
    spec = pod_spec(resource_type, props)
    labels = get(props, "spec", "template", "metadata", "labels")
    if isinstance(labels, Mapping) and labels.get("app.kubernetes.io/component") == ROUTER_COMPONENT:
        return []  # the stack's router pods (whatever their image is called)
    out = []
    for c in containers(spec, init=False):
        argvs = k8s_container_argvs(c)
        if argvs:
            out.append((c, argvs[0]))
    return out


# --- the stack's components ------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One vLLM replica as its component registered it: the typed facts the vLLM rules judge."""

    model: str | None
    capacity: str | None
    argv: VllmArgv
    gpu: str | None
    address: Any  # host servers: the bind address; None on Kubernetes
    drain: Mapping | None  # spot replicas on hosts: {ssh, command, seconds}


def server(resource_type: str, props: Mapping) -> Server | None:
    """The replica a `*VllmServer` component describes, or None for any other resource."""
    if resource_type not in SERVER_COMPONENTS:
        return None
    # Judged fields are read with `get`: an unknown one (preview) raises CrossGuard's UnknownValueError.
    drain = get(props, "drain")
    return Server(
        model=get_known(props, "model"),
        capacity=capacity_class(get(props, "capacity")),
        argv=VllmArgv("argv", tuple(strings(get(props, "argv")))),
        gpu=get(props, "gpu"),
        address=get(props, "address") if resource_type in HOST_SERVER_COMPONENTS else None,
        drain=drain if isinstance(drain, Mapping) else None,
    )


def vllm_argvs(resource_type: str, props: Mapping) -> list[VllmArgv]:
    """The vLLM argv a server component registered (the vLLM rules judge components only)."""
    srv = server(resource_type, props)
    return [srv.argv] if srv is not None and srv.argv.args else []


def model_of(argv: Sequence[str]) -> str | None:
    from vllm_stack import flags

    from vllm_stack.render.weights import repo_of_path

    vals = flags.flag_values(argv, "--model")
    model = vals[-1] if vals else argv[0] if argv and not argv[0].startswith("-") else None
    if model is not None and model.startswith("/"):
        # the stack's pre-fetched directory `<weights>/<org>--<name>/<revision>` names its Hub repo
        return repo_of_path(model) or model
    return model


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
