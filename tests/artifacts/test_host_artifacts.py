"""Rendered host artifacts through the real tools, and the start wrapper run for real.

* shellcheck (all severities) on the bootstrap (both host runtimes), the secret writer and
  every start wrapper;
* `systemd-analyze verify` on each vLLM unit and on dcgm-exporter.service, with ExecStart
  pointing at real executables in a temp dir; any output at all fails;
* the wrapper under bash with a stub `vllm` (a tiny HTTP server that answers /health after a
  delay) and a stub `systemd-notify` on PATH: READY only after /health answered 200, exit 1
  when vLLM dies while loading, SIGTERM forwarded to vLLM, argv == serve_argv, no secret in it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.procs import Proc, free_port
from tests.support.tools import require, shellcheck, systemd_verify
from vllm_stack import defaults as D
from vllm_stack.config import ModelSpec
from vllm_stack.loader import parse_config
from vllm_stack.placement import Replica, place
from vllm_stack.render import host_scripts as H
from vllm_stack.render import systemd as S
from vllm_stack.render import weights as W
from vllm_stack.render.vllm_args import serve_argv

SECRET = "sk-wrapper-canary-5d1e"


def make_cfg(runtime: str):
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hostRuntime": runtime,
            "hosts": [
                {"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": 3},
                {"name": "edge", "address": "10.0.0.9", "gpu": "L40S", "gpuCount": 1},
            ],
            "models": [
                {"name": "llama", "model": "meta-llama/Llama-3.1-8B", "gpu": "L40S", "pool": {"onDemand": 2}},
                {"name": "qwen", "model": "Qwen/Qwen2.5-7B", "gpu": "L40S", "pool": {"onDemand": 2}},
            ],
        }
    )


def write_exec(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# --- shellcheck ------------------------------------------------------------------------------


def rendered_scripts() -> list[tuple[str, str]]:
    out = []
    for runtime in ("docker", "systemd"):
        cfg = make_cfg(runtime)
        for host in cfg.hosts:
            for path, f in H.render_host_files(cfg, host.name, place(cfg)).items():
                if f.content.startswith("#!"):
                    out.append((f"{runtime}__{host.name}__{Path(path).name}", f.content))
    return out


@pytest.mark.parametrize("name,text", rendered_scripts(), ids=[n for n, _ in rendered_scripts()])
def test_shellcheck_every_rendered_script(name, text, tmp_path):
    require("shellcheck")
    path = tmp_path / name
    path.write_text(text)
    result = shellcheck(path)
    assert result.ok, str(result)
    assert result.output.strip() == "", str(result)


def test_the_set_of_scripts_covers_every_kind():
    names = {n.split("__")[2] for n, _ in rendered_scripts()}
    assert {
        D.BOOTSTRAP_NAME,
        D.SECRET_WRITER_NAME,
        "vllm-start-llama",
        "vllm-start-llama-1",
        "vllm-start-qwen",
        "vllm-start-qwen-1",
    } <= names


# --- systemd-analyze verify -------------------------------------------------------------------


def units_under_test():
    cfg = make_cfg("systemd")
    return [(cfg, spec, r) for spec in cfg.models for r in place(cfg)[spec.name]]


@pytest.mark.parametrize("index", range(len(units_under_test())))
def test_systemd_analyze_verify_vllm_unit(index, tmp_path):
    require("systemd-analyze")
    cfg, spec, replica = units_under_test()[index]
    # ExecStart must exist: render the wrapper into the temp dir and point the unit at it.
    write_exec(tmp_path / S.wrapper_name(spec, replica), S.render_start_wrapper(cfg, spec, replica))
    # the weights pre-fetch it Requires= sits beside it (systemd-analyze loads it from the same directory)
    fetch = W.fetch_of(spec)
    assert fetch is not None
    write_exec(tmp_path / fetch.script.rsplit("/", 1)[-1], W.render_fetch_script(fetch, hf_bin="/usr/bin/true"))
    (tmp_path / fetch.unit).write_text(S.render_weights_unit(spec, bin_dir=str(tmp_path)))
    unit = tmp_path / S.unit_name(spec, replica)
    unit.write_text(S.render_systemd_unit(cfg, spec, replica, bin_dir=str(tmp_path)))
    result = systemd_verify(unit)
    assert result.ok, str(result)
    assert result.output.strip() == "", f"systemd-analyze said something (any warning fails):\n{result}"


def test_systemd_analyze_verify_dcgm_unit(tmp_path):
    require("systemd-analyze")
    docker = write_exec(tmp_path / "docker", "#!/bin/sh\nexit 0\n")
    unit = tmp_path / f"{D.DCGM_EXPORTER_CONTAINER}.service"
    unit.write_text(
        S.render_dcgm_unit(publish=f"127.0.0.1:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}", docker_bin=str(docker))
    )
    result = systemd_verify(unit)
    assert result.ok, str(result)
    assert result.output.strip() == "", f"systemd-analyze said something (any warning fails):\n{result}"


def test_systemd_analyze_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    require("systemd-analyze")
    cfg, spec, replica = units_under_test()[0]
    write_exec(tmp_path / S.wrapper_name(spec, replica), "#!/bin/sh\n")
    unit = tmp_path / S.unit_name(spec, replica)
    unit.write_text(
        S.render_systemd_unit(cfg, spec, replica, bin_dir=str(tmp_path)).replace("Restart=always", "Restartt=always")
    )
    assert not systemd_verify(unit).ok


# --- the wrapper, run for real -------------------------------------------------------------------

STUB_VLLM = textwrap.dedent('''\
    #!{python}
    """Stub `vllm serve`: records argv/env, answers /health after LOAD seconds, exits on SIGTERM."""
    import http.server, json, os, signal, sys, threading, time
    out = os.environ["STUB_OUT"]
    args = sys.argv[1:]
    with open(out + "/argv.json", "w") as f:
        json.dump({{"argv": args, "has_key": os.environ.get("VLLM_API_KEY") == {secret!r}}}, f)
    if os.environ.get("STUB_EXIT"):
        sys.exit(int(os.environ["STUB_EXIT"]))
    host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
    time.sleep(float(os.environ.get("STUB_LOAD", "0")))

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer((host, port), H)
    def term(signum, frame):
        open(out + "/sigterm", "w").write(str(time.time()))
        threading.Thread(target=srv.shutdown).start()
    signal.signal(signal.SIGTERM, term)
    open(out + "/listening", "w").write(str(time.time()))
    srv.serve_forever()
    sys.exit(0)
''')

STUB_NOTIFY = textwrap.dedent("""\
    #!/bin/bash
    # stub systemd-notify: records its arguments and what /health answered at that moment
    code="$(curl -s -o /dev/null -w '%{{http_code}}' "{url}" || true)"
    echo "$* health=$code" >> "{out}/notify.log"
