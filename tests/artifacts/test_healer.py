"""The docker runtime's healer (`vllm_stack/render/healer.py`): shellcheck, systemd-analyze
verify of its service and timer, the bootstrap installs it, and its decisions, run against a
stub `docker` that answers `ps`/`inspect` from a table and records `restart` calls."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import require, shellcheck, systemd_verify
from vllm_stack import defaults as D
from vllm_stack.config import unhealthy_restart_floor
from vllm_stack.loader import load_stack_file
from vllm_stack.render import healer as H
from vllm_stack.render.host_scripts import render_bootstrap_script
from vllm_stack.render.vllm_args import RenderError

REPO = Path(__file__).resolve().parents[2]
INTERVAL_NS = D.PROBE_PERIOD_SEC * 10**9

# The stub docker: `ps --filter label=... --filter health=unhealthy` lists the table's unhealthy
# containers; `inspect --format F NAME` prints the fields the healer's format asks for.
STUB = r"""#!/usr/bin/env python3
import json, os, sys
table = json.load(open(os.environ["STUB_TABLE"]))
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")
if args[0] == "ps":
    assert "label=vllm-stack/model" in args and "health=unhealthy" in args, args
    print("\n".join(n for n, c in table.items() if c["health"] == "unhealthy"))
elif args[0] == "inspect":
    c = table[args[-1]]
    print(f'{c["status"]}|{c["health"]}|{c["streak"]}|{c["interval"]}|{c["model"]}')
elif args[0] == "restart":
    sys.exit(table[args[-1]].get("restart_rc", 0))
"""


def run_healer(tmp_path: Path, table: dict, heal_after: dict, holds: tuple[str, ...] = ()) -> tuple[list[str], str]:
    docker = tmp_path / "docker"
    docker.write_text(STUB)
    docker.chmod(0o755)
    hold = tmp_path / "hold"
    hold.mkdir()
    for name in holds:
        (hold / name).touch()
    (tmp_path / "table.json").write_text(json.dumps(table))
    script = tmp_path / "vllm-heal"
    script.write_text(H.render_healer_script(heal_after, docker_bin=str(docker), hold_dir=str(hold)))
    script.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "STUB_TABLE": str(tmp_path / "table.json"), "STUB_LOG": str(tmp_path / "log")}
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=30, env=env)
    calls = (tmp_path / "log").read_text().splitlines() if (tmp_path / "log").exists() else []
    restarts = [c.split()[-1] for c in calls if c.startswith("restart")]
    assert r.returncode in (0, 1), r.stderr
    return restarts, r.stdout + r.stderr + f"\nrc={r.returncode}"


def c(streak: int, *, model: str = "llama-8b", health: str = "unhealthy", status: str = "running", **kw) -> dict:
    return {"status": status, "health": health, "streak": streak, "interval": INTERVAL_NS, "model": model, **kw}


def test_restarts_only_containers_unhealthy_longer_than_their_model_allows(tmp_path):
    table = {
        "vllm-llama-8b": c(6),  # 6 x 10 s = 60 s >= 60: restart
        "vllm-llama-8b-1": c(5),  # 50 s < 60: not yet
        "vllm-qwen": c(8, model="qwen"),  # 80 s < 90 (its own limit)
        "vllm-qwen-1": c(9, model="qwen"),  # 90 s: restart
        "vllm-ok": c(0, health="healthy"),
    }
    restarts, out = run_healer(tmp_path, table, {"llama-8b": 60, "qwen": 90})
    assert sorted(restarts) == ["vllm-llama-8b", "vllm-qwen-1"], out
    assert "restarted vllm-llama-8b (llama-8b): /health failing for ~60s (limit 60s)" in out
    assert "vllm-llama-8b-1 (llama-8b) unhealthy for ~50s; restart at 60s" in out


def test_hold_file_stopped_container_and_unknown_model(tmp_path):
    table = {
        "held": c(100),
        "exited": c(100, status="exited"),
        "other-model": c(6, model="unknown"),  # not in the map: D.UNHEALTHY_RESTART_SEC (60 s)
    }
    restarts, out = run_healer(tmp_path, table, {"llama-8b": 60}, holds=("held",))
    assert restarts == ["other-model"], out
    assert "held is unhealthy; held by" in out


def test_failed_restart_is_exit_1(tmp_path):
    restarts, out = run_healer(tmp_path, {"a": c(6, restart_rc=1)}, {"llama-8b": 60})
    assert restarts == ["a"] and out.endswith("rc=1") and "could not restart a" in out


def test_a_draining_container_never_reaches_the_limit():
    """The healer cannot fight a drain: a container fails /health only after SIGTERM and is
    SIGKILLed stop_timeout later; every allowed limit is above that plus one probe period."""
    for drain in (D.DRAIN_SECONDS_MIN, D.DRAIN_SECONDS_DEFAULT, D.DRAIN_SECONDS_MAX, 3600):
        stop_timeout = drain + D.TERMINATION_GRACE_EXTRA_SEC
        assert unhealthy_restart_floor(drain) >= stop_timeout + D.PROBE_PERIOD_SEC
    assert unhealthy_restart_floor(D.DRAIN_SECONDS_MAX) <= D.UNHEALTHY_RESTART_SEC


def test_renderer_refuses_bad_input():
    with pytest.raises(RenderError, match="not allowed"):
        H.render_healer_script({"bad name; rm": 60})
    with pytest.raises(RenderError, match=">= 1"):
        H.render_healer_script({"llama": 0})


def test_shellcheck_healer(tmp_path):
    require("shellcheck")
    p = tmp_path / "vllm-heal"
    p.write_text(H.render_healer_script({"llama-8b": 60, "qwen": 90}))
    result = shellcheck(p)
    assert result.ok and result.output.strip() == "", str(result)


def test_systemd_analyze_verify_healer_units(tmp_path):
    require("systemd-analyze")
    script = tmp_path / "vllm-heal"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (tmp_path / H.HEALER_SERVICE).write_text(H.render_healer_service(script=str(script)))
    timer = tmp_path / H.HEALER_TIMER
    timer.write_text(H.render_healer_timer())
    for unit in (tmp_path / H.HEALER_SERVICE, timer):
        result = systemd_verify(unit)
        assert result.ok and result.output.strip() == "", str(result)
    assert f"OnUnitActiveSec={D.HEALER_PERIOD_SEC}\n" in timer.read_text()


def test_bootstrap_installs_the_healer_on_docker_hosts_only():
    cfg = load_stack_file(REPO / "examples" / "Pulumi.docker-prod.yaml")  # systemd runtime
    assert "ensure_healer\n" in render_bootstrap_script(cfg, cfg.hosts[0].name)
    assert "healer_content()" not in render_bootstrap_script(cfg, cfg.hosts[0].name)
    docker_cfg = cfg.model_copy(update={"host_runtime": "docker"})
    text = render_bootstrap_script(docker_cfg, cfg.hosts[0].name)
    assert "healer_content()" in text and "healer_timer_content()" in text
    expected = cfg.models[0].unhealthy_restart_seconds
    assert f"declare -rA AFTER=([{cfg.models[0].name}]={expected})" in text
