"""examples/python-single-host: the package used from a plain Pulumi program, under the mock engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python-single-host"

# Mock state is process-wide: the example runs in its own process, through the plan's engine.
RUN = r"""
import json, sys
from pathlib import Path
import yaml
from vllm_stack.offline.engine import run_program
run = run_program(Path(sys.argv[1]), "dev", {}, {"sshPrivateKey": "KEY-MATERIAL-NOT-IN-OUTPUT"},
                  project=yaml.safe_load(Path(sys.argv[1], "Pulumi.yaml").read_text())["name"])
print(json.dumps([{"type": r.type, "name": r.name, "parent": r.parent,
                   "inputs": {k: "[secret]" if k in r.secret_keys else v for k, v in r.inputs.items()},
                   "secret": sorted(r.secret_keys), "deps": list(r.dependencies)} for r in run.resources], default=str))
"""


def _run() -> tuple[list[dict], str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(EXAMPLE)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout + out.stderr


def test_example_builds_host_server_and_front_from_plain_arguments():
    resources, text = _run()
    types = {r["type"] for r in resources}
    assert {"vllmstack:index:SshGpuNode", "vllmstack:index:DockerVllmServer", "vllmstack:index:HostNginxFront"} <= types
    by_name = {(r["type"], r["name"]): r for r in resources}
    container = by_name[("docker:index/container:Container", "qwen-7b-od-0")]["inputs"]
    argv = container["command"]
    assert argv[:3] == ["Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen-7b"]
    assert container["ports"][0]["ip"] == "127.0.0.1" and container["gpus"] == "device=0"
    conf = by_name[("command:remote:Command", "front-nginx-conf")]
    assert "server_name llm.example.com;" in conf["inputs"]["stdin"]
    # registered component inputs: the plan and CrossGuard see what the server was given
    server = by_name[("vllmstack:index:DockerVllmServer", "qwen-7b-od-0")]
    assert server["inputs"]["model"] == "qwen-7b" and server["inputs"]["port"] == 8000
    # the SSH key stays a secret through the components
    assert "KEY-MATERIAL-NOT-IN-OUTPUT" not in text
    bootstrap = by_name[("command:remote:Command", "gpu-a-bootstrap")]
    assert "connection" in bootstrap["secret"]
    node = by_name[("vllmstack:index:SshGpuNode", "gpu-a")]
    assert {"ssh", "apiKey"} <= set(node["secret"])  # nested secret (ssh.privateKey) hides the whole input
    assert "readonly RUNTIME=docker" in bootstrap["inputs"]["stdin"]


def test_example_reads_no_stack_config_of_ours():
    src = (EXAMPLE / "__main__.py").read_text()
    assert "vllm_stack.stack" not in src and "StackConfig" not in src and "load_stack_file" not in src
