"""The rendered bootstrap and secret writer, run for real (twice) in a throwaway Debian root.

The root is a `debootstrap --variant=minbase bookworm` tree built once by
scripts/test_chroot.sh and cached under ${VLLM_STACK_CACHE:-~/.cache/vllm-stack}/chroot-bookworm;
every test works on its own `cp -a` copy, deleted afterwards, so no state leaks between runs.
The copy is an overlayfs over the cache (instant; `cp -a` where overlayfs is unavailable).
Nothing is mounted into it (no /proc, no /dev bind): the scripts must not need them.
Stubs in the copy's /usr/local/bin stand in for the GPU stack: nvidia-smi (lists L40S GPUs),
nvidia-ctk, docker (keeps container state in a file), systemctl and curl (systemd runtime).

Needs root and debootstrap: skipped locally without them, FAILED under CI=true.
Timings (this machine): cold build ~30 s (network), throwaway root < 0.1 s, each test < 1.5 s.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from vllm_stack import defaults as D
from vllm_stack.loader import parse_config
from vllm_stack.render import host_scripts as H
from vllm_stack.render.vllm_args import render_secret_env_file

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test_chroot.sh"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MODEL = "llama"
CHANGED = re.compile(r"^bootstrap\[[^]]*\]: changed: ", re.M)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"chroot test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chroot_cache() -> Path:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable("needs root (debootstrap, chroot)")
    if shutil.which("chroot") is None:
        _unavailable("chroot (coreutils) is not on PATH")
    cache = Path(os.environ.get("VLLM_STACK_CACHE", Path.home() / ".cache" / "vllm-stack")) / "chroot-bookworm"
    if not (cache / ".vllm-stack-chroot-complete").is_file() and shutil.which("debootstrap") is None:
        _unavailable("debootstrap is not installed (apt-get install -y debootstrap)")
    start = time.monotonic()
    p = subprocess.run(["bash", str(SCRIPT), "ensure"], capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        _unavailable(f"building the Debian root failed:\n{p.stderr[-3000:]}")
    print(f"\nchroot cache ready in {time.monotonic() - start:.1f} s: {p.stdout.strip()}")
    return Path(p.stdout.strip())


STUB_NVIDIA_SMI = """#!/bin/bash
[[ "${1:-}" == -L ]] || { echo "stub nvidia-smi: only -L" >&2; exit 2; }
for i in $(seq 0 $(( ${STUB_GPUS:-%(gpus)d} - 1 ))); do
    echo "GPU $i: NVIDIA L40S (UUID: GPU-0000000$i-1111-2222-3333-444444444444)"
done
"""
STUB_NVIDIA_SMI_BROKEN = """#!/bin/bash
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
"""
STUB_NVIDIA_CTK = """#!/bin/bash
echo "NVIDIA Container Toolkit CLI version 1.17.4"
"""


def stateful_stub(cmd: str, state: str, last: str, arms: str) -> str:
    """A bash stub for `cmd` that keeps its state in files under `state` and appends every call
    to `state`/calls.log: its last argument in `$<last>`, then `case "$1" in <arms>`; any other
    subcommand fails with "stub <cmd>: unsupported"."""
    return (
        f'#!/bin/bash\nstate={state}\nmkdir -p "$state"\necho "{cmd} $*" >>"$state/calls.log"\n'
        f'{last}="${{!#}}"\ncase "${{1:-}}" in\n{arms}'
        f'    *) echo "stub {cmd}: unsupported: $*" >&2; exit 1 ;;\nesac\n'
    )


# docker stub: one state file per container under /var/lib/stub-docker.
STUB_DOCKER = stateful_stub(
    "docker",
    "/var/lib/stub-docker",
    "last",
    r"""    info)
        if [[ "${2:-}" == --format ]]; then
            echo '{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}%(nvidia_runtime)s}'
        else
            echo "Server Version: 27.0.0"
        fi ;;
    inspect)
        [[ -f "$state/$last.ctr" ]] || { echo "Error: No such object: $last" >&2; exit 1; }
        cat "$state/$last.ctr" ;;
    rm) rm -f "$state/$last.ctr" ;;
    run)
        shift
        name="" label=""
        while (( $# > 1 )); do
            case "$1" in
                --name) name=$2; shift ;;
                --label) label=${2#*=}; shift ;;
            esac
            shift
        done
        cat >/dev/null  # reads stdin, as CLIs may: the bootstrap must hand it /dev/null, not its own script
        echo "$last|$label|true" >"$state/$name.ctr"
        echo 0123456789ab ;;
    stop) ;;
