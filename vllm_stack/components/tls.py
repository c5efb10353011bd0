"""The front's certificate and client keys, shared by both fronts (the TLS mode is data, not a platform)."""

from typing import NotRequired, TypedDict

import pulumi
import pulumi_tls as tls

from vllm_stack.deployment import CERT_VALIDITY_HOURS
from vllm_stack.render.nginx import render_api_keys_map, render_upstream_auth


class TlsArgs(TypedDict):
    domain: str
    tls: str
    """none | selfSigned | provided"""
    tls_certificate: NotRequired[pulumi.Input[str]]
    """PEM chain when `tls` is provided."""
    tls_private_key: NotRequired[pulumi.Input[str]]
    """PEM key when `tls` is provided (secret)."""


def front_certificate(
    parent: pulumi.Resource, name: str, args: TlsArgs
) -> tuple[pulumi.Input[str], pulumi.Input[str]] | None:
    """(certificate, key) for the front: none, the provided pair, or a self-signed ECDSA P-256 pair."""
    if args["tls"] == "none":
        return None
    if args["tls"] == "provided":
        return args["tls_certificate"], pulumi.Output.secret(args["tls_private_key"])
    key = tls.PrivateKey(
        f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent)
    )
    cert = tls.SelfSignedCert(
        f"{name}-tls-cert",
        private_key_pem=key.private_key_pem,
        validity_period_hours=CERT_VALIDITY_HOURS,
        dns_names=[args["domain"]],
        subject=tls.SelfSignedCertSubjectArgs(common_name=args["domain"]),
        allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return cert.cert_pem, key.private_key_pem


def api_key_list(api_key: pulumi.Input[str], extra: pulumi.Input[str] | None) -> pulumi.Output[list[str]]:
    """The front's client keys: the backend key first, then `apiKeys` (comma separated)."""
    return pulumi.Output.all(api_key, extra if extra is not None else "").apply(
        lambda v: [v[0]] + [k.strip() for k in (v[1] or "").split(",") if k.strip()]
    )


def front_key_files(
    api_key: pulumi.Input[str], extra: pulumi.Input[str] | None
) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """The front's key map (every client key) and its upstream include (the key vLLM checks)."""
    keys_map = api_key_list(api_key, extra).apply(render_api_keys_map)
    return keys_map, pulumi.Output.from_input(api_key).apply(render_upstream_auth)
