"""Observing the front: the nginx exporter (stub_status) and the blackbox probe of its certificate.

What each signal measures, and why it comes from where it does:

* **Request rate and liveness of nginx**: nginx OSS exposes only `stub_status` (connections and
  one `requests` counter, no status codes). nginx-prometheus-exporter reads it from a loopback
  listener (`nginx.conf.j2`: `listen 127.0.0.1:<status port>`, `allow 127.0.0.1; deny all;`)
  and exports `nginx_up` and `nginx_http_requests_total`. The exporter runs beside nginx: a
  container on the front host (docker runtime, pinned `D.NGINX_EXPORTER_IMAGE`), a unit running
  Debian's `prometheus-nginx-exporter` (systemd runtime), a sidecar in each front pod (Kubernetes).
* **5xx ratio**: stub_status has no per-status counts, so the front cannot tell a 5xx from a 200
  without parsing its access log. The ratio the stack alerts on is vLLM's own: its API server
  counts every response in `http_requests_total{status="5xx"}` (prometheus-fastapi-instrumentator,
  statuses grouped), per replica, which Prometheus already scrapes with the model label. What it
  does NOT count: the 502/503/504 nginx answers itself when no backend takes the request; those
  are `VllmBackendDown` / `VllmNoHealthyBackend`, whose causes they are. (A log-based per-status
  counter at the front, e.g. mtail on the JSON access log, would close that gap.)
* **Certificate expiry**: blackbox_exporter probes the front's HTTPS `/health` the way a client
  does and exports `probe_ssl_earliest_cert_expiry` (the earliest notAfter of the chain served).
  It runs beside Prometheus (a container on the monitoring host, a sidecar in the Prometheus pod)
  on loopback; Prometheus scrapes it with the standard `/probe?target=` relabelling.

Pure: data in, argv lists / dicts / dumped YAML / unit text out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from .. import defaults as D
from ..quoting import host_port, http_url, url_host

if TYPE_CHECKING:
    from ..config import StackConfig

#: Where the exporter reads stub_status (same host / same pod).
SCRAPE_URI = http_url(D.LOOPBACK, D.NGINX_STATUS_PORT, D.NGINX_STATUS_PATH)
#: Where the blackbox exporter listens: loopback beside Prometheus (host network / same pod).
BLACKBOX_LISTEN = host_port(D.LOOPBACK, D.BLACKBOX_PORT)


def exporter_argv(listen: str, scrape_uri: str = SCRAPE_URI) -> list[str]:
    """nginx-prometheus-exporter flags (1.x reads `--flag=value`; Debian's 0.11, a Go `flag` program, too)."""
    return [f"--nginx.scrape-uri={scrape_uri}", f"--web.listen-address={listen}"]


def render_exporter_unit(unit: str, listen: str, scrape_uri: str = SCRAPE_URI) -> str:
    """`<unit>` on a systemd front host: Debian's exporter binary, our flags, sandboxed, no secret.

    Debian's own `prometheus-nginx-exporter.service` (on :9113 of every interface) is disabled by
    the install command (`host_commands.install_nginx_exporter`); this one binds where `listen` says.
    """
    from .systemd import HELPER_HARDENING, dynamic_user_unit, unit_escape

    return dynamic_user_unit(
        comment=f"{D.NGINX_EXPORTER_DEBIAN_PACKAGE} (Debian package); no secret in this file.",
        unit=[
            ("Description", unit_escape("nginx Prometheus exporter for the vllm-stack front (stub_status)")),
            ("Wants", "nginx.service"),
            ("After", "network-online.target nginx.service"),
        ],
        argv=[D.NGINX_EXPORTER_DEBIAN_BIN, *exporter_argv(listen, scrape_uri)],
        identifier=unit.removesuffix(".service"),
        hardening=list(HELPER_HARDENING),
    )


def blackbox_config(cfg: StackConfig) -> dict[str, Any]:
    """blackbox.yml: one HTTP module for the front's HTTPS /health.

    A self-signed front certificate is verified by nobody (insecure_skip_verify), but its
    `probe_ssl_earliest_cert_expiry` is still exported: the expiry is what this probe is for.
    A provided certificate is verified against the system CAs, so a broken chain fails the probe.
    """
    http: dict[str, Any] = {
        "method": "GET",
        "valid_status_codes": [200],
        "fail_if_not_ssl": True,
        "preferred_ip_protocol": "ip4",
    }
    if cfg.front.tls == "selfSigned":
        http["tls_config"] = {"insecure_skip_verify": True}
    else:
        http["tls_config"] = {"server_name": cfg.front.domain}
    return {"modules": {D.BLACKBOX_MODULE: {"prober": "http", "timeout": f"{D.BLACKBOX_TIMEOUT_SEC}s", "http": http}}}


def render_blackbox_yml(cfg: StackConfig) -> str:
    return yaml.safe_dump(blackbox_config(cfg), sort_keys=False, default_flow_style=False)


def blackbox_argv(config_file: str, listen: str = BLACKBOX_LISTEN) -> list[str]:
    return [f"--config.file={config_file}", f"--web.listen-address={listen}"]


def probe_target(address: str, port: int = D.HTTPS_PORT) -> str:
    """The URL the blackbox exporter probes: the front's HTTPS /health at `address` (and `port`)."""
    where = url_host(address) if port == D.HTTPS_PORT else host_port(address, port)
    return f"https://{where}{D.HEALTH_PATH}"


def probe_scrape_config(target: str, blackbox: str = BLACKBOX_LISTEN) -> dict[str, Any]:
    """The probe job (the blackbox exporter's documented relabelling): `target` becomes the
    `target` URL parameter and the `instance` label, and the scrape goes to the exporter."""
    return {
        "job_name": D.JOB_BLACKBOX,
        "metrics_path": D.BLACKBOX_PROBE_PATH,
        "params": {"module": [D.BLACKBOX_MODULE]},
        "static_configs": [{"targets": [target]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": blackbox},
        ],
    }


def probes_front(cfg: StackConfig) -> bool:
    """A certificate to watch: the front serves TLS."""
    return cfg.front.tls != "none"


__all__ = [
    "BLACKBOX_LISTEN",
    "SCRAPE_URI",
    "blackbox_argv",
    "blackbox_config",
    "exporter_argv",
    "probe_scrape_config",
    "probe_target",
    "probes_front",
    "render_blackbox_yml",
    "render_exporter_unit",
]