""",
)
# systemctl stub: enabled/active flags in /var/lib/stub-systemd.
STUB_SYSTEMCTL = stateful_stub(
    "systemctl",
    "/var/lib/stub-systemd",
    "unit",
    """    daemon-reload) ;;
    enable) touch "$state/$unit.enabled" ;;
    start|restart) touch "$state/$unit.active" ;;
    is-enabled) [[ -f "$state/$unit.enabled" ]] ;;
    is-active) [[ -f "$state/$unit.active" ]] ;;
""",
)
STUB_CURL = "#!/bin/bash\nexit 7\n"


def make_cfg(runtime: str = "docker", gpu_count: int = 2):
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hostRuntime": runtime,
            "hosts": [{"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": gpu_count}],
            "models": [{"name": MODEL, "model": "meta-llama/Llama-3.1-8B", "gpu": "L40S"}],
        }
    )


class Root:
    """One throwaway copy of the cached root."""

    def __init__(self, path: Path):
        self.path = path

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def put(self, rel: str, text: str, mode: int = 0o755) -> None:
        p = self / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["chroot", str(self.path), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": CHROOT_PATH, "HOME": "/root", "LC_ALL": "C"},
        )

    def bootstrap(self) -> subprocess.CompletedProcess:
        return self.run("/bin/bash", "/root/bootstrap.sh")

    def bootstrap_from_stdin(self) -> subprocess.CompletedProcess:
        """As the deployer runs it: `ssh HOST sudo bash -s` with the script on stdin."""
        return self.run("/bin/bash", "-s", stdin=(self / "root/bootstrap.sh").read_text())

    def ids(self, db: str) -> dict[str, int]:
        out = {}
        for line in (self / f"etc/{db}").read_text().splitlines():
            parts = line.split(":")
            out[parts[0]] = int(parts[2])
        return out

    def members(self, group: str) -> list[str]:
        for line in (self / "etc/group").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == group:
                return [m for m in parts[3].split(",") if m]
        raise KeyError(group)

    def owner_mode(self, rel: str) -> tuple[str, str, int]:
        st = (self / rel).lstat()
        users = {v: k for k, v in self.ids("passwd").items()}
        groups = {v: k for k, v in self.ids("group").items()}
        return users.get(st.st_uid, str(st.st_uid)), groups.get(st.st_gid, str(st.st_gid)), stat.S_IMODE(st.st_mode)


@pytest.fixture
def root(chroot_cache, tmp_path) -> Root:
    work = tmp_path / "chroot"
    start = time.monotonic()
    p = subprocess.run(["bash", str(SCRIPT), "mount", str(work)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    print(f"\nthrowaway root ready in {time.monotonic() - start:.2f} s")
    try:
        yield Root(Path(p.stdout.strip()))
    finally:
        r = subprocess.run(["bash", str(SCRIPT), "release", str(work)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr


def install_gpu_stubs(root: Root, *, gpus: int = 2, broken_driver: bool = False, toolkit: bool = True) -> None:
    root.put("usr/local/bin/nvidia-smi", STUB_NVIDIA_SMI_BROKEN if broken_driver else STUB_NVIDIA_SMI % {"gpus": gpus})
    if toolkit:
        root.put("usr/local/bin/nvidia-ctk", STUB_NVIDIA_CTK)
    root.put("usr/local/bin/docker", STUB_DOCKER % {"nvidia_runtime": ""})


def snapshot(root: Root, rels: list[str]) -> dict[str, tuple]:
    out = {}
    for rel in rels:
        st = (root / rel).lstat()
        out[rel] = (st.st_ino, st.st_mtime_ns, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_size)
    return out


def write_secrets_watching_ps(root: Root, content: str, secret: str) -> tuple[subprocess.CompletedProcess, int, list]:
    """Run the writer with `content` on stdin; poll `ps -eo args` on the host meanwhile.

    stdin is held open for a moment so the writer is certainly alive during the first polls;
    a thread keeps polling until it exits. Returns (result, snapshots that saw the writer, leaks).
    """
    proc = subprocess.Popen(
        ["chroot", str(root.path), H.SECRET_WRITER_PATH, MODEL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": CHROOT_PATH, "LC_ALL": "C"},
    )
    seen, leaks = [0], []
    done = threading.Event()

    def poll():
        while not done.is_set():
            args = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            if D.SECRET_WRITER_NAME in args:
                seen[0] += 1
            leaks.extend(line for line in args.splitlines() if secret in line)
            time.sleep(0.02)

    watcher = threading.Thread(target=poll)
    watcher.start()
    try:
        assert proc.stdin is not None
        proc.stdin.write(content)
        proc.stdin.flush()
        time.sleep(0.5)  # the writer is blocked reading stdin: several polls happen now
        out, err = proc.communicate(timeout=30)  # closes stdin
    finally:
        done.set()
        watcher.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen[0], leaks


def test_bootstrap_twice_then_secrets_docker_runtime(root):
    cfg = make_cfg("docker")
    install_gpu_stubs(root)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(cfg, "gpu-a"), 0o700)
    secret = f"sk-test-{secrets.token_hex(12)}"
    env_file = render_secret_env_file({"VLLM_API_KEY": secret})
    timings = {}

    t = time.monotonic()
    first = root.bootstrap_from_stdin()
    timings["bootstrap 1"] = time.monotonic() - t
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed: created system user vllm" in first.stdout
    assert H.NOTHING_CHANGED not in first.stdout

    # user, groups, directories
    assert "vllm" in root.ids("passwd")
    passwd = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("vllm:"))
    assert passwd.split(":")[6] == "/usr/sbin/nologin"
    assert root.ids("passwd")["vllm"] < 1000  # a system user
    assert "vllm" in root.members("video")  # debootstrap has `video` ...
    assert "render" not in root.ids("group")  # ... but no `render`: skipped, not created
    assert root.owner_mode(D.VLLM_ETC_DIR) == ("root", "vllm", D.VLLM_DIR_MODE)
    assert root.owner_mode(D.VLLM_WEIGHTS_DIR) == ("vllm", "vllm", D.VLLM_DIR_MODE)
    assert root.owner_mode(H.SECRET_WRITER_PATH) == ("root", "root", 0o755)
    assert (root / H.SECRET_WRITER_PATH).read_text() == H.render_secret_writer_script()
    calls = (root / "var/lib/stub-docker/calls.log").read_text()
    run_line = next(line for line in calls.splitlines() if line.startswith("docker run"))
    assert f"--name {D.DCGM_EXPORTER_CONTAINER}" in run_line and "--restart always" in run_line
    assert "--gpus all" in run_line and run_line.endswith(D.DCGM_EXPORTER_IMAGE)
    assert f"-p 127.0.0.1:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}" in run_line

    # secrets through stdin, watched from the host
    t = time.monotonic()
    wrote, seen, leaks = write_secrets_watching_ps(root, env_file, secret)
    timings["writer 1"] = time.monotonic() - t
    assert wrote.returncode == 0, wrote.stderr
    assert seen >= 2, "ps never saw the writer running: the leak check proved nothing"
    assert leaks == [], f"secret visible in ps: {leaks}"
    env_path = f"{D.VLLM_ETC_DIR}/{MODEL}.env"
    assert root.owner_mode(env_path) == ("root", "root", D.SECRET_FILE_MODE)
    assert (root / env_path).read_text() == env_file
    assert f"VLLM_API_KEY={secret}" in (root / env_path).read_text()
    assert not [p.name for p in (root / D.VLLM_ETC_DIR).iterdir() if p.name != f"{MODEL}.env"], "temp file left"

    # run 2: nothing changes, and it says so
    watched = [
        "etc/passwd",
        "etc/group",
        "etc/shadow",
        "etc/gshadow",
        D.VLLM_ETC_DIR,
        D.VLLM_WEIGHTS_DIR,
        H.SECRET_WRITER_PATH,
        env_path,
        "var/lib/stub-docker/dcgm-exporter.ctr",
    ]
    before = snapshot(root, watched)
    t = time.monotonic()
    second = root.bootstrap()
    timings["bootstrap 2"] = time.monotonic() - t
    assert second.returncode == 0, second.stdout + second.stderr
    assert H.NOTHING_CHANGED in second.stdout and not CHANGED.search(second.stdout), second.stdout
    again, seen2, leaks2 = write_secrets_watching_ps(root, env_file, secret)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr
    assert leaks2 == []
    assert snapshot(root, watched) == before
    piped = root.bootstrap_from_stdin()  # the deployer's way: same script on stdin, same no-op
    assert piped.returncode == 0 and H.NOTHING_CHANGED in piped.stdout, piped.stdout + piped.stderr
    assert snapshot(root, watched) == before
    assert (
        sum(line.startswith("docker run") for line in (root / "var/lib/stub-docker/calls.log").read_text().splitlines())
        == 1
    )

    # a new key rotates the file atomically (new inode), still 0600
    rotated = render_secret_env_file({"VLLM_API_KEY": secret + "x"})
    third, _, leaks3 = write_secrets_watching_ps(root, rotated, secret)
    assert third.returncode == 0 and "wrote" in third.stdout
    assert leaks3 == []
    assert (root / env_path).stat().st_ino != before[env_path][0]
    assert root.owner_mode(env_path) == ("root", "root", D.SECRET_FILE_MODE)

    for result in (first, second, piped, wrote, again, third):
        assert secret not in result.stdout + result.stderr
    print("\n" + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))


def test_secret_writer_refuses_bad_input_without_echoing_it(root):
    install_gpu_stubs(root)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("docker"), "gpu-a"), 0o700)
    assert root.bootstrap().returncode == 0
    secret = f"sk-test-{secrets.token_hex(8)}"
    cases = {
        "unknown key": f"VLLM_API_KEY={secret}\nAWS_SECRET={secret}\n",
        "repeated key": f"VLLM_API_KEY={secret}\nVLLM_API_KEY={secret}\n",
        "not KEY=value": f"{secret}\n",
        "empty": "",
    }
    for what, content in cases.items():
        r = root.run(H.SECRET_WRITER_PATH, MODEL, stdin=content)
        assert r.returncode != 0, what
        assert secret not in r.stdout + r.stderr, what
    bad_name = root.run(H.SECRET_WRITER_PATH, "../../etc/passwd", stdin=f"VLLM_API_KEY={secret}\n")
    assert bad_name.returncode != 0 and "invalid model name" in bad_name.stderr
    assert list((root / D.VLLM_ETC_DIR).iterdir()) == []


def test_bootstrap_fails_clearly_without_a_working_driver(root):
    install_gpu_stubs(root, broken_driver=True)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("docker"), "gpu-a"), 0o700)
    r = root.bootstrap()
    assert r.returncode != 0
    assert "'nvidia-smi -L' failed on host gpu-a" in r.stderr and "install/repair the NVIDIA driver" in r.stderr
    assert "vllm" not in root.ids("passwd") and not (root / D.VLLM_ETC_DIR).exists()  # checks before changes


def test_bootstrap_fails_clearly_without_nvidia_smi(root):
    install_gpu_stubs(root)
    (root / "usr/local/bin/nvidia-smi").unlink()
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("docker"), "gpu-a"), 0o700)
    r = root.bootstrap()
    assert r.returncode != 0
    assert "nvidia-smi not found on host gpu-a: install the NVIDIA driver" in r.stderr


def test_bootstrap_fails_when_fewer_gpus_than_configured(root):
    install_gpu_stubs(root, gpus=1)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("docker", gpu_count=2), "gpu-a"), 0o700)
    r = root.bootstrap()
    assert r.returncode != 0
    assert "host gpu-a: nvidia-smi -L lists 1 GPU(s) but hosts[0].gpuCount is 2" in r.stderr


def test_bootstrap_fails_without_container_toolkit_on_docker_runtime(root):
    install_gpu_stubs(root, toolkit=False)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("docker"), "gpu-a"), 0o700)
    r = root.bootstrap()
    assert r.returncode != 0
    assert re.search(r"host gpu-a \(hostRuntime docker\): the NVIDIA Container Toolkit is missing", r.stderr), r.stderr
    assert "nvidia-ctk runtime" in r.stderr
    assert "vllm" not in root.ids("passwd")
    # the nvidia runtime registered in docker is enough
    root.put("usr/local/bin/docker", STUB_DOCKER % {"nvidia_runtime": ',"nvidia":{"path":"nvidia-container-runtime"}'})
    ok = root.bootstrap()
    assert ok.returncode == 0, ok.stderr
    assert "ok: docker has the nvidia runtime" in ok.stdout


def test_bootstrap_twice_systemd_runtime(root):
    install_gpu_stubs(root)
    root.put("usr/local/bin/systemctl", STUB_SYSTEMCTL)
    root.put("usr/local/bin/curl", STUB_CURL)
    root.put(
        "root/bootstrap.sh",
        H.render_bootstrap_script(make_cfg("systemd"), "gpu-a", docker_bin="/usr/local/bin/docker"),
        0o700,
    )
    first = root.bootstrap_from_stdin()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"vLLM is not installed at {D.VLLM_BIN}" in first.stderr  # a warning, not a failure
    unit = f"{D.SYSTEMD_UNIT_DIR}/{D.DCGM_EXPORTER_CONTAINER}.service"
    assert root.owner_mode(unit) == ("root", "root", 0o644)
    assert "ExecStart=/usr/local/bin/docker run --rm --name dcgm-exporter --gpus all" in (root / unit).read_text()
    calls = (root / "var/lib/stub-systemd/calls.log").read_text().splitlines()
    assert calls == [
        "systemctl daemon-reload",
        "systemctl enable dcgm-exporter.service",
        "systemctl restart dcgm-exporter.service",
    ]
    before = snapshot(root, [unit, D.VLLM_ETC_DIR, D.VLLM_WEIGHTS_DIR, "etc/passwd"])
    second = root.bootstrap()
    assert second.returncode == 0, second.stdout + second.stderr
    assert H.NOTHING_CHANGED in second.stdout and not CHANGED.search(second.stdout), second.stdout
    assert snapshot(root, [unit, D.VLLM_ETC_DIR, D.VLLM_WEIGHTS_DIR, "etc/passwd"]) == before
    calls = (root / "var/lib/stub-systemd/calls.log").read_text().splitlines()[3:]
    assert calls == [
        "systemctl is-enabled --quiet dcgm-exporter.service",
        "systemctl is-active --quiet dcgm-exporter.service",
    ]


def test_bootstrap_systemd_runtime_needs_curl(root):
    install_gpu_stubs(root)
    root.put("root/bootstrap.sh", H.render_bootstrap_script(make_cfg("systemd"), "gpu-a"), 0o700)
    r = root.bootstrap()
    assert r.returncode != 0 and "curl not found on host gpu-a" in r.stderr
