"""Typed config and secrets for the program, read from Pulumi's config.

The same loader as the offline plan (`vllm_stack.loader`) validates the values; secrets
are read only with `require_secret`/`get_secret`, and generated with pulumi-random
when absent, so they stay Pulumi secrets end to end.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi.runtime import config as runtime_config

from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.loader import parse_config, split_namespaced


def load_config() -> StackConfig:
    raw = runtime_config.CONFIG.get()
    values: dict = {}
    for key, value in raw.items():
        try:
            values[key] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
        except json.JSONDecodeError:
            values[key] = value
    # The CLI sends top-level values as strings and objects as JSON: every non-string key of the
    # config lives inside an object, so the strict models see JSON's own numbers and booleans.
    plain, secrets = split_namespaced(values, "pulumi config",
                                      is_secret=lambda k, v: runtime_config.is_config_secret(f"{D.PROJECT}:{k}"))
    return parse_config(plain, secrets, "pulumi config")


@dataclass(frozen=True)
class StackSecrets:
    api_key: pulumi.Output[str]
    extra_api_keys: pulumi.Output[str] | None
    hf_token: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str]
    ssh_private_key: pulumi.Output[str] | None
    tls_certificate: pulumi.Output[str] | None
    tls_private_key: pulumi.Output[str] | None


def load_secrets(cfg: StackConfig) -> StackSecrets:
    c = pulumi.Config(D.PROJECT)

    def opt(key: str):
        return c.require_secret(key) if key in cfg.secrets else None

    api_key = opt("apiKey") or random.RandomPassword(
        "api-key", length=48, special=False).result
    grafana = opt("grafanaAdminPassword") or random.RandomPassword(
        "grafana-admin-password", length=32, special=False).result
    return StackSecrets(api_key=pulumi.Output.secret(api_key), extra_api_keys=opt("apiKeys"), hf_token=opt("hfToken"),
                        grafana_admin_password=pulumi.Output.secret(grafana), ssh_private_key=opt("sshPrivateKey"),
                        tls_certificate=opt("tlsCertificate"), tls_private_key=opt("tlsPrivateKey"))
