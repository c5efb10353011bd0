"""The drain procedure of the nginx front, rendered as a POSIX shell script.

Run on the front host: `vllm-drain MODEL ADDRESS:PORT [DRAIN_SECONDS]` marks the backend
`down` in the model's upstream file, checks and gracefully reloads nginx, waits for
in-flight requests, then runs `$STOP_CMD`; `vllm-drain --undrain MODEL ADDRESS:PORT` puts it
back. See the header of templates/nginx_drain.sh.j2 for the exit codes.
"""

from __future__ import annotations

from typing import Sequence

from .. import defaults as D
from .. import quoting
from .nginx import FrontRenderError, NginxPaths, _check_path, _env

DRAIN_SCRIPT_NAME = "vllm-drain"


def render_drain_script(
    paths: NginxPaths = NginxPaths(),
    *,
    nginx_cmd: Sequence[str] = ("nginx",),
    upstream_dir: str | None = None,
    drain_seconds: int = D.DRAIN_SECONDS_DEFAULT,
    lock_wait_seconds: int = D.DRAIN_SECONDS_MAX,
) -> str:
    """The script text (install it 0755 as `vllm-drain` on the front host).

    `nginx_cmd` is how to reach nginx: `("nginx",)` on a host install, or e.g.
    `("docker", "exec", "vllm-front", "nginx")`; the script adds `-p paths.prefix -c paths.conf`.
    `upstream_dir` is where the script finds `<model>.conf` on the host running it (default
    `paths.upstream_dir`; differs when nginx runs in a container with a bind mount).
    """
    if not nginx_cmd or any(not isinstance(a, str) or not a for a in nginx_cmd):
        raise FrontRenderError("nginx_cmd must be a non-empty list of words")
    for name in ("prefix", "conf", "upstream_dir"):
        _check_path(getattr(paths, name), f"paths.{name}")
    udir = _check_path(upstream_dir or paths.upstream_dir, "upstream_dir")
    if isinstance(drain_seconds, bool) or not isinstance(drain_seconds, int) or drain_seconds < 0:
        raise FrontRenderError(f"drain_seconds {drain_seconds!r} must be a whole number >= 0")
    if isinstance(lock_wait_seconds, bool) or not isinstance(lock_wait_seconds, int) or lock_wait_seconds < 0:
        raise FrontRenderError(f"lock_wait_seconds {lock_wait_seconds!r} must be a whole number >= 0")
    argv = [*nginx_cmd, "-p", paths.prefix.rstrip("/") + "/", "-c", paths.conf]
    env = _env()
    env.filters["q"] = quoting.sh
    return env.get_template("nginx_drain.sh.j2").render(
        D=D,
        upstream_dir=udir,
        drain_seconds=drain_seconds,
        lock_wait_seconds=lock_wait_seconds,
        nginx_argv=quoting.sh_join(argv),
    )


__all__ = ["DRAIN_SCRIPT_NAME", "render_drain_script"]