""")


@dataclass
class WrapperEnv:
    """The rendered start wrapper with its stub `vllm` and `systemd-notify` (which write into `out`)."""

    spec: ModelSpec
    replica: Replica
    wrapper: Path
    out: Path
    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, **stub_env: str) -> Proc:
        """The wrapper under bash, the stub vLLM told `stub_env` (STUB_LOAD, STUB_EXIT); stopped at teardown."""
        proc = Proc("wrapper", ["/bin/bash", str(self.wrapper)], self.log_dir, env={**self.env, **stub_env})
        self.procs.append(proc)
        return proc


@pytest.fixture
def wrapper_env(tmp_path) -> Iterator[WrapperEnv]:
    if not os.path.exists(D.CURL_BIN):
        if os.environ.get("CI") == "true":
            pytest.fail(f"curl missing at {D.CURL_BIN}")
        pytest.skip(f"curl missing at {D.CURL_BIN}")
    cfg = make_cfg("systemd")
    spec = cfg.models[0]
    replica = Replica(spec.name, "onDemand", 0, "gpu-a", "10.0.0.5", (0,), free_port())
    out = tmp_path / "out"
    out.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    url = S.health_url("127.0.0.1", replica.port)
    vllm = write_exec(bindir / "vllm", STUB_VLLM.format(python=sys.executable, secret=SECRET))
    write_exec(bindir / "systemd-notify", STUB_NOTIFY.format(url=url, out=out))
    wrapper = write_exec(
        tmp_path / S.wrapper_name(spec, replica),
        S.render_start_wrapper(cfg, spec, replica, vllm_bin=str(vllm), poll_seconds=0.2, bind_host="127.0.0.1"),
    )
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "STUB_OUT": str(out), "VLLM_API_KEY": SECRET}
    w = WrapperEnv(spec, replica, wrapper, out, env, tmp_path)
    yield w
    for proc in w.procs:
        proc.stop()


def wait_for(predicate, timeout: float, what: str, proc: Proc | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{proc.tail()}" if proc else ""))


def test_wrapper_ready_only_after_health_then_forwards_sigterm(wrapper_env: WrapperEnv):
    out = wrapper_env.out
    proc = wrapper_env.start(STUB_LOAD="1.0")
    wait_for(lambda: (out / "notify.log").exists(), 15, "systemd-notify", proc)
    notify = (out / "notify.log").read_text().splitlines()
    assert notify[0].startswith("--ready") and notify[0].endswith("health=200"), notify
    # after READY only watchdog pings, each sent while /health answered 200
    assert all(n == "WATCHDOG=1 health=200" for n in notify[1:]), notify
    assert (out / "listening").exists()
    started = json.loads((out / "argv.json").read_text())
    # vLLM loads the pre-fetched local directory (render/weights.py), served under the model's name
    local = W.model_path(wrapper_env.spec)
    expected = serve_argv(wrapper_env.spec, host="127.0.0.1", port=wrapper_env.replica.port, model_path=local)
    assert started["argv"] == ["serve", *expected] and started["argv"][1].startswith(D.VLLM_WEIGHTS_DIR)
    assert started["has_key"] is True  # the key reached vLLM through the environment ...
    assert SECRET not in " ".join(started["argv"]) and "--api-key" not in started["argv"]  # ... not argv
    assert proc.popen.poll() is None
    proc.signal(signal.SIGTERM)
    rc = proc.popen.wait(timeout=15)
    assert rc == 0, proc.tail()
    assert (out / "sigterm").exists(), "vLLM never got the forwarded SIGTERM"
    log = proc.tail()
    assert "notified systemd" in log and "forwarding it to vLLM" in log
    assert SECRET not in log


def test_wrapper_exits_1_when_vllm_dies_while_loading(wrapper_env: WrapperEnv):
    proc = wrapper_env.start(STUB_EXIT="3")
    rc = proc.popen.wait(timeout=15)
    assert rc == 1, proc.tail()
    assert "vLLM exited with status 3 during startup" in proc.tail()
    assert not (wrapper_env.out / "notify.log").exists(), "READY sent for a vLLM that never became healthy"


def test_wrapper_sigterm_while_loading_stops_vllm_without_ready(wrapper_env: WrapperEnv):
    out = wrapper_env.out
    proc = wrapper_env.start(STUB_LOAD="30")
    wait_for(lambda: (out / "argv.json").exists(), 15, "vLLM start", proc)
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    rc = proc.popen.wait(timeout=15)
    assert rc == 128 + signal.SIGTERM, proc.tail()  # the stub died of the forwarded SIGTERM; its status is passed on
    assert not (out / "notify.log").exists()
    assert "forwarding it to vLLM" in proc.tail()
