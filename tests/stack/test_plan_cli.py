"""`python -m vllm_stack plan`: exit codes, JSON document, artifacts, diff, speed, no secrets."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import ROOT, SCAN_SECRETS


def plan(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vllm_stack", "plan", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def prod_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "prod"
    t0 = time.monotonic()
    proc = plan("prod", "--json", "--out", str(out))
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), out, elapsed


def test_prod_plan_is_fast(prod_json):
    assert prod_json[2] < 10.0


def test_json_document_shape(prod_json):
    doc = prod_json[0]
    assert doc["stack"] == "prod" and doc["environment"] == "prod" and doc["platform"] == "kubernetes"
    assert doc["generator"] == "vllm-stack plan" and doc["formatVersion"] == 1  # the --out marker
    assert json.loads((prod_json[1] / "plan.json").read_text()) == doc
    types = {r["type"] for r in doc["resources"]}
    assert {
        "vllmstack:index:KubernetesGpuNode",
        "vllmstack:index:KubernetesSpotOnDemandPool",
        "vllmstack:index:KubernetesVllmServer",
        "vllmstack:index:KubernetesNginxFront",
        "vllmstack:index:KubernetesMonitoringStack",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
    } <= types
    assert doc["outputs"]["apiKey"] == "[secret]"
    assert doc["capacity"]["total"]["blendMonthly"] == round((2.50 + 1.03 + 2 * 0.72) * 720, 2)
    names = [w.split("`")[1] for w in doc["warnings"] if w.startswith("secret `")]
    assert names == ["hfToken", "tlsCertificate", "tlsPrivateKey", "alertPagerdutyKey", "alertSlackUrl"]
    for r in doc["resources"]:
        for key in r["secretInputs"]:
            assert r["inputs"][key] == "[secret]"


def test_artifacts_written_with_modes(prod_json):
    doc, out, _ = prod_json
    assert (out / "plan.json").exists()
    assert sorted(doc["artifacts"]) == sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "plan.json"
    )
    secret = out / "k8s/secret-vllm-model-secrets.yaml"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret-placeholder" in secret.read_text()
    assert stat.S_IMODE((out / "front/nginx.conf").stat().st_mode) == 0o644


def test_dev_plan_human_output_and_secrets_never_printed(tmp_path):
    """Real secret values in the stack file's place: the plan must not print or write them."""
    body = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    # a `secure:` value the plan cannot decrypt: the ciphertext itself must not appear either
    body["config"]["vllm-stack:apiKey"] = {"secure": "v1:" + SCAN_SECRETS["apiKey"]}
    p = tmp_path / "Pulumi.scan.yaml"
    p.write_text(yaml.safe_dump(body))
    out = tmp_path / "out"
    proc = plan(str(p), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert "SpotOnDemandPool" in text and "Monthly cost" in text and "518.40" in text
    assert "secret `sshPrivateKey` is not set" in text
    assert SCAN_SECRETS["apiKey"] not in text
    for f in out.rglob("*"):
        if f.is_file():
            assert SCAN_SECRETS["apiKey"] not in f.read_text()


def test_rewrite_is_atomic_and_replaces_old_output(tmp_path):
    """A previous plan's output is swapped for the new one; a file the plan did not write blocks it."""
    out = tmp_path / "o"
    assert plan("dev", "--out", str(out)).returncode == 0
    (out / "front/nginx.conf").write_text("edited by hand")  # an artifact: the plan's own file
    assert plan("dev", "--out", str(out)).returncode == 0
    assert (out / "front/nginx.conf").read_text() != "edited by hand"
    (out / "stale.txt").write_text("old")  # not the plan's: refuse, touch nothing
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    proc = plan("dev", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (
            f"error: --out: {out} holds 1 file(s) the previous plan did not write "
            "(stale.txt); move them away or choose another directory"
        )
    ]
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no temp or aside directory left


def test_diff_dev_to_prod_shows_cost_delta(tmp_path):
    proc = plan("prod", "--json", "--diff", "dev")
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)["diff"]
    assert diff["from"] == "dev" and diff["to"] == "prod"
    assert diff["monthlyCost"]["delta"] == round((2.50 + 1.03 + 2 * 0.72) * 720 - 0.72 * 720, 2)
    assert "docker:index/container:Container::llama-8b-od-0" in diff["removed"]
    assert "kubernetes:apps/v1:Deployment::deployment-llama-70b-on-demand" in diff["added"]


def test_diff_between_two_prod_variants_from_previous_json(tmp_path, prod_json):
    prev = tmp_path / "prev.json"
    prev.write_text(json.dumps(prod_json[0]))
    body = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    body["config"]["vllm-stack:models"][0]["pool"]["spot"] = 2  # one more warm spot H100
    variant = tmp_path / "Pulumi.prod2.yaml"
    variant.write_text(yaml.safe_dump(body))
    proc = plan(str(variant), "--diff", str(prev))
    assert proc.returncode == 0, proc.stderr
    assert "delta $+741.60" in proc.stdout  # 1.03 x 720
    assert "~ kubernetes:apps/v1:Deployment::deployment-llama-70b-spot" in proc.stdout
