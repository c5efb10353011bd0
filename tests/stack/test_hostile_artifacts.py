"""The one free-text field (extraArgs) with hostile content: every artifact that carries it
gives it back to its consumer as exactly the same argv element.

- bash: the start wrapper's SERVE_ARGS array is evaluated by bash itself; every shell script
  the plan writes passes `bash -n`;
- docker: the container command in the plan's resource inputs and the `.argv` artifact
  (shell-parsed by bash);
- Kubernetes: container args after a YAML load of the rendered manifests;
- systemd units never carry it (ExecStart is the wrapper path).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vllm_stack.deployment import NGINX_EXPORTER_NAME
from vllm_stack.render.front_monitoring import exporter_argv

from .conftest import ROOT

HOSTILE_ARGS = [
    "--chat-template",
    "{% for m in messages %}{{ m['content'] }}{% endfor %};$(id)`id`\"'\\ %n ${HOME} }{ #x &&|>< \u00e9",
    "--override-generation-config",
    '{"temperature": 0.5, "stop": ["a;b", "$(x)"]}',
    "--chat-template-content-format=string'; rm -rf / #",
]


def stack_file(tmp_path: Path, platform: str, runtime: str = "docker") -> Path:
    config = {
        "vllm-stack:environment": "dev",
        "vllm-stack:platform": platform,
        "vllm-stack:models": [
            {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S", "extraArgs": HOSTILE_ARGS}
        ],
    }
    if platform == "docker":
        config["vllm-stack:hostRuntime"] = runtime
        config["vllm-stack:hosts"] = [{"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}]
    path = tmp_path / f"Pulumi.hostile-{platform}-{runtime}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def plan_out(tmp_path: Path, stack: Path) -> Path:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "vllm_stack", "plan", str(stack), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def bash_array(script: Path, name: str) -> list[str]:
    """The array `name` as bash builds it from the script's own `readonly -a NAME=(...)` block."""
    text = script.read_text()
    start = text.index(f"readonly -a {name}=(")
    block = text[start : text.index("\n)\n", start) + 3]
    proc = subprocess.run(["bash", "-c", block + f'printf "%s\\0" "${{{name}[@]}}"'], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split("\0")[:-1]


def bash_words(line: str) -> list[str]:
    proc = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + line], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split("\0")[:-1]


def contains_run(argv: list[str], run: list[str]) -> bool:
    return any(argv[i : i + len(run)] == run for i in range(len(argv) - len(run) + 1))


def shell_scripts(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.read_text(errors="replace").startswith("#!/bin/")]


def test_systemd_wrapper_gives_bash_the_exact_argv(tmp_path):
    out = plan_out(tmp_path, stack_file(tmp_path, "docker", "systemd"))
    wrappers = list(out.glob("hosts/*/bin/vllm-start-*"))
    assert wrappers
    for w in wrappers:
        assert contains_run(bash_array(w, "SERVE_ARGS"), HOSTILE_ARGS)
    for unit in out.glob("hosts/*/systemd/*.service"):
        assert "chat-template" not in unit.read_text()
    for script in shell_scripts(out):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0, (script, proc.stderr)


def test_docker_container_command_is_the_exact_argv(tmp_path):
    out = plan_out(tmp_path, stack_file(tmp_path, "docker", "docker"))
    doc = json.loads((out / "plan.json").read_text())
    containers = [
        r
        for r in doc["resources"]
        if r["type"] == "docker:index/container:Container"
        and "vllm" in r["inputs"].get("image", "")
        and r["inputs"].get("command")
    ]
    assert containers
    for c in containers:
        assert contains_run(c["inputs"]["command"], HOSTILE_ARGS)
    argv_files = list(out.glob("hosts/*/containers/*.argv"))
    exporter = [f for f in argv_files if f.stem == NGINX_EXPORTER_NAME]  # the front's exporter: its own flags
    assert len(exporter) == 1 and bash_words(exporter[0].read_text().strip()) == exporter_argv("127.0.0.1:9113")
    vllm_argv = [f for f in argv_files if f not in exporter]
    assert vllm_argv
    for f in vllm_argv:
        assert contains_run(bash_words(f.read_text().strip()), HOSTILE_ARGS)


