"""The routing tier's unit (`render.router.render_router_unit`), as rendered, under a REAL systemd.

The docker-prod example (systemd runtime) with routing on for its model: the deployment model
gives the router's unit, its loopback listen and metrics ports, policy and every flag. The one
change: its static worker URLs (the GPU hosts' addresses, port 8000) become 127.0.0.N on the same
port, one fake vLLM on each (the fake binds loopback only). The pinned router venv (`scripts/vllm_router_venv.sh`) is bind-mounted read-only at
the rendered install dir, its interpreter being the container's Debian python3.11.

Checks: the unit starts as a DynamicUser and every rendered worker is healthy in the router; a
chat completion through it reaches a backend; its metrics port serves; requests still succeed
with one backend stopped; SIGKILL leads to a restart; its `systemd-analyze security` exposure is within issue 15's 3.5.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from urllib.parse import urlsplit

import pytest

from tests.support.router import router_venv
from tests.systemd.conftest import MAX_EXPOSURE, STACK_FILE, TESTS_IN, _rootfs_binds
from tests.systemd.container import Container, require_prerequisites
from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.deployment import Router, build
from vllm_stack.loader import parse_config, split_namespaced
from vllm_stack.render import router as R
from vllm_stack.stackfile import read_stack_document

pytestmark = [pytest.mark.timeout(400)]

SITE = "lib/python3.11/site-packages"


def routed_cfg() -> StackConfig:
    """The docker-prod example with `routing.enabled` on its model."""
    doc = read_stack_document(STACK_FILE)
    plain, secrets = split_namespaced(doc["config"], STACK_FILE.name)
    plain["models"][0]["routing"] = {"enabled": True}
    return parse_config(plain, secrets, STACK_FILE.name)


def routed_router(cfg: StackConfig) -> Router:
    """Its router, the worker hosts moved onto loopback (127.0.0.2, .3, ...; same port)."""
    routers = build(cfg).routers
    assert len(routers) == 1 and routers[0].unit is not None and len(routers[0].workers) >= 2
    r = routers[0]
    workers = tuple(f"http://127.0.0.{i + 2}:{urlsplit(w).port}" for i, w in enumerate(r.workers))
    return dataclasses.replace(r, workers=workers)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    require_prerequisites()
    venv = router_venv()  # builds it once (cached outside the repo); fails under CI=true if it cannot
    binds = [*_rootfs_binds("fake"), (str(venv / SITE), f"{D.ROUTER_INSTALL_DIR}/{SITE}")]
    work = tmp_path_factory.mktemp("systemd-router")
    c = Container.boot(work, binds, name="vllmstackrouter")
    try:
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _curl(box: Container, url: str, *args: str) -> tuple[int, str]:
    r = box.run(["curl", "--silent", "--max-time", "5", "--write-out", "\n%{http_code}", *args, url], check=False)
    body, _, code = r.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def _install_router(box: Container) -> None:
    """The venv `pip install vllm-router==<pin>` leaves at the install dir, on Debian's python3.11."""
    root = D.ROUTER_INSTALL_DIR
    box.run(["mkdir", "-p", f"{root}/bin"])
    box.run(["ln", "-sf", "/usr/bin/python3.11", f"{root}/bin/python"])
    box.put(f"{root}/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n", 0o644)
    entry = (router_venv() / "bin" / "vllm-router").read_text().split("\n", 1)[1]
    box.put(R.router_bin(root), f"#!{root}/bin/python\n{entry}", 0o755)


def _start_backends(box: Container, r: Router) -> list[str]:
    units = []
    for i, url in enumerate(r.workers):
        u = urlsplit(url)
        unit = f"fake-vllm-{i}.service"
        box.run(
            [
                "systemd-run",
                f"--unit={unit}",
                f"--setenv=PYTHONPATH={TESTS_IN}",
                "/usr/bin/python3",
                "-m",
                "tests.fakes.fake_vllm",
                "--host",
                str(u.hostname),
                "--port",
                str(u.port),
                "--served-model-name",
                r.model,
                "--load-seconds",
                "0",
            ]
        )
        units.append(unit)
    for url in r.workers:
        box.wait(lambda url=url: _curl(box, url + D.HEALTH_PATH)[0] == 200, 30, f"fake vLLM {url}", units[0])
    return units


def _healthy_workers(box: Container, r: Router) -> list[str]:
    code, body = _curl(box, f"{r.admin_url}/list_workers")
    if code != 200:
        return []
    data = json.loads(body)
    return sorted(data.get("urls", data.get("workers", [])) if isinstance(data, dict) else data)


def _chat(box: Container, r: Router) -> tuple[int, str]:
    body = json.dumps({"model": r.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    return _curl(box, f"{r.url}/v1/chat/completions", "-H", "Content-Type: application/json", "--data", body)


def test_rendered_router_unit_routes_heals_and_is_sandboxed(box: Container):
    cfg = routed_cfg()
    r = routed_router(cfg)
    unit = r.unit
    assert unit is not None
    _install_router(box)
    fakes = _start_backends(box, r)
    box.put(f"{D.SYSTEMD_UNIT_DIR}/{unit}", R.render_router_unit(cfg, r), D.UNIT_FILE_MODE)
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "start", unit], timeout=60)

    want = sorted(r.workers)
    took = box.wait(lambda: _healthy_workers(box, r) == want, 60, f"workers {want}", unit)
    props = box.show(unit, "ActiveState", "DynamicUser", "MainPID")
    assert props["ActiveState"] == "active" and props["DynamicUser"] == "yes", props
    assert box.run(["stat", "-c", "%u", f"/proc/{props['MainPID']}"]).stdout.strip() != "0"

    code, body = _chat(box, r)
    assert code == 200, body
    assert json.loads(body)["model"] == r.model
    mcode, metrics = _curl(box, f"http://{r.bind}:{r.metrics_port}/metrics")
    assert mcode == 200 and "vllm_router" in metrics, metrics[:500]

    # hardened as issue 15 asks of the stack's units
    exposure, word = box.exposure(unit)
    assert exposure <= MAX_EXPOSURE, box.run(["systemd-analyze", "security", unit], check=False).stdout

    # a backend dies: requests keep succeeding (the router's retries and health checks)
    box.run(["systemctl", "stop", fakes[0]])
    assert [_chat(box, r)[0] for _ in range(8)] == [200] * 8

    # SIGKILL: Restart=always brings it back
    box.run(["systemctl", "kill", "--signal=SIGKILL", unit])
    healed = box.wait(
        lambda: box.show(unit, "NRestarts")["NRestarts"] == "1" and _chat(box, r)[0] == 200,
        D.SYSTEMD_RESTART_SEC + 30,
        "restart after SIGKILL",
        unit,
    )
    print(
        f"\n{unit}: {len(want)} workers healthy after {took:.1f}s; exposure {exposure} ({word}); "
        f"restarted {healed:.1f}s after SIGKILL"
    )
