"""The rendered systemd start wrapper launches REAL vLLM the way the unit would.

`alpha_server` (conftest) runs `render_start_wrapper(cfg, alpha, replica, vllm_bin=<venv vllm>)`
with its SERVE_ARGS mapped through the harness test profile, in exactly the environment the unit
gives it: the unit's Environment= lines and the 0600 EnvironmentFile written by the rendered
`vllm-write-secrets` and read like systemd reads it, plus a stub `systemd-notify` first on PATH
that records when it ran and what /health answered at that moment. A poller thread hits /health
every few ms from before the wrapper starts. This module checks what was recorded.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.real_vllm import harness
from tests.real_vllm.conftest import ALPHA, WRAPPER_POLL_SECONDS, alive
from vllm_stack import defaults as D
from vllm_stack.render import systemd as systemd_render
from vllm_stack.render.weights import model_path
from vllm_stack.render.vllm_args import ENV_API_KEY, serve_argv

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]


def test_readiness_is_signalled_only_after_health_answers_200(alpha_server):
    f = alpha_server.facts
    records = [ln.split(" ", 2) for ln in f["notify_log"].read_text().splitlines() if ln.strip()]
    # one READY, first, with the health URL as status; after it only watchdog pings (hosts heal),
    # each sent while /health answered 200
    assert len(records) >= 1 and sum(1 for r in records if "--ready" in r[2]) == 1, records
    assert all(r[1:] == ["200", "WATCHDOG=1"] for r in records[1:]), records
    t_notify, code_at_notify, args = float(records[0][0]), records[0][1], records[0][2]
    assert args == f"--ready --status=serving {f['health_url']}", args
    assert f["health_url"] == f"http://127.0.0.1:{alpha_server.port}{D.HEALTH_PATH}"
    poller = f["poller"]
    assert poller.first_200 is not None and poller.last_not_200 is not None, vars(poller)
    # /health was refused for a while after the wrapper started (vLLM loading): the notify check is not vacuous
    assert poller.last_not_200 - f["t_start"] > 5, poller.last_not_200 - f["t_start"]
    # READY came after the last moment /health was seen failing, and /health answered 200 when it came
    assert t_notify > poller.last_not_200, (t_notify, poller.last_not_200)
    assert code_at_notify == "200", records
    # the first 200 the poller saw lies in (last_not_200, first_200]: at most one poll gap before READY
    gap = poller.first_200 - poller.last_not_200
    assert poller.first_200 <= t_notify + gap
    delay = t_notify - poller.first_200
    # the wrapper polls every WRAPPER_POLL_SECONDS: READY follows the first 200 within about one period
    assert delay < WRAPPER_POLL_SECONDS + 2.0, delay
    print(
        f"\nwrapper start -> first /health 200: {poller.first_200 - f['t_start']:.2f}s; "
        f"first 200 -> READY: {delay * 1000:+.0f} ms (poll gap at the transition {gap * 1000:.0f} ms, "
        f"{poller.polls} polls); /health still failing {(t_notify - poller.last_not_200) * 1000:.0f} ms "
        f"before READY"
    )


def test_wrapper_runs_the_rendered_argv_with_the_env_file_and_no_secret_on_any_cmdline(alpha_server):
    f = alpha_server.facts
    key = alpha_server.key
    cfg, spec, replica = f["cfg"], f["spec"], f["replica"]
    # the wrapper's array is serve_argv() of the model's pre-fetched directory (render/weights.py, the served
    # name unchanged), bound where vllm_bind_host says (loopback here)
    host = systemd_render.vllm_bind_host(cfg, replica)
    assert f["prod_args"] == serve_argv(spec, host=host, port=replica.port, model_path=model_path(spec))
    assert f["prod_args"][0] == model_path(spec) != spec.model
    assert f["prod_args"][f["prod_args"].index("--served-model-name") + 1] == spec.name
    assert f["prod_args"][f["prod_args"].index("--host") + 1] == "127.0.0.1"
    # only SERVE_ARGS differ between the rendered and the executed wrapper
    rendered_rest = f["rendered_wrapper"].split("readonly -a SERVE_ARGS=(")[0]
    assert f["wrapper_text"].startswith(rendered_rest)
    assert f["wrapper_text"].split("\n)\n", 1)[1] == f["rendered_wrapper"].split("\n)\n", 1)[1]

    # the secret file: rendered by vllm-write-secrets, 0600 root, named as the unit's EnvironmentFile
    assert f["env_file_mode"] == D.SECRET_FILE_MODE and f["env_file_uid"] == 0
    assert conftest_unit_env_file(f["unit"]) == systemd_render.secret_env_path(ALPHA)
    assert f["env_file"].name == systemd_render.secret_env_path(ALPHA).rsplit("/", 1)[1]
    assert f["file_env_keys"] == [ENV_API_KEY]
    # no secret in the world-readable unit, in the wrapper, or in the writer's output
    for text in (f["unit"], f["wrapper_text"], f["writer_output"]):
        assert key not in text
    assert ENV_API_KEY not in f["unit_env"]

    # every live process of the service: the wrapper, vLLM's API server, its engine core, helpers
    pids = alpha_server.vllm_pids()
    assert len(pids) >= 3, pids
    cmdlines = {p: harness.cmdline(p) for p in pids}
    for p, cmd in cmdlines.items():
        assert key.encode() not in cmd, f"API key in /proc/{p}/cmdline"
        assert b"--api-key" not in cmd
    # ... while the key is really in vLLM's environment (it came from the env file)
    api = next(p for p, c in cmdlines.items() if b"\0serve\0" in c)
    environ = open(f"/proc/{api}/environ", "rb").read().split(b"\0")
    assert f"{ENV_API_KEY}={key}".encode() in environ
    # vLLM got exactly the wrapper's array: argv after `serve` == the test-profile SERVE_ARGS
    argv = cmdlines[api].decode().split("\0")[:-1]
    assert argv[argv.index("serve") + 1 :] == alpha_server.argv
    assert argv[argv.index("serve") - 1] == f["vllm_bin"]
    # the wrapper is vLLM's parent (it waits on it and forwards SIGTERM)
    ppid = int(open(f"/proc/{api}/stat").read().rsplit(")", 1)[1].split()[1])
    assert ppid == alpha_server.proc.pid and alive(alpha_server.proc.pid)

    # and vLLM enforces the key from the env file
    assert httpx.get(alpha_server.base + "/v1/models", timeout=10).status_code == 401
    r = httpx.get(alpha_server.base + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == [ALPHA], r.text
    print("\ntest profile changes:\n" + "\n".join(f"  - {n}" for n in alpha_server.notes))
    print(f"service environment (names only): {', '.join(f['env_keys'])}")


def conftest_unit_env_file(unit: str) -> str:
    vals = [ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("EnvironmentFile=")]
    assert len(vals) == 1, vals
    return vals[0]


def test_the_two_shared_servers_compute_on_different_cores(alpha_server, beta_server):
    """vLLM's CPU auto-binding would put both on the same core (harness.own_core_env)."""
    logs = [srv.proc.log_path.read_text(errors="replace") for srv in (alpha_server, beta_server)]
    cores = [re.findall(r"local_rank=0, core ids=\[([0-9, ]+)\]", log) for log in logs]
    assert cores[0] and cores[1], "no OpenMP binding line in vLLM's log"
    assert cores[0][-1] != cores[1][-1], cores