def test_kubernetes_args_are_the_exact_argv(tmp_path):
    out = plan_out(tmp_path, stack_file(tmp_path, "kubernetes"))
    found = 0
    for f in out.rglob("*.yaml"):
        for obj in yaml.safe_load_all(f.read_text()):
            if not isinstance(obj, dict) or obj.get("kind") != "Deployment":
                continue
            for c in obj["spec"]["template"]["spec"]["containers"]:
                if contains_run(c.get("args", []), HOSTILE_ARGS):
                    found += 1
    assert found >= 1


@pytest.mark.parametrize("runtime", ["docker", "systemd"])
def test_hostile_value_never_appears_outside_quoting_in_scripts(tmp_path, runtime):
    """No line of a shell script holds the template's `$(id)` where bash would run it: every
    occurrence sits in a single-quoted word, which bash -n plus the round trip above prove."""
    out = plan_out(tmp_path, stack_file(tmp_path, "docker", runtime))
    for script in shell_scripts(out):
        for line in script.read_text().splitlines():
            if "$(id)" in line:
                assert "'" in line.split("$(id)")[0], (script, line)


EDGE_STACK = """\
config:
  vllm-stack:environment: dev
  vllm-stack:platform: docker
  vllm-stack:hostRuntime: systemd
  vllm-stack:hosts:
    - {name: gpu-1, address: "2001:db8::10", user: _svc, port: 2222, gpu: L40S}
    - {name: gpu-2, address: gpu-2.dc.example.com, user: deploy-bot, gpu: L40S, capacity: spot}
  vllm-stack:models:
    - name: m7
      model: /srv/models/qwen2.5-7b/v1.2
      gpu: L40S
      image: registry.example.com:5000/team/vllm-openai:v0.33.0@sha256:%s
      architecture: {params: 7.6e9, layers: 28, kvHeads: 4, headDim: 128, attentionHeads: 28, maxPositions: 32768}
      pool: {onDemand: 1, spot: 1, peakSchedule: {start: "45 8 * * mon-fri", end: "0 19 * * MON-FRI",
                                                  timezone: America/New_York, replicas: 1}}
  vllm-stack:front:
    domain: "*.llm.example.com"
    clientMaxBodySize: 512K
  vllm-stack:monitoring:
    alertmanager: {external: "[2001:db8::99]:9093"}
""" % ("0123456789abcdef" * 4)


def test_the_edges_of_every_grammar_reach_their_consumers_intact(tmp_path):
    """Valid but unusual values: an IPv6 SSH host (bracketed in the Docker provider URL), a POSIX
    user starting with `_`, a model path, a registry with a port and a digest, `7.6e9` (a float in
    YAML 1.2, as the Pulumi CLI reads it), cron names, a wildcard domain, an IPv6 Alertmanager."""
    stack = tmp_path / "Pulumi.edge.yaml"
    stack.write_text(EDGE_STACK)
    out = plan_out(tmp_path, stack)
    doc = json.loads((out / "plan.json").read_text())
    hosts = sorted({r["inputs"]["host"] for r in doc["resources"] if r["type"] == "pulumi:providers:docker"})
    assert hosts == ["ssh://_svc@[2001:db8::10]:2222", "ssh://deploy-bot@gpu-2.dc.example.com:22"]
    prom = yaml.safe_load((out / "monitoring/prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["[2001:db8::99]:9093"]
    assert "server_name *.llm.example.com;" in (out / "front/nginx.conf").read_text()
    wrapper = next(out.glob("hosts/gpu-1/bin/vllm-start-*"))
    assert bash_array(wrapper, "SERVE_ARGS")[0] == "/srv/models/qwen2.5-7b/v1.2"
    for script in shell_scripts(out):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0, (script, proc.stderr)
