"""Weights fetched once: the pre-fetch step and the local directory vLLM then loads.

Without it every replica downloads the model itself on its first start (`vllm serve <hub id>`).
Instead, one step per host (SSH hosts) or per cluster (a Kubernetes Job writing into the weights
PVC) runs `hf download <repo> --revision <rev> --local-dir <dir>` before any vLLM replica of the
model starts, and vLLM is started with that directory as its model (`--served-model-name` keeps
the route name clients use).

* The directory is `<weights dir>/<org>--<name>/<revision>` (`local_dir`): one per model and
  revision, so a new revision is fetched beside the old one and never mixes with it. Hub repo ids
  never contain `--` (huggingface_hub `validate_repo_id`), so `repo_of_path` maps a directory back
  to its repo id (the policy pack reads the model's architecture from it).
* Resumable: `hf download --local-dir` keeps per-file metadata under `<dir>/.cache/huggingface/`,
  skips files already complete and resumes partial ones. A marker (`MARKER_NAME`, holding
  `<repo>@<revision>`) is written only after the download succeeded and `config.json` is there;
  with the marker present a run exits at once without starting a download (the Hub is not even
  asked).
* The token: `HF_TOKEN` from the environment only (systemd `EnvironmentFile=` of the 0600 model
  env file, docker `--env-file` of the same file, the Job's `secretKeyRef` on the model Secret);
  never argv. `hf` reads it from there itself.

`fetch_of(spec)` is the one place these names and paths are derived; the deployment model, the
renderers and the components all read them from there. Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import defaults as D
from .. import quoting
from .vllm_args import ENV_HF_TOKEN, RenderError

if TYPE_CHECKING:
    from ..config import ModelSpec

MARKER_NAME = ".vllm-stack-complete"
NAME_PREFIX = "vllm-weights-"  # systemd oneshot unit stem, pre-fetch container, Kubernetes Job
SCRIPT_PREFIX = "vllm-fetch-weights-"
_SEP = "--"


@dataclass(frozen=True)
class WeightsFetch:
    """The pre-fetch of one model's weights (the same on every host and in the cluster)."""

    model: str  # served model name
    repo: str  # Hub repo id
    revision: str
    path: str  # the local directory vLLM loads (its model argument)
    marker: str  # written after a complete download
    name: str  # vllm-weights-<model>: unit stem, container name, Job name
    script: str  # absolute path of the fetch script on a host

    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    @property
    def unit_path(self) -> str:
        return f"{D.SYSTEMD_UNIT_DIR}/{self.unit}"


def local_dir(repo: str, revision: str, root: str = D.VLLM_WEIGHTS_DIR) -> str:
    """`<root>/<org>--<name>/<revision>` (a repo id without an org: `<root>/<name>/<revision>`)."""
    if _SEP in repo or repo.count("/") > 1 or not repo or repo.startswith("/"):
        raise RenderError(f"{repo!r} is not a Hub repo id (org/name without `--`)")
    if not revision or "/" in revision or revision in (".", ".."):
        raise RenderError(f"revision {revision!r} must be one path segment")
    return posixpath.join(root, repo.replace("/", _SEP), revision)


def repo_of_path(path: str, root: str = D.VLLM_WEIGHTS_DIR) -> str | None:
    """The Hub repo id of a `local_dir` under `root` (`<root>/<org>--<name>/<revision>`), else None."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix) :].rstrip("/").split("/")
    if len(parts) != 2 or not all(parts) or parts[0].count(_SEP) > 1:
        return None
    return parts[0].replace(_SEP, "/")


def fetch_of(spec: ModelSpec, root: str = D.VLLM_WEIGHTS_DIR) -> WeightsFetch | None:
    """The model's pre-fetch, or None when `model` is already a local path (nothing to fetch)."""
    if spec.model.startswith("/"):
        return None
    revision = spec.revision or D.WEIGHTS_DEFAULT_REVISION
    path = local_dir(spec.model, revision, root)
    return WeightsFetch(
        model=spec.name,
        repo=spec.model,
        revision=revision,
        path=path,
        marker=posixpath.join(path, MARKER_NAME),
        name=f"{NAME_PREFIX}{spec.name}",
        script=f"{D.HOST_BIN_DIR}/{SCRIPT_PREFIX}{spec.name}",
    )


def model_path(spec: ModelSpec) -> str:
    """What vLLM loads: the pre-fetched directory, or the configured path."""
    w = fetch_of(spec)
    return spec.model if w is None else w.path


def download_argv(w: WeightsFetch, *, hf_bin: str) -> list[str]:
    """The download command (no token: `hf` reads HF_TOKEN from the environment)."""
    argv = [hf_bin, "download", w.repo, "--revision", w.revision, "--local-dir", w.path]
    for pattern in D.WEIGHTS_EXCLUDE:
        argv += ["--exclude", pattern]
    return argv


_SCRIPT_BODY = r"""
log() { echo "$ME: $*" >&2; }

if [[ -f "$MARKER" ]]; then
    log "$REPO@$REVISION is complete in $TARGET ($(basename "$MARKER") present); nothing to download"
    exit 0
fi
if [[ -z "${HF_TOKEN-}" ]]; then
    log "note: HF_TOKEN is not set (fine for public models; gated ones answer 401)"
fi
mkdir -p -- "$TARGET"
log "downloading $REPO@$REVISION into $TARGET (files already complete are skipped, partial ones resumed)"
"${DOWNLOAD[@]}"
if [[ ! -f "$TARGET/config.json" ]]; then
    log "the download finished but $TARGET/config.json is missing: not marking it complete"
    exit 1
fi
printf '%s@%s\n' "$REPO" "$REVISION" >"$MARKER.tmp"
mv -f -- "$MARKER.tmp" "$MARKER"
log "complete: $TARGET"
"""


def render_fetch_script(w: WeightsFetch, *, hf_bin: str) -> str:
    """bash (shellcheck-clean): skip when the marker exists, else download, check, mark complete."""
    q = quoting.sh
    argv = "".join(f"    {q(a)}\n" for a in download_argv(w, hf_bin=hf_bin))
    return (
        "#!/bin/bash\n"
        f"# {SCRIPT_PREFIX}{w.model}: rendered by vllm-stack, do not edit. Pre-fetches {w.repo}@{w.revision}\n"
        f"# once into {w.path}; a rerun with {MARKER_NAME} present is a no-op.\n"
        f"# No secret here: `hf` reads {ENV_HF_TOKEN} from the environment.\n"
        "set -euo pipefail\n"
        "umask 022\n"
        "export HF_HUB_DISABLE_PROGRESS_BARS=1\n\n"
        f"readonly ME={q(SCRIPT_PREFIX + w.model)}\n"
        f"readonly REPO={q(w.repo)}\n"
        f"readonly REVISION={q(w.revision)}\n"
        f"readonly TARGET={q(w.path)}\n"
        f"readonly MARKER={q(w.marker)}\n"
        "readonly -a DOWNLOAD=(\n"
        f"{argv}"
        ")\n" + _SCRIPT_BODY
    )
