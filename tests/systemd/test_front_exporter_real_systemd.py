"""The front's nginx exporter unit, as rendered, under a REAL systemd (systemd-nspawn, Debian bookworm).

The unit (`front_monitoring.render_exporter_unit`) runs Debian's `prometheus-nginx-exporter`
(bind-mounted read-only from this machine, the binary the deploy's `apt-get install` puts at
the same path) as a DynamicUser with the kernel-facing sandbox of every stack unit. A stub
stub_status page on the rendered scrape address stands in for nginx (nginx itself is exercised
with the exporter in tests/e2e/test_front_observed_e2e.py). Checks: the unit starts and serves
`nginx_up 1` and nginx's request counter on the rendered loopback listen address; its
`systemd-analyze security` exposure is within the issue's 3.5; a SIGKILL of it leads to a restart;
when stub_status goes away the running exporter reports `nginx_up 0` and keeps serving.

Found here first: the unit's seccomp filter killed Debian's Go binary with SIGSYS at start (Go
raises RLIMIT_NOFILE with setrlimit, in @resources); the unit now refuses it with EPERM. Debian's
0.11 also exits 1 when nginx is unreachable at ITS start; Restart=always retries every RestartSec.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.systemd.conftest import MAX_EXPOSURE, STACK_FILE
from tests.systemd.container import Container, require_prerequisites
from vllm_stack import defaults as D
from vllm_stack.deployment import FrontExporter, build
from vllm_stack.loader import load_stack_file
from vllm_stack.render import front_monitoring as FM

pytestmark = [pytest.mark.timeout(300)]

STUB_UNIT = "stub-status.service"
REQUESTS = 4242  # the request counter the stub reports (nginx's "handled requests" third figure)
RESTART_WAIT = 30.0  # the unit's RestartSec=10, plus start


def _stub_server(scrape_uri: str) -> str:
    u = urlsplit(scrape_uri)
    body = (
        "Active connections: 3 \nserver accepts handled requests\n"
        f" 17 17 {REQUESTS} \nReading: 0 Writing: 1 Waiting: 2 \n"
    )
    return (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        ok = self.path == {u.path!r}\n"
        f"        data = {body!r}.encode() if ok else b''\n"
        "        self.send_response(200 if ok else 404)\n"
        "        self.send_header('Content-Type', 'text/plain')\n"
        "        self.send_header('Content-Length', str(len(data)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(data)\n"
        f"http.server.HTTPServer(({u.hostname!r}, {u.port}), H).serve_forever()\n"
    )


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    require_prerequisites()
    exporter_bin = Path(D.NGINX_EXPORTER_DEBIAN_BIN)
    if not exporter_bin.exists():
        pytest.fail(f"{exporter_bin} missing (make tools: apt-get install prometheus-nginx-exporter)", pytrace=False)
    work = tmp_path_factory.mktemp("systemd-exporter")
    c = Container.boot(work, [(str(exporter_bin), str(exporter_bin))], name="vllmstackexp")
    try:
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def exporter() -> FrontExporter:
    ex = build(load_stack_file(STACK_FILE)).front_exporter
    assert ex is not None and ex.unit is not None
    return ex


def _metrics(box: Container, listen: str) -> str:
    r = box.run(["curl", "--silent", "--max-time", "2", f"http://{listen}{D.METRICS_PATH}"], check=False)
    return r.stdout if r.returncode == 0 else ""


def _value(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_rendered_exporter_unit_serves_nginx_metrics_sandboxed_and_heals(box: Container, exporter: FrontExporter):
    unit = exporter.unit
    assert unit is not None
    box.put("/root/stub_status.py", _stub_server(FM.SCRAPE_URI), 0o644)
    box.run(["systemd-run", f"--unit={STUB_UNIT}", "/usr/bin/python3", "/root/stub_status.py"])
    box.put(f"{D.SYSTEMD_UNIT_DIR}/{unit}", FM.render_exporter_unit(unit, exporter.listen), D.UNIT_FILE_MODE)
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "start", unit], timeout=60)

    # serving on the rendered loopback address, reading the rendered stub_status URL
    took = box.wait(lambda: _value(_metrics(box, exporter.listen), "nginx_up") == 1, 20, "nginx_up 1", unit)
    text = _metrics(box, exporter.listen)
    assert _value(text, "nginx_http_requests_total") == REQUESTS, text[-2000:]
    assert _value(text, "nginx_connections_active") == 3
    props = box.show(unit, "ActiveState", "User", "DynamicUser", "MainPID")
    assert props["ActiveState"] == "active" and props["DynamicUser"] == "yes", props
    pid = int(props["MainPID"])
    uid = box.run(["stat", "-c", "%u", f"/proc/{pid}"]).stdout.strip()
    assert uid != "0", "the exporter runs as root"

    # hardened as issue 15 asks of the stack's units
    exposure, word = box.exposure(unit)
    assert exposure <= MAX_EXPOSURE, box.run(["systemd-analyze", "security", unit], check=False).stdout

    # SIGKILL: Restart=always brings it back
    box.run(["systemctl", "kill", "--signal=SIGKILL", unit])
    healed = box.wait(
        lambda: (
            box.show(unit, "NRestarts")["NRestarts"] == "1" and _value(_metrics(box, exporter.listen), "nginx_up") == 1
        ),
        RESTART_WAIT,
        "restart after SIGKILL",
        unit,
    )
    # nginx gone: the exporter says so and keeps serving (FrontNginxDown reads nginx_up == 0)
    box.run(["systemctl", "stop", STUB_UNIT])
    box.wait(lambda: _value(_metrics(box, exporter.listen), "nginx_up") == 0, 20, "nginx_up 0", unit)

    print(
        f"\n{unit}: nginx_up 1 after {took:.1f}s, exposure {exposure} ({word}), restarted {healed:.1f}s after SIGKILL"
    )
