"""The command strings pulumi-command runs on a host over SSH, built word by word.

Every command goes through `quoting.sh_join`, so a name or path can never end a command or
start another, whatever a caller passes; for the validated names the stack uses, the quoted
form is the plain word (`sudo systemctl restart vllm-llama-8b.service`), which is what the
policies and runbooks read.
"""

from __future__ import annotations

from .. import defaults as D
from ..quoting import sh_join
from .drain import DRAIN_SCRIPT_NAME

SECRET_WRITER_PATH = f"{D.HOST_SBIN_DIR}/{D.SECRET_WRITER_NAME}"
DRAIN_SCRIPT_PATH = f"{D.HOST_SBIN_DIR}/{DRAIN_SCRIPT_NAME}"


def _and(*commands: list[str]) -> str:
    return " && ".join(sh_join(c) for c in commands)


def write_secrets(model: str) -> str:
    """Runs the secret writer; the KEY=value lines arrive on the command's stdin, never argv."""
    return sh_join(["sudo", SECRET_WRITER_PATH, model])


def remove_file(path: str) -> str:
    return sh_join(["sudo", "rm", "-f", path])


def install_file(path: str, *, mode: int, owner: str, group: str, secret: bool) -> str:
    """`install` from stdin; a secret file is created under umask 077 so it is never readable."""
    install = ["install", "-D", "-m", f"{mode:o}", "-o", owner, "-g", group, "/dev/stdin", path]
    if secret:
        return sh_join(["sudo", "sh", "-c", f"umask 077; {sh_join(install)}"])
    return sh_join(["sudo", *install])


def start_unit(unit: str) -> str:
    return _and(
        ["sudo", "systemctl", "daemon-reload"],
        ["sudo", "systemctl", "enable", unit],
        ["sudo", "systemctl", "restart", unit],
    )


def stop_unit(unit: str) -> str:
    return sh_join(["sudo", "systemctl", "disable", "--now", unit])


def drain_hook(model: str, hostport: str, drain_seconds: int) -> str:
    """Run on the front before a spot replica is deleted (a no-op until the front has the script)."""
    return (
        f"if [ -x {sh_join([DRAIN_SCRIPT_PATH])} ]; then "
        f"{sh_join(['sudo', DRAIN_SCRIPT_PATH, model, hostport, str(drain_seconds)])}; fi"
    )


def install_router(install_dir: str, version: str) -> str:
    """The pinned vllm-router in its own venv on the front host (idempotent: pip keeps an installed pin)."""
    return _and(
        ["sudo", "python3", "-m", "venv", install_dir],
        [
            "sudo",
            f"{install_dir}/bin/python",
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            f"{D.ROUTER_PACKAGE}=={version}",
        ],
    )


def install_nginx_exporter() -> str:
    """Debian's nginx exporter on a systemd front host, with the package's own unit (all interfaces,
    :9113) disabled: the stack's unit (`front_monitoring.render_exporter_unit`) binds where it should."""
    pkg = D.NGINX_EXPORTER_DEBIAN_PACKAGE
    return (
        f"(command -v {sh_join([D.NGINX_EXPORTER_DEBIAN_BIN])} >/dev/null || "
        f"({_and(['sudo', 'apt-get', 'update'], ['sudo', 'apt-get', 'install', '-y', '--no-install-recommends', pkg])}))"
        f" && {sh_join(['sudo', 'systemctl', 'disable', '--now', f'{pkg}.service'])}"
    )


def router_drain_hook(admin_url: str, worker_url: str, drain_seconds: int) -> str:
    """Run on the front host before a spot replica is deleted: the replica leaves the router's worker
    set first (no new request reaches it), then its in-flight requests get `drain_seconds`."""
    return _and(
        [D.CURL_BIN, "-fsS", "-X", "POST", f"{admin_url}/remove_worker?url={worker_url}"],
        ["sleep", str(drain_seconds)],
    )


def fetch_weights_unit(unit: str) -> str:
    """systemd runtime: the model's pre-fetch as its oneshot unit; `start` returns when it exited
    (at once when the weights are complete), fails when it failed."""
    return _and(["sudo", "systemctl", "daemon-reload"], ["sudo", "systemctl", "start", unit])


def fetch_weights_container(
    *, name: str, image: str, script: str, weights_dir: str, env_file: str, env: dict[str, str]
) -> str:
    """docker runtime: the fetch script inside the model's vLLM image (it ships `hf`), the weights
    dir mounted, HF_TOKEN from the model's 0600 env file (`--env-file`: never argv); `docker run`
    returns when the script exited. A container left by an interrupted run is removed first."""
    run = ["sudo", D.DOCKER_BIN, "run", "--rm", "--name", name, "--env-file", env_file]
    for k in sorted(env):
        run += ["-e", f"{k}={env[k]}"]
    run += ["-v", f"{weights_dir}:{weights_dir}", "-v", f"{script}:{script}:ro", "--entrypoint", "/bin/bash"]
    run += [image, script]
    return f"{sh_join(['sudo', D.DOCKER_BIN, 'rm', '-f', name])} >/dev/null 2>&1; {sh_join(run)}"
