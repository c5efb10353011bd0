"""The rendered nginx front through the real tools.

* `nginx -t` (Debian nginx) on a dev-like config (1 model, 1 backend), a prod-like one (2
  models, on-demand + spot backends, one `down`, a backup, a backend-key include) and a
  plain-HTTP one, each with a freshly generated self-signed certificate; a broken variant
  must fail, so the check is known to bite;
* shellcheck on the drain script;
* the drain script run for real against a stub `nginx` (records its argv, fails on demand):
  the edit, idempotency, undrain, restore on `nginx -t` / reload failure, exit codes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import nginx_t, require, shellcheck
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config
from vllm_stack.render.drain import render_drain_script
from vllm_stack.render.nginx import FrontListen, NginxPaths, render_api_keys_map, render_front, render_upstream_auth

KEYS = ["sk-artifact-key-0001-abcdef", "sk-artifact-key-0002-ABC.def+/=="]
BACKEND_KEY = "sk-artifact-backend-key-9999"


def dev_cfg(**front):
    raw = {
        "environment": "dev",
        "platform": "docker",
        "hosts": [{"name": "gpu1", "address": "127.0.0.1", "gpu": "L40S"}],
        "models": [{"name": "tiny", "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S"}],
    }
    if front:
        raw["front"] = front
    return parse_config(raw)


def prod_cfg():
    return parse_config(
        {
            "environment": "prod",
            "platform": "kubernetes",
            "front": {"domain": "llm.example.com", "tls": "provided"},
            "models": [
                {
                    "name": "llama",
                    "model": "meta-llama/Llama-3.1-8B",
                    "gpu": "L40S",
                    "pool": {"onDemand": 1, "spot": 2},
                },
                {
                    "name": "mistral",
                    "model": "mistralai/Mistral-7B-v0.3",
                    "gpu": "L40S",
                    "default": True,
                    "pool": {"onDemand": 1, "spot": 1},
                },
            ],
        }
    )


PROD_BACKENDS = [
    Backend("llama", "127.0.0.1", 18001, "onDemand"),
    Backend("llama", "127.0.0.1", 18002, "spot"),
    Backend("llama", "127.0.0.1", 18003, "spot", state="down"),
    Backend("mistral", "127.0.0.1", 18011, "onDemand"),
    Backend("mistral", "127.0.0.1", 18012, "spot", state="backup"),
]


def self_signed(cert: Path, key: Path, cn: str = "localhost") -> None:
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            f"subjectAltName=DNS:{cn}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def write_front(root: Path, files: dict[str, str], paths: NginxPaths, *, backend_key: str | None = None) -> None:
    for d in ("logs", "temp", "upstreams", "tls"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    Path(paths.api_keys).write_text(render_api_keys_map(KEYS))
    os.chmod(paths.api_keys, D.SECRET_FILE_MODE)
    if paths.upstream_auth:
        Path(paths.upstream_auth).write_text(render_upstream_auth(backend_key or BACKEND_KEY))
        os.chmod(paths.upstream_auth, D.SECRET_FILE_MODE)
    self_signed(Path(paths.cert), Path(paths.key))


def check(root: Path, paths: NginxPaths):
    res = nginx_t(paths.conf, root)
    assert res.ok, str(res)
    assert "test is successful" in res.output


def test_nginx_t_accepts_dev_front(tmp_path):
    require("nginx")
    paths = NginxPaths.under(tmp_path)
    files = render_front(
        dev_cfg(),
        [Backend("tiny", "127.0.0.1", D.VLLM_PORT)],
        paths=paths,
        listen=FrontListen(bind="127.0.0.1", http_port=18080, https_port=18443),
    )
    write_front(tmp_path, files, paths)
    check(tmp_path, paths)


def test_nginx_t_accepts_prod_front_with_spot_down_backup_and_backend_key(tmp_path):
    require("nginx")
    paths = NginxPaths.under(tmp_path, upstream_auth=True)
    files = render_front(prod_cfg(), PROD_BACKENDS, paths=paths)  # default ports and `user www-data`
    assert "user www-data;" in files["nginx.conf"]
    write_front(tmp_path, files, paths)
    check(tmp_path, paths)


def test_nginx_t_accepts_plain_http_dev_front(tmp_path):
    require("nginx")
    paths = NginxPaths.under(tmp_path)
    files = render_front(
        dev_cfg(tls="none"),
        [Backend("tiny", "127.0.0.1", D.VLLM_PORT)],
        paths=paths,
        listen=FrontListen(bind="127.0.0.1", http_port=18080, https_port=18443),
        user=None,
    )
    write_front(tmp_path, files, paths)
    check(tmp_path, paths)


def test_nginx_t_accepts_the_edges_of_every_grammar(tmp_path):
    """Valid but unusual values (wildcard domain, IPv6 backend, size suffix K) reach nginx as
    nginx reads them: `nginx -t` passes and each value stands in its directive unchanged."""
    require("nginx")
    paths = NginxPaths.under(tmp_path)
    files = render_front(
        dev_cfg(domain="*.llm.example.com", clientMaxBodySize="512K"),
        [Backend("tiny", "::1", D.VLLM_PORT)],
        paths=paths,
        listen=FrontListen(bind="127.0.0.1", http_port=18080, https_port=18443),
        user=None,
    )
    conf = files["nginx.conf"]
    assert "server_name *.llm.example.com;" in conf and "client_max_body_size 512K;" in conf
    assert f"server [::1]:{D.VLLM_PORT} " in files["upstreams/tiny.conf"]
    write_front(tmp_path, files, paths)
    check(tmp_path, paths)


def test_nginx_t_rejects_a_broken_front(tmp_path):
    """Control: the same prod front with a server line nginx cannot parse must fail `nginx -t`."""
    require("nginx")
    paths = NginxPaths.under(tmp_path)
    files = render_front(prod_cfg(), PROD_BACKENDS, paths=paths, user=None)
    files["upstreams/llama.conf"] = files["upstreams/llama.conf"].replace("max_fails=", "max_failz=", 1)
    write_front(tmp_path, files, paths)
    res = nginx_t(paths.conf, tmp_path)
    assert not res.ok and "max_failz" in res.output, str(res)


@pytest.mark.parametrize("nginx_cmd", [("nginx",), ("docker", "exec", "vllm-front", "nginx")])
def test_drain_script_passes_shellcheck(tmp_path, nginx_cmd):
    require("shellcheck")
    script = tmp_path / "vllm-drain"
    script.write_text(render_drain_script(NginxPaths.under(tmp_path), nginx_cmd=nginx_cmd))
    res = shellcheck(script)
    assert res.ok, str(res)


# --------------------------------------------------------------------------- drain script, stub nginx

STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
for a in "$@"; do
    case "$a" in
        -t) [ -z "${STUB_FAIL_T:-}" ] || { echo "nginx: [emerg] stub says no" >&2; exit 1; } ;;
        reload) [ -z "${STUB_FAIL_RELOAD:-}" ] || { echo "nginx: [error] no pid" >&2; exit 1; } ;;
    esac
done
exit 0
"""


