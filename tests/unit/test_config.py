"""Config contract: every bad input is one line naming the key, the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vllm_stack.loader import ConfigError, load_stack_file, parse_config

ROOT = Path(__file__).resolve().parents[2]
BASE_MODEL = {"name": "m", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}


def cfg(**model):
    return {"environment": "dev", "platform": "kubernetes", "models": [{**BASE_MODEL, **model}]}


def error_of(raw, secrets=()) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, secrets)
    return exc.value


@pytest.mark.parametrize(
    "model, path, fragments",
    [
        ({"gpu": "H1000"}, "models[0].gpu", ['"H1000"', "L40S", "H100-SXM5-80GB"]),
        ({"model": "acme/unknown-13b"}, "models[0].model", ["not in the model catalog", "architecture"]),
        ({"gpuMemoryUtilization": 1.2}, "models[0].gpuMemoryUtilization", ["1.2", "less than or equal to 1"]),
        ({"gpuMemoryUtilization": 0}, "models[0].gpuMemoryUtilization", ["0", "greater than 0"]),
        ({"pool": {"onDemand": -1}}, "models[0].pool.onDemand", ["-1", "greater than or equal to 0"]),
        ({"pool": {"onDemand": 0, "spot": 0}}, "models[0].pool", ["0 replicas"]),
        ({"maxModelLen": 200000}, "models[0].maxModelLen", ["200000", "131072"]),
        ({"tensorParallel": 3}, "models[0].tensorParallel", ["3", "32 attention heads", "1, 2, 4, 8"]),
        ({"quantization": "int3"}, "models[0].quantization", ['"int3"', "'fp8'", "'awq'"]),
        ({"maxModelLen": "16k"}, "models[0].maxModelLen", ['"16k"', "integer"]),
        (
            {"gpuMemoryUtilisation": 0.9},
            "models[0].gpuMemoryUtilisation",
            ["unknown key", "did you mean 'gpuMemoryUtilization'"],
        ),
        ({"extraArgs": ["--dtype", "fp8"]}, "models[0].extraArgs[0]", ["--dtype fp8", "--quantization fp8"]),
        ({"extraArgs": ["--speculative-model", "x"]}, "models[0].extraArgs[0]", ["removed", "--speculative-config"]),
        ({"extraArgs": ["--api-key", "abc"]}, "models[0].extraArgs[0]", ["secret on the command line"]),
        ({"extraArgs": ["--max-num-seqs=512"]}, "models[0].extraArgs[0]", ["managed by the stack", "maxNumSeqs"]),
    ],
)
def test_model_errors_name_key_value_and_allowed(model, path, fragments):
    err = error_of(cfg(**model))
    assert err.path == path
    text = str(err)
    assert "\n" not in text
    for f in fragments:
        assert f in text, (f, text)


def test_unknown_top_level_key_suggests_closest():
    raw = cfg()
    raw["monitorng"] = {}
    err = error_of(raw)
    assert err.path == "monitorng" and "did you mean 'monitoring'" in str(err)


def test_inline_architecture_makes_unknown_model_valid():
    arch = {"params": 13e9, "layers": 40, "kvHeads": 40, "headDim": 128, "attentionHeads": 40, "maxPositions": 4096}
    c = parse_config(cfg(model="acme/unknown-13b", architecture=arch, maxModelLen=4096))
    assert c.models[0].model_info().architecture.layers == 40


def test_config_is_immutable():
    c = parse_config(cfg())
    with pytest.raises(Exception):
        c.models[0].max_model_len = 1  # type: ignore[misc]


def _stack_file(tmp_path, body: dict) -> Path:
    p = tmp_path / "Pulumi.x.yaml"
    p.write_text(yaml.safe_dump({"config": {f"vllm-stack:{k}": v for k, v in body.items()}}))
    return p


@pytest.mark.parametrize("key", ["apiKey", "hfToken", "grafanaAdminPassword"])
def test_plain_secret_value_is_refused(tmp_path, key):
    p = _stack_file(tmp_path, {**cfg(), key: "sk-plaintext-oops"})
    with pytest.raises(ConfigError) as exc:
        load_stack_file(p)
    assert exc.value.path == key and "must be a Pulumi secret" in str(exc.value)
    assert "sk-plaintext-oops" not in str(exc.value)


def test_secure_secret_is_accepted_and_recorded_by_name_only(tmp_path):
    body = {f"vllm-stack:{k}": v for k, v in cfg().items()}
    body["vllm-stack:apiKey"] = {"secure": "v1:abc:def"}
    p = tmp_path / "Pulumi.x.yaml"
    p.write_text(yaml.safe_dump({"config": body}))
    c = load_stack_file(p)
    assert c.secrets == frozenset({"apiKey"})
    assert "v1:abc" not in repr(c)


def test_malformed_yaml_reports_line(tmp_path):
    p = tmp_path / "Pulumi.bad.yaml"
    p.write_text("config:\n  vllm-stack:environment: dev\n   bad: [\n")
    with pytest.raises(ConfigError) as exc:
        load_stack_file(p)
    assert "malformed YAML at line" in str(exc.value)


def test_docker_placement_error_names_pool_key():
    raw = {
        "environment": "dev",
        "platform": "docker",
        "hosts": [{"name": "a", "address": "10.0.0.1", "gpu": "L40S", "gpuCount": 1}],
        "models": [{**BASE_MODEL, "pool": {"onDemand": 2}}],
    }
    err = error_of(raw)
    assert err.path == "models[0].pool.onDemand" and "only 1 fit" in str(err)


@pytest.mark.parametrize(
    "body, key",
    [
        ({"environment": "dev", "platform": "kubernetes", "models": [{**BASE_MODEL, "gpu": "H1000"}]}, "models[0].gpu"),
        ({"environment": "staging", "platform": "kubernetes", "models": [BASE_MODEL]}, "environment"),
    ],
)
def test_cli_exit_2_one_line_no_traceback_nothing_written(tmp_path, body, key):
    p = _stack_file(tmp_path, body)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "vllm_stack", "plan", str(p), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
