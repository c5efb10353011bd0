"""alertmanager.yml: a pure function of the config and the receivers' secret values.

Routing: the root route takes every alert to the null receiver; one child route per
(receiver, severity) it subscribes to, `continue: true` so several receivers can take the same
alert. Grouping by alert name and model; critical alerts repeat sooner than warnings.
Inhibition: a backend that is down silences its own queue/KV/preemption alerts (same
`instance`), and a model with no healthy backend silences its per-backend down alerts (same
`model`). Secret values (URLs, keys, passwords) go into the document as given: the rendered file
is a secret (0600 on the monitoring host, a Kubernetes Secret), and the plan renders it with
`placeholder_secrets`. The YAML is `yaml.safe_dump` of a dict.
"""

from __future__ import annotations

from typing import Any, Mapping

import yaml

from .. import defaults as D
from ..config import StackConfig
from ..quoting import host_port
from . import alerts as A
from . import k8s_common as KC

#: Listen address on the monitoring host (SSH platform): loopback, beside Prometheus.
LOCAL_LISTEN = host_port(D.LOOPBACK, D.ALERTMANAGER_PORT)
#: Secret keys whose value is a URL (the rest are keys or passwords).
URL_SECRETS = frozenset({"alertWebhookUrl", "alertSlackUrl"})

#: A backend that is down: its per-instance saturation alerts are noise until it is back.
BACKEND_DOWN_INHIBITS = (A.QUEUE_DEPTH, A.KV_CACHE_PRESSURE, A.PREEMPTIONS)
#: A model without any healthy backend: its per-backend down alerts are one incident.
NO_BACKEND_INHIBITS = (A.BACKEND_DOWN,)


def deployed(cfg: StackConfig) -> bool:
    """The stack runs its own Alertmanager (not with an external one, nor beside the operator's)."""
    return cfg.monitoring.alertmanager.deployed and not cfg.monitoring.prometheus_operator


def service_host(cfg: StackConfig) -> str:
    return f"{KC.ALERTMANAGER}.{cfg.kubernetes.namespace}.svc"


def target(cfg: StackConfig) -> str | None:
    """`host:port` Prometheus sends alerts to (None: alerting is off)."""
    am = cfg.monitoring.alertmanager
    if am.external is not None:
        return am.external
    if not deployed(cfg):
        return None
    if cfg.platform == "kubernetes":
        return host_port(service_host(cfg), D.ALERTMANAGER_PORT)
    return LOCAL_LISTEN


def needed_secrets(cfg: StackConfig) -> list[str]:
    """Secret keys the deployed receivers read, in first-use order."""
    if not deployed(cfg):
        return []
    out: list[str] = []
    for r in cfg.monitoring.alertmanager.receivers:
        key = r.secret_key
        if key is not None and key not in out:
            out.append(key)
    return out


def placeholder_secrets(cfg: StackConfig, placeholder: str) -> dict[str, str]:
    """Stand-ins for the plan: a URL that can never resolve (RFC 2606 `.invalid`), or the placeholder."""
    return {k: f"https://{placeholder}.invalid/" if k in URL_SECRETS else placeholder for k in needed_secrets(cfg)}


def _matcher(label: str, values: tuple[str, ...]) -> str:
    return f'{label}="{values[0]}"' if len(values) == 1 else f'{label}=~"{"|".join(values)}"'


def _receiver(r: Any, secrets: Mapping[str, str]) -> dict[str, Any]:
    key = r.secret_key
    value = secrets[key] if key is not None else None
    common = {"send_resolved": r.send_resolved}
    if r.type == "webhook":
        return {"name": r.name, "webhook_configs": [{**common, "url": value}]}
    if r.type == "slack":
        return {"name": r.name, "slack_configs": [{**common, "api_url": value}]}
    if r.type == "pagerduty":
        return {"name": r.name, "pagerduty_configs": [{**common, "routing_key": value}]}
    email: dict[str, Any] = {**common, "to": r.to, "from": r.from_, "smarthost": r.smarthost}
    if r.username is not None:
        email["auth_username"] = r.username
        email["auth_password"] = value
    return {"name": r.name, "email_configs": [email]}


def alertmanager_config(cfg: StackConfig, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The alertmanager.yml document; `secrets` maps each `needed_secrets(cfg)` key to its value."""
    am = cfg.monitoring.alertmanager
    missing = [k for k in needed_secrets(cfg) if k not in secrets]
    if missing:
        raise ValueError(f"alertmanager: no value for secret(s) {', '.join(missing)}")
    routes: list[dict[str, Any]] = []
    for r in am.receivers:
        for sev in D.ALERTMANAGER_SEVERITIES:
            if sev not in r.severities:
                continue
            route: dict[str, Any] = {
                "receiver": r.name,
                "matchers": [_matcher("severity", (sev,))],
                "continue": True,
            }
            if sev == D.SEVERITY_CRITICAL:
                route["repeat_interval"] = am.critical_repeat_interval
            routes.append(route)
    root: dict[str, Any] = {
        "receiver": D.ALERTMANAGER_NULL_RECEIVER,
        "group_by": list(D.ALERTMANAGER_GROUP_BY),
        "group_wait": am.group_wait,
        "group_interval": am.group_interval,
        "repeat_interval": am.repeat_interval,
    }
    if routes:
        root["routes"] = routes
    return {
        "global": {"resolve_timeout": D.ALERTMANAGER_RESOLVE_TIMEOUT},
        "route": root,
        "inhibit_rules": [
            {
                "source_matchers": [_matcher("alertname", (A.BACKEND_DOWN,))],
                "target_matchers": [_matcher("alertname", BACKEND_DOWN_INHIBITS)],
                "equal": ["instance"],
            },
            {
                "source_matchers": [_matcher("alertname", (A.NO_HEALTHY_BACKEND,))],
                "target_matchers": [_matcher("alertname", NO_BACKEND_INHIBITS)],
                "equal": [D.SCRAPE_LABEL_MODEL],
            },
        ],
        "receivers": [{"name": D.ALERTMANAGER_NULL_RECEIVER}] + [_receiver(r, secrets) for r in am.receivers],
    }


def render_alertmanager_yml(cfg: StackConfig, secrets: Mapping[str, str]) -> str:
    """alertmanager.yml text (a secret when a receiver has one)."""
    return yaml.safe_dump(alertmanager_config(cfg, secrets), sort_keys=False, default_flow_style=False)


def command(config_path: str, storage_path: str, listen: str) -> list[str]:
    """The alertmanager container's arguments: HA gossip off (one instance; it would bind 0.0.0.0:9094)."""
    return [
        f"--config.file={config_path}",
        f"--storage.path={storage_path}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",
    ]