@pytest.fixture
def drain(tmp_path):
    paths = NginxPaths.under(tmp_path)
    files = render_front(prod_cfg(), PROD_BACKENDS, paths=paths, user=None)
    (tmp_path / "upstreams").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    stub = tmp_path / "nginx-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    script = tmp_path / "vllm-drain"
    script.write_text(render_drain_script(paths, nginx_cmd=(str(stub),), drain_seconds=0))
    script.chmod(0o755)
    log = tmp_path / "stub.log"

    def run(*args, **env):
        full = {**os.environ, "STUB_LOG": str(log), **env}
        p = subprocess.run(["sh", str(script), *args], env=full, capture_output=True, text=True, timeout=30)
        return p

    run.upstream = lambda m: (tmp_path / "upstreams" / f"{m}.conf").read_text()
    run.calls = lambda: log.read_text().splitlines() if log.exists() else []
    run.paths = paths
    run.original = {m: (tmp_path / "upstreams" / f"{m}.conf").read_text() for m in ("llama", "mistral")}
    run.tmp = tmp_path
    return run


def server_lines(text: str) -> dict[str, str]:
    return {line.split()[1]: line.strip() for line in text.splitlines() if line.strip().startswith("server ")}


def test_drain_marks_only_the_target_down_reloads_waits_and_stops(drain):
    marker = drain.tmp / "stopped"
    p = drain("llama", "127.0.0.1:18002", "0", STOP_CMD=f"touch {marker}")
    assert p.returncode == 0, p.stdout + p.stderr
    before, after = server_lines(drain.original["llama"]), server_lines(drain.upstream("llama"))
    assert after["127.0.0.1:18002"].split("#")[0].rstrip().endswith(" down;")
    assert {k: v for k, v in after.items() if k != "127.0.0.1:18002"} == {
        k: v for k, v in before.items() if k != "127.0.0.1:18002"
    }
    assert drain.upstream("mistral") == drain.original["mistral"]
    conf = drain.paths.conf
    assert drain.calls() == [f"-p {drain.paths.prefix}/ -c {conf} -t", f"-p {drain.paths.prefix}/ -c {conf} -s reload"]
    assert marker.exists()
    leftovers = sorted(x.name for x in (drain.tmp / "upstreams").iterdir())
    assert leftovers == ["llama.conf", "mistral.conf"]  # no temp file, no lock left behind

    # idempotent: the same drain again changes nothing and does not reload
    p = drain("llama", "127.0.0.1:18002", "0")
    assert p.returncode == 0, p.stderr
    assert server_lines(drain.upstream("llama")) == after
    assert len(drain.calls()) == 2

    # undrain puts the original file back, byte for byte
    p = drain("--undrain", "llama", "127.0.0.1:18002")
    assert p.returncode == 0, p.stderr
    assert drain.upstream("llama") == drain.original["llama"]
    assert len(drain.calls()) == 4


