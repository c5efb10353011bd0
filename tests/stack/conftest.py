from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCAN_SECRETS = {
    "apiKey": "sk-SCANKEY-7f3a9c1e5b2d4f60a8c7e9d1",
    "hfToken": "hf_SCANTOKEN4b8e2a6c9d1f3e5a7b9c0d2e4f6",
    "grafanaAdminPassword": "GRAFANA-SCAN-PW-91d7c3",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nSCANSSHKEY0123456789\n-----END OPENSSH PRIVATE KEY-----\n",
    "tlsCertificate": "-----BEGIN CERTIFICATE-----\nSCANCERT\n-----END CERTIFICATE-----\n",
    "tlsPrivateKey": "-----BEGIN PRIVATE KEY-----\nSCANTLSKEY5566\n-----END PRIVATE KEY-----\n",
    "alertWebhookUrl": "https://hooks.example.com/SCANHOOK-5e7a1c",
    "alertSlackUrl": "https://hooks.slack.com/services/SCANSLACK-9b2d",
    "alertPagerdutyKey": "SCANPAGERDUTY0c4f8e2a",
}


@lru_cache(maxsize=None)
def dump(stack_file: str, with_secrets: bool = True) -> dict:
    secrets = dict(SCAN_SECRETS) if with_secrets else {}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.stack.program_dump", stack_file, json.dumps(secrets)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def dev() -> dict:
    return dump(str(ROOT / "Pulumi.dev.yaml"))


@pytest.fixture(scope="session")
def prod() -> dict:
    return dump(str(ROOT / "Pulumi.prod.yaml"))


def by_type(d: dict, typ: str) -> list[dict]:
    return [r for r in d["resources"] if r["type"] == typ]


def one(d: dict, typ: str, name: str) -> dict:
    found = [r for r in d["resources"] if r["type"] == typ and r["name"] == name]
    assert len(found) == 1, (typ, name, [r["name"] for r in by_type(d, typ)])
    return found[0]


def unwrap(v):
    return v["__secret__"] if isinstance(v, dict) and set(v) == {"__secret__"} else v
