"""The rendered weights pre-fetch script, run for real (bash) against a stub `hf`.

The Hub is unreachable here, so the download binary is a stub that records its argv and whether
HF_TOKEN reached its environment, and (by mode) writes the files, fails, or writes nothing. What
is real: the rendered script, its marker logic, bash. Plus shellcheck on the script and
systemd-analyze verify on the oneshot unit.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import require, shellcheck, systemd_verify
from vllm_stack.loader import parse_config
from vllm_stack.render import systemd as S
from vllm_stack.render import weights as W

TOKEN = "hf_stubTOKENvalue0123456789abcd"
STUB = r"""#!/bin/bash
# stub hf: records argv and whether HF_TOKEN is set; STUB_MODE=ok|fail|empty
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")" >>"$STUB_LOG"
printf 'token=%s\n' "${HF_TOKEN:+set}" >>"$STUB_LOG"
case "$STUB_MODE" in
    fail) echo "stub: 503 from the Hub" >&2; exit 2 ;;
    empty) exit 0 ;;
esac
dir=""
while (( $# )); do [[ "$1" == --local-dir ]] && dir=$2; shift; done
mkdir -p "$dir"
echo '{}' >"$dir/config.json"
echo weights >"$dir/model.safetensors"
"""


def _spec():
    cfg = parse_config(
        {
            "environment": "dev",
            "platform": "kubernetes",
            "models": [{"name": "llama", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S", "revision": "v1"}],
        },
        secrets=("apiKey", "hfToken"),
    )
    return cfg.models[0]


@pytest.fixture
def env(tmp_path):
    stub = tmp_path / "bin" / "hf"
    stub.parent.mkdir()
    stub.write_text(STUB)
    stub.chmod(0o755)
    w = W.fetch_of(_spec(), root=str(tmp_path / "models"))
    assert w is not None
    script = tmp_path / "fetch"
    script.write_text(W.render_fetch_script(w, hf_bin=str(stub)))
    script.chmod(0o755)
    log = tmp_path / "stub.log"

    def run(mode="ok"):
        e = {"PATH": os.environ["PATH"], "STUB_LOG": str(log), "STUB_MODE": mode, "HF_TOKEN": TOKEN}
        return subprocess.run([str(script)], env=e, capture_output=True, text=True, timeout=30)

    return w, run, log, stub


def _calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("[")]


def test_missing_marker_downloads_then_marks_and_a_rerun_does_not(env):
    w, run, log, stub = env
    first = run()
    assert first.returncode == 0, first.stderr
    assert _calls(log) == [
        [
            "download",
            "meta-llama/Llama-3.1-8B-Instruct",
            "--revision",
            "v1",
            "--local-dir",
            w.path,
            "--exclude",
            "original/*",
        ]
    ]
    assert "token=set" in log.read_text()  # HF_TOKEN reached `hf` through the environment ...
    assert TOKEN not in log.read_text() and TOKEN not in first.stderr + first.stdout  # ... never argv/output
    assert Path(w.marker).read_text() == "meta-llama/Llama-3.1-8B-Instruct@v1\n"
    assert "downloading meta-llama/Llama-3.1-8B-Instruct@v1" in first.stderr
    second = run()
    assert second.returncode == 0
    assert len(_calls(log)) == 1  # no download attempted with the marker there
    assert "nothing to download" in second.stderr


def test_a_prepopulated_directory_with_the_marker_is_never_downloaded(env):
    w, run, log, stub = env
    Path(w.path).mkdir(parents=True)
    Path(w.path, "config.json").write_text("{}")
    Path(w.marker).write_text("meta-llama/Llama-3.1-8B-Instruct@v1\n")
    stub.write_text('#!/bin/sh\necho called >>"$STUB_LOG"; exit 99\n')
    result = run()
    assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_a_partial_directory_without_the_marker_is_resumed_by_hf(env):
    w, run, log, stub = env
    Path(w.path).mkdir(parents=True)
    Path(w.path, "model.safetensors").write_text("half")  # an interrupted earlier run
    result = run()
    assert result.returncode == 0, result.stderr
    assert len(_calls(log)) == 1 and _calls(log)[0][:2] == ["download", "meta-llama/Llama-3.1-8B-Instruct"]
    assert Path(w.marker).exists()


@pytest.mark.parametrize("mode,rc", [("fail", 2), ("empty", 1)])
def test_a_failed_or_empty_download_leaves_no_marker(env, mode, rc):
    w, run, log, stub = env
    result = run(mode)
    assert result.returncode == rc, result.stderr
    assert not Path(w.marker).exists() and not Path(w.marker + ".tmp").exists()
    assert run().returncode == 0 and Path(w.marker).exists()  # the next run retries and completes
    assert len(_calls(log)) == 2


def test_shellcheck_fetch_script(tmp_path):
    require("shellcheck")
    w = W.fetch_of(_spec())
    assert w is not None
    for hf in ("/usr/local/bin/hf", "hf"):
        p = tmp_path / "vllm-fetch-weights-llama"
        p.write_text(W.render_fetch_script(w, hf_bin=hf))
        result = shellcheck(p)
        assert result.ok and result.output.strip() == "", str(result)


def test_systemd_analyze_verify_weights_unit(tmp_path):
    require("systemd-analyze")
    spec = _spec()
    w = W.fetch_of(spec)
    assert w is not None
    script = tmp_path / w.script.rsplit("/", 1)[-1]
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    unit = tmp_path / w.unit
    unit.write_text(S.render_weights_unit(spec, bin_dir=str(tmp_path)))
    result = systemd_verify(unit)
    assert result.ok, str(result)