def test_drain_keeps_file_mode(drain):
    f = drain.tmp / "upstreams" / "llama.conf"
    f.chmod(0o640)
    assert drain("llama", "127.0.0.1:18001", "0").returncode == 0
    assert (f.stat().st_mode & 0o777) == 0o640


def test_drain_restores_the_file_when_nginx_t_fails(drain):
    marker = drain.tmp / "stopped"
    p = drain("llama", "127.0.0.1:18001", "0", STUB_FAIL_T="1", STOP_CMD=f"touch {marker}")
    assert p.returncode == 1
    assert "stub says no" in p.stderr and "restored" in p.stderr
    assert drain.upstream("llama") == drain.original["llama"]
    assert not marker.exists()
    assert not any("reload" in c for c in drain.calls())


def test_drain_restores_the_file_when_reload_fails(drain):
    p = drain("llama", "127.0.0.1:18001", "0", STUB_FAIL_RELOAD="1", STOP_CMD="exit 0")
    assert p.returncode == 1
    assert drain.upstream("llama") == drain.original["llama"]


def test_drain_refuses_unknown_backend_bad_args_and_the_last_usable_backend(drain):
    assert drain("llama", "127.0.0.1:9").returncode == 3
    assert drain("nosuch", "127.0.0.1:18001").returncode == 3
    assert drain("llama").returncode == 2
    assert drain("llama", "127.0.0.1:18001", "soon").returncode == 2
    assert drain("ll;ama", "127.0.0.1:18001").returncode == 2
    assert drain("llama", "127.0.0.1:18001;x").returncode == 2
    assert drain.upstream("llama") == drain.original["llama"]
    # mistral: one on-demand plus a backup; draining both would leave nothing
    assert drain("mistral", "127.0.0.1:18012", "0").returncode == 0
    p = drain("mistral", "127.0.0.1:18011", "0")
    assert p.returncode == 4 and "FORCE=1" in p.stderr
    assert drain("mistral", "127.0.0.1:18011", "0", FORCE="1").returncode == 0
    assert all(
        line.split("#")[0].rstrip().endswith(" down;") for line in server_lines(drain.upstream("mistral")).values()
    )


def test_drain_reports_a_failing_stop_command(drain):
    p = drain("llama", "127.0.0.1:18001", "0", STOP_CMD="exit 7")
    assert p.returncode == 1 and "STOP_CMD failed" in p.stderr
