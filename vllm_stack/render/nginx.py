"""The nginx TLS front: a pure function from (config, backends, paths) to file contents.

`render_front` returns `nginx.conf` (complete, top-level) and one `upstreams/<model>.conf`
per model, included by nginx.conf; the drain procedure (`drain.py`) edits only those.
Every value reaches nginx syntax through a jinja2 template after validation here: names,
addresses and paths must be safe tokens (no quotes, `;`, braces, `$`, whitespace), so a
config value can never add a directive or a variable to the rendered file.

Clients authenticate at the front with `Authorization: Bearer <key>`; the keys live in a
0600 map include (`render_api_keys_map`), never in nginx.conf. Optionally the front
presents one backend key to vLLM (`render_upstream_auth`, `NginxPaths.upstream_auth`), so
several client keys work while each vLLM keeps a single `VLLM_API_KEY`; without it the
client's Authorization header is passed through unchanged (vLLM checks it a second time).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import jinja2

from .. import defaults as D
from .. import quoting
from ..grammar import NAME_RE, check_domain, check_nginx_size, is_posix_user
from ..config import FrontSpec, StackConfig
from ..endpoints import Backend

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: Route and upstream names: the config's NAME_RE, re-checked because Backend is a plain dataclass.
_NAME = re.compile(NAME_RE)
#: Model names that would shadow a front route (`/v1/...`, `/health`).
RESERVED_NAMES = D.FRONT_RESERVED_ROUTES
_PATH = re.compile(r"^/[A-Za-z0-9._/+@:-]*$")
#: RFC 6750 b64token: what a bearer key may contain (nothing nginx or a regex would interpret).
_KEY = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")


class FrontRenderError(ValueError):
    """An input the front cannot render safely (bad name, address, path or key)."""


@dataclass(frozen=True)
class NginxPaths:
    """Where the rendered files live on the front host; defaults are Debian's nginx layout.

    Tests use `NginxPaths.under(tmp)` so pid, logs, temp files and includes stay in a tmp dir.
    """

    prefix: str = "/etc/nginx"  # `nginx -p` (directory of nginx.conf)
    conf: str = "/etc/nginx/nginx.conf"
    pid: str = "/run/nginx.pid"
    error_log: str = "/var/log/nginx/error.log"
    access_log: str = "/var/log/nginx/access.log"
    temp_dir: str = "/var/lib/nginx"  # body/proxy/fastcgi/uwsgi/scgi temp dirs inside
    cert: str = "/etc/nginx/vllm/tls/fullchain.pem"
    key: str = "/etc/nginx/vllm/tls/privkey.pem"
    api_keys: str = "/etc/nginx/vllm/api-keys.map"  # render_api_keys_map(), 0600
    upstream_dir: str = "/etc/nginx/vllm/upstreams"  # <model>.conf, edited by the drain script
    upstream_auth: str | None = None  # render_upstream_auth(), 0600; None: pass the client's key

    @classmethod
    def under(cls, root: str | Path, *, upstream_auth: bool = False) -> "NginxPaths":
        """Every path below `root` (absolute): the layout tests and non-root installs use."""
        r = str(Path(root).resolve())
        return cls(
            prefix=r,
            conf=f"{r}/nginx.conf",
            pid=f"{r}/nginx.pid",
            error_log=f"{r}/logs/error.log",
            access_log=f"{r}/logs/access.log",
            temp_dir=f"{r}/temp",
            cert=f"{r}/tls/fullchain.pem",
            key=f"{r}/tls/privkey.pem",
            api_keys=f"{r}/api-keys.map",
            upstream_dir=f"{r}/upstreams",
            upstream_auth=f"{r}/upstream-auth.conf" if upstream_auth else None,
        )

    def upstream_file(self, model: str) -> str:
        return f"{self.upstream_dir}/{model}.conf"


@dataclass(frozen=True)
class FrontListen:
    """Listen sockets: `bind` "" means all addresses; tests use 127.0.0.1 and high ports."""

    bind: str = ""
    http_port: int = D.HTTP_PORT
    https_port: int = D.HTTPS_PORT
    #: stub_status listener, always on 127.0.0.1 (the exporter runs on the same host / in the same pod)
    status_port: int = D.NGINX_STATUS_PORT


# --------------------------------------------------------------------------- validation


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FrontRenderError(f"{what} {name!r} is not a safe name (lowercase letters, digits, '-'; 1-40 characters)")
    if name in RESERVED_NAMES:
        raise FrontRenderError(
            f"{what} {name!r} is reserved by the front's own routes ({', '.join(sorted(RESERVED_NAMES))})"
        )
    return name


def _check_domain(domain: str) -> str:
    if domain == "_":
        return domain
    try:
        return check_domain(domain)
    except ValueError as exc:
        raise FrontRenderError(f"front.domain {domain!r} {exc}") from None


def _server_address(address: str) -> str:
    """`address` as it goes before `:port` in an upstream `server` line."""
    try:
        return quoting.url_host(address)
    except quoting.QuotingError:
        raise FrontRenderError(f"backend address {address!r} is neither an IP address nor a host name") from None


def _check_port(port: int, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise FrontRenderError(f"{what} {port!r} is not a TCP port")
    return port


def _check_path(path: str, what: str) -> str:
    if not isinstance(path, str) or not _PATH.fullmatch(path) or "/../" in f"{path}/" or "//" in path:
        raise FrontRenderError(f"{what} {path!r} must be an absolute path of letters, digits and ._/+@:-")
    return path


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise FrontRenderError(
            "an API key contains characters outside the bearer-token alphabet (letters, digits, -._~+/ and trailing =)"
        )
    if len(key) < D.API_KEY_MIN_LEN:
        raise FrontRenderError(f"an API key is shorter than {D.API_KEY_MIN_LEN} characters")
    return key


def _listen(bind: str, port: int) -> str:
    _check_port(port, "listen port")
    if not bind:
        return str(port)
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        raise FrontRenderError(f"listen address {bind!r} is not an IP address") from None
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"


def _rate(rps: float) -> str:
    """nginx accepts whole requests per second or per minute."""
    if rps <= 0:
        raise FrontRenderError(f"front.rateLimitRps {rps!r} must be positive")
    if float(rps).is_integer():
        return f"{int(rps)}r/s"
    return f"{max(1, round(rps * 60))}r/m"


# --------------------------------------------------------------------------- templates


def _env() -> jinja2.Environment:
    """Templates quote every config-derived argument with the `n` filter (`quoting.nginx`)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = quoting.nginx
    return env


