"""The docker runtime's healer under a real systemd: the rendered bootstrap of a docker-runtime
host (the shipped example stack with hostRuntime docker) runs in the booted container with a stub
`docker` (D.DOCKER_BIN: answers `info`/`ps`/`inspect` from a table, records `run`/`restart`) and
stub `nvidia-smi`/`nvidia-ctk`; it installs and starts vllm-heal.timer, whose runs restart the
container that has been unhealthy longer than its model's unhealthyRestartSeconds and leave the
others alone. No real docker engine is needed (none can run here)."""

from __future__ import annotations

import json
import time

import pytest

from tests.systemd.conftest import HOST, NVIDIA_SMI_STUB, STACK_FILE
from tests.systemd.container import Container, require_prerequisites
from vllm_stack import defaults as D
from vllm_stack.loader import load_stack_file
from vllm_stack.render import healer as H
from vllm_stack.render.host_scripts import render_bootstrap_script

TABLE = "/etc/stub-docker/table.json"
LOG = "/var/log/stub-docker.log"
INTERVAL_NS = D.PROBE_PERIOD_SEC * 10**9

DOCKER_STUB = f"""#!/usr/bin/python3
# {D.DOCKER_BIN} in the test container: a table instead of an engine; every call is logged.
import json, sys
args = sys.argv[1:]
with open({LOG!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
table = json.load(open({TABLE!r}))
if args[:1] == ["info"]:
    print("{{}}")
elif args[:1] == ["ps"]:
    print("\\n".join(n for n, c in table.items() if c["health"] == "unhealthy"))
elif args[:1] == ["inspect"]:
    name = args[-1]
    if name not in table:
        sys.exit(1)
    c = table[name]
    print(f'{{c["status"]}}|{{c["health"]}}|{{c["streak"]}}|{{c["interval"]}}|{{c["model"]}}')
elif args[:1] in (["run"], ["restart"], ["rm"]):
    print("ok")
else:
    sys.exit(2)
"""


def entry(streak: int, health: str = "unhealthy") -> dict:
    return {"status": "running", "health": health, "streak": streak, "interval": INTERVAL_NS, "model": "llama-8b"}


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    require_prerequisites()
    c = Container.boot(tmp_path_factory.mktemp("systemd-healer"), name="vllmheal")
    try:
        yield c
    finally:
        c.shutdown()


def test_bootstrap_starts_the_healer_timer_which_restarts_only_the_hung_container(box):
    cfg = load_stack_file(STACK_FILE).model_copy(update={"host_runtime": "docker"})
    limit = cfg.models[0].unhealthy_restart_seconds
    hung = limit // D.PROBE_PERIOD_SEC  # failing exactly `limit` seconds
    table = {"vllm-llama-8b": entry(hung), "vllm-llama-8b-1": entry(hung - 1), "vllm-ok": entry(0, "healthy")}
    box.put(TABLE, json.dumps(table), 0o644)
    box.put(D.DOCKER_BIN, DOCKER_STUB, 0o755)
    box.put("/usr/local/bin/nvidia-smi", NVIDIA_SMI_STUB, 0o755)
    box.put("/usr/local/bin/nvidia-ctk", "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.0'\n", 0o755)
    boot = render_bootstrap_script(cfg, HOST)
    r = box.run(["bash", "-s"], input=boot, timeout=120)
    assert f"enabled and started {H.HEALER_TIMER}" in r.stdout, r.stdout + r.stderr
    state = box.show(H.HEALER_TIMER, "ActiveState", "UnitFileState")
    assert state == {"ActiveState": "active", "UnitFileState": "enabled"}, state
    t0 = time.monotonic()
    deadline = t0 + 3 * D.HEALER_PERIOD_SEC + 10
    restarts: list[str] = []
    while time.monotonic() < deadline and not restarts:
        log = box.run(["cat", LOG], check=False).stdout
        restarts = [ln.split()[-1] for ln in log.splitlines() if ln.startswith("restart ")]
        time.sleep(0.5)
    journal = box.journal(H.HEALER_SERVICE)
    assert restarts == ["vllm-llama-8b"], journal
    assert f"restarted vllm-llama-8b (llama-8b): /health failing for ~{limit}s (limit {limit}s)" in journal
    assert f"vllm-llama-8b-1 (llama-8b) unhealthy for ~{limit - D.PROBE_PERIOD_SEC}s" in journal
    # a second bootstrap run leaves the healer as it is (the stub keeps no DCGM container, so
    # the bootstrap "starts" that one again: not the healer's business)
    again = box.run(["bash", "-s"], input=boot, timeout=120).stdout
    for path in (H.HEALER_PATH, H.HEALER_SERVICE_PATH, H.HEALER_TIMER_PATH):
        assert f"ok: {path}\n" in again, again
    assert H.HEALER_TIMER not in again.replace(f"ok: {H.HEALER_TIMER_PATH}", ""), again
    print(
        f"\n[systemd/healer] {H.HEALER_TIMER} restarted the hung container {time.monotonic() - t0:.1f}s after the bootstrap"
    )
