"""NginxFront: the only public entry point — TLS, API-key gate, per-model routes, least_conn.

docker: nginx (Debian package + systemd) on the front host, files pushed over SSH;
kubernetes: nginx Deployment + Service, conf in a ConfigMap, TLS and key list in Secrets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.endpoints import Backend
from vllm_stack.render import drain as drain_render
from vllm_stack.render import k8s as k8s_render
from vllm_stack.render import nginx as nginx_render

from . import artifacts, k8s_objects
from .remote_file import content_hash, remote_file
from vllm_stack.render.host_commands import DRAIN_SCRIPT_PATH
from .stack_inputs import StackSecrets

PLACEHOLDER = "secret-placeholder"  # token-safe stand-in in recorded artifacts
CERT_VALIDITY_HOURS = 24 * 90
KEYS_SECRET = "vllm-front-api-keys"
UPSTREAM_AUTH_PATH = "/etc/nginx/vllm/upstream-auth.conf"
TLS_SECRET = "vllm-front-tls"


@dataclass(frozen=True)
class NginxFrontArgs:
    cfg: StackConfig
    backends: tuple[Backend, ...]
    secrets: StackSecrets
    connection: remote.ConnectionArgs | None = None   # docker: the front host
    depends_on: tuple[pulumi.Resource, ...] = ()


def host_path(paths, rel: str) -> str:
    """Where a file `render_front` returned lives on the front host."""
    if rel == "nginx.conf":
        return paths.conf
    if rel.startswith("upstreams/"):
        return f"{paths.upstream_dir}/{rel.split('/', 1)[1]}"
    return f"{paths.prefix}/{rel}"


def api_keys(secrets: StackSecrets) -> pulumi.Output[list[str]]:
    extra = secrets.extra_api_keys if secrets.extra_api_keys is not None else ""
    return pulumi.Output.all(secrets.api_key, extra).apply(
        lambda v: [v[0]] + [k.strip() for k in (v[1] or "").split(",") if k.strip()])


class NginxFront(pulumi.ComponentResource):
    url: str
    routes: dict[str, str]

    def __init__(self, name: str, args: NginxFrontArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{D.COMPONENT_PREFIX}:NginxFront", name, None, opts)
        cfg = args.cfg
        scheme = "http" if cfg.front.tls == "none" else "https"
        self.url = f"{scheme}://{cfg.front.domain}"
        self.routes = {m.name: f"{self.url}/{m.name}/v1" for m in cfg.models}
        self.routes["default"] = f"{self.url}/v1"
        # The front authenticates clients (several keys); vLLM only ever sees its own key,
        # injected upstream from a 0600 include (defence in depth: vLLM still checks it).
        if cfg.platform == "kubernetes":
            paths = self.paths = k8s_render.front_paths(upstream_auth=True)
            files = k8s_render.render_front_files(cfg, upstream_auth=True)
        else:
            paths = self.paths = dataclasses.replace(nginx_render.NginxPaths(), upstream_auth=UPSTREAM_AUTH_PATH)
            files = nginx_render.render_front(cfg, list(args.backends), paths=paths)
        for rel, text in files.items():
            artifacts.record(f"front/{rel}", text)
        artifacts.record("front/api-keys.map", nginx_render.render_api_keys_map([PLACEHOLDER]),
                         D.SECRET_FILE_MODE, secret=True)
        artifacts.record("front/upstream-auth.conf", nginx_render.render_upstream_auth(PLACEHOLDER),
                         D.SECRET_FILE_MODE, secret=True)
        keys_map = api_keys(args.secrets).apply(nginx_render.render_api_keys_map)
        upstream_auth = args.secrets.api_key.apply(nginx_render.render_upstream_auth)
        cert, key = self._tls(name, args)
        if cfg.platform == "kubernetes":
            self._kubernetes(args, files, keys_map, upstream_auth, cert, key)
        else:
            self._docker(name, args, files, keys_map, upstream_auth, cert, key)
        self.register_outputs({"url": self.url, "routes": self.routes})

    def _tls(self, name: str, args: NginxFrontArgs):
        cfg = args.cfg
        if cfg.front.tls == "none":
            return None, None
        if cfg.front.tls == "provided":
            return args.secrets.tls_certificate, args.secrets.tls_private_key
        key = tls.PrivateKey(f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256",
                             opts=pulumi.ResourceOptions(parent=self))
        cert = tls.SelfSignedCert(
            f"{name}-tls-cert", private_key_pem=key.private_key_pem, validity_period_hours=CERT_VALIDITY_HOURS,
            dns_names=[cfg.front.domain], subject=tls.SelfSignedCertSubjectArgs(common_name=cfg.front.domain),
            allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            opts=pulumi.ResourceOptions(parent=self))
        return cert.cert_pem, key.private_key_pem

    def _docker(self, name, args: NginxFrontArgs, files, keys_map, upstream_auth, cert, key) -> None:
        conn = args.connection
        paths = self.paths
        assert conn is not None and paths.upstream_auth is not None   # docker: the front host; set in __init__
        install = remote.Command(
            f"{name}-install", connection=conn,
            create="command -v nginx >/dev/null || (sudo apt-get update && sudo apt-get install -y nginx)",
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        pushed = [remote_file(f"{name}-{rel.replace('/', '-').replace('.', '-')}", conn,
                              host_path(paths, rel), text, parent=self, depends_on=[install])
                  for rel, text in files.items()]
        pushed.append(remote_file(f"{name}-api-keys", conn, paths.api_keys, keys_map, mode=D.SECRET_FILE_MODE,
                                  secret=True, parent=self, depends_on=[install]))
        pushed.append(remote_file(f"{name}-upstream-auth", conn, paths.upstream_auth, upstream_auth,
                                  mode=D.SECRET_FILE_MODE, secret=True, parent=self, depends_on=[install]))
        if cert is not None:
            pushed.append(remote_file(f"{name}-tls-cert", conn, paths.cert, cert, parent=self, depends_on=[install]))
            pushed.append(remote_file(f"{name}-tls-key", conn, paths.key, key, mode=D.SECRET_FILE_MODE, secret=True,
                                      parent=self, depends_on=[install]))
        drain = drain_render.render_drain_script(paths)
        artifacts.record("front/vllm-drain", drain, 0o755)
        pushed.append(remote_file(f"{name}-drain-script", conn, DRAIN_SCRIPT_PATH, drain, mode=0o755,
                                  parent=self, depends_on=[install]))
        reload_cmd = "sudo nginx -t && sudo systemctl enable nginx && sudo systemctl reload-or-restart nginx"
        remote.Command(f"{name}-reload", connection=conn, create=reload_cmd, update=reload_cmd,
                       triggers=[content_hash("".join(files.values()) + drain)],
                       opts=pulumi.ResourceOptions(parent=self, depends_on=pushed))

    def _kubernetes(self, args: NginxFrontArgs, files, keys_map, upstream_auth, cert, key) -> None:
        cfg = args.cfg
        keys_obj = k8s_render.secret_object(cfg, KEYS_SECRET, {k8s_render.API_KEYS_FILE: PLACEHOLDER,
                                                               k8s_render.UPSTREAM_AUTH_FILE: PLACEHOLDER})
        artifacts.record_k8s(keys_obj)
        secrets = [k8s_objects.create(keys_obj, self, overrides={"stringData": {
            k8s_render.API_KEYS_FILE: keys_map, k8s_render.UPSTREAM_AUTH_FILE: upstream_auth}})]
        if cert is not None:
            tls_obj = k8s_render.tls_secret_object(cfg, TLS_SECRET, PLACEHOLDER, PLACEHOLDER)
            artifacts.record_k8s(tls_obj)
            secrets.append(k8s_objects.create(tls_obj, self, overrides={
                "stringData": {"tls.crt": cert, "tls.key": pulumi.Output.secret(key)}}))
        for obj in k8s_render.front_objects(cfg, files, keys_secret=KEYS_SECRET,
                                            tls_secret=TLS_SECRET if cert is not None else None):
            artifacts.record_k8s(obj)
            k8s_objects.create(obj, self, depends_on=secrets + list(args.depends_on))