def _render(template: str, **ctx: object) -> str:
    return _env().get_template(template).render(D=D, **ctx)


def upstream_name(model: str) -> str:
    return f"vllm_{_check_name(model, 'model name')}"


def server_line(b: Backend) -> str:
    """One upstream `server` line in the canonical form the drain script edits."""
    line = (
        f"server {_server_address(b.address)}:{_check_port(b.port, 'backend port')} "
        f"max_fails={D.UPSTREAM_MAX_FAILS} fail_timeout={D.UPSTREAM_FAIL_TIMEOUT_SEC}s"
    )
    if b.state == "backup":
        line += " backup"
    elif b.state == "down":
        line += " down"
    elif b.state != "up":
        raise FrontRenderError(f"backend {b.hostport} has unknown state {b.state!r} (up, down, backup)")
    return line + ";"


def render_upstream(model: str, backends: Sequence[Backend]) -> str:
    """`upstreams/<model>.conf`: one `upstream vllm_<model>` block."""
    if not backends:
        raise FrontRenderError(f"model {model!r} has no backend: nginx refuses an empty upstream")
    seen: set[str] = set()
    servers = []
    for b in backends:
        line = server_line(b)
        hp = line.split()[1]
        if hp in seen:
            raise FrontRenderError(f"backend {hp} is listed twice for model {model!r}")
        seen.add(hp)
        capacity = re.sub(r"[^A-Za-z0-9-]", "", str(b.capacity)) or "unknown"
        servers.append((capacity, line))
    if all(b.state == "backup" for b in backends):
        raise FrontRenderError(
            f"model {model!r} has only backup backends: nginx needs a primary server (mark it `down` to take it out)"
        )
    return _render("nginx_upstream.conf.j2", name=upstream_name(model), model=model, servers=servers)


def render_api_keys_map(keys: Sequence[str]) -> str:
    """Body of the `map $http_authorization $vllm_key_ok` include (deploy it 0600).

    nginx compares plain map strings case-insensitively, which would accept `ABC...` for
    `abc...`: each key becomes an anchored, case-sensitive regex (`~`) of its exact header.
    """
    keys = list(keys)
    if not keys:
        raise FrontRenderError("the front needs at least one API key")
    for k in keys:
        _check_key(k)
    uniq = sorted(set(keys))
    return _render("nginx_api_keys.map.j2", patterns=[re.sub(r"([.+])", r"\\\1", k) for k in uniq])


def render_upstream_auth(backend_key: str) -> str:
    """Include that replaces the client's Authorization with the backend's key (deploy it 0600)."""
    return _render("nginx_upstream_auth.conf.j2", key=_check_key(backend_key))


def render_front(
    cfg: StackConfig,
    backends: Sequence[Backend],
    *,
    paths: NginxPaths = NginxPaths(),
    listen: FrontListen = FrontListen(),
    user: str | None = D.NGINX_USER,
) -> dict[str, str]:
    """Relative file name → content: `nginx.conf` and `upstreams/<model>.conf` per model.

    `paths` says where those files (and pid, logs, temp, cert, key, key map) live on the
    front host: nginx.conf includes the upstream files by absolute path, so the caller
    writes `upstreams/<model>.conf` to `paths.upstream_file(model)` and nginx.conf to
    `paths.conf`. `user` None omits the `user` directive (tests running nginx as root).
    """
    for f in fields(paths):
        v = getattr(paths, f.name)
        if v is not None:
            _check_path(v, f"paths.{f.name}")
    if user is not None and not is_posix_user(user):
        raise FrontRenderError(f"nginx user {user!r} is not a valid user name")
    return render_front_for(
        cfg.front,
        [m.name for m in cfg.models],
        cfg.default_model.name,
        backends,
        paths=paths,
        listen=listen,
        user=user,
        hsts=cfg.environment == "prod",
    )


def render_front_for(
    front: FrontSpec,
    models: Sequence[str],
    default_model: str,
    backends: Sequence[Backend],
    *,
    paths: NginxPaths = NginxPaths(),
    listen: FrontListen = FrontListen(),
    user: str | None = D.NGINX_USER,
    hsts: bool = False,
) -> dict[str, str]:
    """`render_front` without a stack config: the front's settings, the served model names (routes)
    and the one `/v1` routes to. `hsts` (prod) sends Strict-Transport-Security on the TLS server."""
    domain = _check_domain(front.domain)
    try:
        check_nginx_size(front.client_max_body_size)
    except ValueError:
        raise FrontRenderError(f"front.clientMaxBodySize {front.client_max_body_size!r} is not an nginx size") from None
    for m in models:
        _check_name(m, "model name")
    by_model: dict[str, list[Backend]] = {m: [] for m in models}
    for b in backends:
        if b.model not in by_model:
            raise FrontRenderError(
                f"backend {b.hostport} serves {b.model!r}, which is not a configured model ({', '.join(models)})"
            )
        by_model[b.model].append(b)
    files: dict[str, str] = {}
    for m in models:
        files[f"upstreams/{m}.conf"] = render_upstream(m, by_model[m])
    tls = front.tls != "none"
    redirect_port = "" if listen.https_port == D.HTTPS_PORT else f":{listen.https_port}"
    files["nginx.conf"] = _render(
        "nginx.conf.j2",
        paths=paths,
        user=user,
        tls=tls,
        domain=domain,
        http_listen=_listen(listen.bind, listen.http_port),
        https_listen=_listen(listen.bind, listen.https_port),
        status_listen=_listen(D.LOOPBACK, listen.status_port),
        redirect_port=redirect_port,
        models=[(m, upstream_name(m)) for m in models],
        upstream_files=[paths.upstream_file(m) for m in models],
        default_upstream=upstream_name(default_model),
        default_model=default_model,
        tls_protocols=" ".join(D.TLS_PROTOCOLS),
        rate=_rate(front.rate_limit_rps),
        burst=int(front.rate_limit_burst),
        body_size=front.client_max_body_size,
        read_timeout=int(front.read_timeout_seconds),
        hsts=D.HSTS_HEADER if hsts and tls else None,
    )
    return dict(sorted(files.items()))


__all__ = [
    "FrontListen",
    "FrontRenderError",
    "NginxPaths",
    "RESERVED_NAMES",
    "TEMPLATES_DIR",
    "render_api_keys_map",
    "render_front",
    "render_front_for",
    "render_upstream",
    "render_upstream_auth",
    "server_line",
    "upstream_name",
]
