"""Host renderers (docker platform): systemd unit, start wrapper, bootstrap, secret writer.

Units are parsed (sections, repeated keys) and compared key by key; scripts are checked for
what they must and must never contain. Behaviour (shellcheck, systemd-analyze, running the
wrapper and the bootstrap for real) lives in tests/artifacts.
"""

from __future__ import annotations

import configparser
import re
import shlex

import pytest

from vllm_stack import defaults as D
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.placement import Replica, place
from vllm_stack.render import host_scripts as H
from vllm_stack.render import systemd as S
from vllm_stack.render.vllm_args import SECRET_ENV, RenderError, render_secret_env_file, serve_argv

CANARY_KEY = "sk-canary-7f3a9c1e5b"
CANARY_HF = "hf_canaryQ8zW2xY4"


def cfg_for(
    runtime: str = "systemd",
    *,
    front_host: str | None = None,
    tp: int = 1,
    on_demand: int = 2,
    drain: int = 25,
    gpu_count: int = 4,
    second_host: bool = False,
    secrets=("apiKey", "hfToken"),
):
    hosts = [{"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": gpu_count}]
    if second_host:
        hosts.append({"name": "edge", "address": "10.0.0.9", "gpu": "L40S", "gpuCount": 1})
    raw = {
        "environment": "dev",
        "platform": "docker",
        "hostRuntime": runtime,
        "hosts": hosts,
        "models": [
            {
                "name": "llama",
                "model": "meta-llama/Llama-3.1-8B",
                "gpu": "L40S",
                "tensorParallel": tp,
                "pool": {"onDemand": on_demand, "drainSeconds": drain},
            },
            {"name": "qwen", "model": "Qwen/Qwen2.5-7B", "gpu": "L40S", "pool": {"onDemand": 1}},
        ],
    }
    if front_host:
        raw["front"] = {"host": front_host}
    return parse_config(raw, secrets=secrets)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd unit syntax: [Section], `Key=value`, repeated keys kept in order, # and ; comments."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            assert line[1:-1] not in sections, f"section {line} twice"
            current = sections[line[1:-1]] = []
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit line: {raw!r}"
        current.append((key.strip(), value.strip()))
    # configparser agrees on the structure (it keeps the last of repeated keys).
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    cp.optionxform = str
    cp.read_string(text)
    assert cp.sections() == list(sections)
    return sections


def values(unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit[section] if k == key]


def one(unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: {found}"
    return found[0]


def unit_env(unit) -> dict[str, str]:
    env = {}
    for value in values(unit, "Service", "Environment"):
        for word in shlex.split(value):
            k, _, v = word.partition("=")
            assert k not in env, f"Environment {k} twice"
            env[k] = v
    return env


def replica_of(cfg, model: str, index: int) -> Replica:
    return place(cfg)[model][index]


# --- unit --------------------------------------------------------------------------------


def test_unit_exact_keys_and_values():
    cfg = cfg_for(drain=25)
    spec = cfg.models[0]
    r = replica_of(cfg, "llama", 0)
    unit = parse_unit(S.render_systemd_unit(cfg, spec, r))
    assert list(unit) == ["Unit", "Service", "Install"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "all",
        "User": D.VLLM_USER,
        "EnvironmentFile": f"{D.VLLM_ETC_DIR}/llama.env",
        "ExecStart": f"{D.HOST_BIN_DIR}/vllm-start-llama",
        "TimeoutStartSec": str(D.SYSTEMD_TIMEOUT_START_SEC),  # an 8B: its startup budget is the 900 s floor
        "Restart": "always",
        "RestartSec": str(D.SYSTEMD_RESTART_SEC),
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ReadWritePaths": D.VLLM_WEIGHTS_DIR,
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    stop = int(one(unit, "Service", "TimeoutStopSec"))
    assert stop >= spec.pool.drain_seconds
    assert stop == spec.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    # after the network and the model's weights pre-fetch (a oneshot it Requires)
    assert values(unit, "Unit", "After") == ["network-online.target", "vllm-weights-llama.service"]
    assert one(unit, "Unit", "Requires") == "vllm-weights-llama.service"


def test_unit_environment_is_public_only_and_pins_the_replica_gpus():
    cfg = cfg_for(tp=2, on_demand=2, gpu_count=5)
    spec = cfg.models[0]
    r0, r1 = place(cfg)["llama"]
    env0 = unit_env(parse_unit(S.render_systemd_unit(cfg, spec, r0)))
    env1 = unit_env(parse_unit(S.render_systemd_unit(cfg, spec, r1)))
    assert env0["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, r0.gpu_indices)) == "0,1"
    assert env1["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, r1.gpu_indices)) == "2,3"
    assert env0["HF_HOME"] == D.VLLM_WEIGHTS_DIR
    assert not set(env0) & set(SECRET_ENV)
    assert set(env0) == {
        "CUDA_VISIBLE_DEVICES",
        "HF_HOME",
        "VLLM_NO_USAGE_STATS",
        "VLLM_WORKER_MULTIPROC_METHOD",
        "HOME",
        "XDG_CACHE_HOME",
    }  # Llama is gated: no HF_HUB_DISABLE_TELEMETRY
    qwen = cfg.models[1]
    env_q = unit_env(parse_unit(S.render_systemd_unit(cfg, qwen, place(cfg)["qwen"][0])))
    assert env_q["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_unit_and_wrapper_names_per_replica():
    cfg = cfg_for(on_demand=2)
    spec = cfg.models[0]
    r0, r1 = place(cfg)["llama"]
    assert (S.unit_name(spec, r0), S.unit_name(spec, r1)) == ("vllm-llama.service", "vllm-llama-1.service")
    assert S.wrapper_path(spec, r1) == f"{D.HOST_BIN_DIR}/vllm-start-llama-1"
    unit1 = parse_unit(S.render_systemd_unit(cfg, spec, r1))
    assert one(unit1, "Service", "ExecStart") == f"{D.HOST_BIN_DIR}/vllm-start-llama-1"
    assert one(unit1, "Service", "EnvironmentFile") == f"{D.VLLM_ETC_DIR}/llama.env"  # one env file per model
    assert one(unit1, "Service", "SyslogIdentifier") == "vllm-llama-1"


def test_unit_refuses_a_replica_of_another_model_or_without_gpus():
    cfg = cfg_for()
    spec = cfg.models[0]
    with pytest.raises(RenderError):
        S.render_systemd_unit(cfg, spec, place(cfg)["qwen"][0])
    with pytest.raises(RenderError):
        S.render_systemd_unit(cfg, spec, Replica("llama", "onDemand", 0))


def test_env_assignment_quotes_and_escapes():
    assert S.env_assignment("A", "plain") == "Environment=A=plain"
    assert S.env_assignment("A", "has space") == 'Environment="A=has space"'
    assert S.env_assignment("A", "50%") == "Environment=A=50%%"
    with pytest.raises(RenderError):
        S.env_assignment("A", "two\nlines")


# --- wrapper ------------------------------------------------------------------------------


def serve_args_block(text: str) -> list[str]:
    m = re.search(r"^readonly -a SERVE_ARGS=\(\n(.*?)^\)\n", text, re.M | re.S)
    assert m, "SERVE_ARGS array not found"
    return shlex.split(m.group(1))


def test_wrapper_argv_comes_from_serve_argv():
    cfg = cfg_for()
    spec = cfg.models[0]
    r = replica_of(cfg, "llama", 1)
    text = S.render_start_wrapper(cfg, spec, r)
    local = f"{D.VLLM_WEIGHTS_DIR}/meta-llama--Llama-3.1-8B/main"
    assert serve_args_block(text) == serve_argv(spec, host="127.0.0.1", port=r.port, model_path=local)
    assert serve_args_block(text)[:3] == [local, "--served-model-name", "llama"]
    assert f"readonly VLLM={D.VLLM_BIN}\n" in text
    assert f"readonly CURL={D.CURL_BIN}\n" in text
    assert f"readonly HEALTH_URL=http://127.0.0.1:{r.port}{D.HEALTH_PATH}\n" in text
    assert f"readonly POLL_SECONDS={D.HEALTH_POLL_SECONDS}\n" in text
    assert '"$VLLM" serve "${SERVE_ARGS[@]}" &' in text


def test_wrapper_notifies_only_after_the_health_loop():
    cfg = cfg_for()
    text = S.render_start_wrapper(cfg, cfg.models[0], replica_of(cfg, "llama", 0))
    lines = text.splitlines()
    notify = [i for i, line in enumerate(lines) if re.match(r"\s*(if !? *)?systemd-notify\b", line)]
    # READY once, then WATCHDOG=1 pings (hosts heal) only in the serving loop, after READY
    assert len(notify) == 2 and "--ready" in lines[notify[0]]
    assert lines[notify[1]].strip() == "systemd-notify WATCHDOG=1 || true"
    loop_start = lines.index("while ! healthy; do")
    loop_end = next(i for i in range(loop_start, len(lines)) if lines[i] == "done")
    start = next(i for i, line in enumerate(lines) if line.startswith('"$VLLM" serve'))
    assert start < loop_start < loop_end < notify[0] < notify[1]
    # the watchdog is fed only when healthy() (/health 200) said so, and never once stopping
    assert lines[notify[1] - 1].strip() == "if healthy; then"
    serve_loop = next(i for i in range(notify[0], len(lines)) if lines[i].startswith("while (( ! stopping ))"))
    assert serve_loop < notify[1]
    # healthy() is the /health check with curl, 200 only
    assert '[[ "$code" == 200 ]]' in text and '"$CURL"' in text
    # the loop bails out with exit 1 when vLLM died while loading
    assert "exit 1" in "\n".join(lines[loop_start:loop_end])
    # SIGTERM is forwarded to vLLM, and the wrapper waits for it
    assert "trap 'on_signal TERM' TERM" in text and 'kill -s "$1" "$vllm_pid"' in text
    assert 'wait "$vllm_pid"' in text
    assert not any(line.lstrip().startswith("exec ") for line in lines)


def test_wrapper_binds_loopback_only_when_front_and_prometheus_are_local():
    local = cfg_for(second_host=True, front_host="gpu-a")
    r = replica_of(local, "llama", 0)
    assert S.vllm_bind_host(local, r) == "127.0.0.1"
    remote = cfg_for(second_host=True, front_host="edge")
    r = replica_of(remote, "llama", 0)
    assert S.vllm_bind_host(remote, r) == "10.0.0.5"
    text = S.render_start_wrapper(remote, remote.models[0], r)
    assert f"readonly HEALTH_URL=http://10.0.0.5:{r.port}/health\n" in text
    assert serve_args_block(text)[serve_args_block(text).index("--host") + 1] == "10.0.0.5"
    assert S.health_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/health"
    assert S.health_url("fd00::5", 8000) == "http://[fd00::5]:8000/health"


def test_wrapper_paths_are_parameters():
    cfg = cfg_for()
    text = S.render_start_wrapper(
        cfg,
        cfg.models[0],
        replica_of(cfg, "llama", 0),
        vllm_bin="/tmp/x y/vllm",
        curl_bin="/opt/curl",
        poll_seconds=0.2,
    )
    assert "readonly VLLM='/tmp/x y/vllm'\n" in text and "readonly CURL=/opt/curl\n" in text
    assert "readonly POLL_SECONDS=0.2\n" in text


# --- no secrets anywhere -------------------------------------------------------------------


def all_host_texts(cfg) -> dict[str, str]:
    out = {}
    for host in cfg.hosts:
        for path, f in H.render_host_files(cfg, host.name, place(cfg)).items():
            out[f"{host.name}:{path}"] = f.content
    return out


@pytest.mark.parametrize("runtime", ["docker", "systemd"])
def test_no_secret_value_and_no_api_key_flag_in_any_host_file(runtime, monkeypatch):
    # Distinctive secrets everywhere a careless renderer could pick them up: the process
    # environment, the config's secret set, the env file the deployer pipes to the writer.
    monkeypatch.setenv("VLLM_API_KEY", CANARY_KEY)
    monkeypatch.setenv("HF_TOKEN", CANARY_HF)
    cfg = cfg_for(runtime, second_host=True)
    env_file = render_secret_env_file({"VLLM_API_KEY": CANARY_KEY, "HF_TOKEN": CANARY_HF})
    assert CANARY_KEY in env_file  # (the only place the value belongs: the writer's stdin)
    texts = all_host_texts(cfg)
    assert texts
    if runtime == "systemd":
        assert any(p.endswith(".service") for p in texts) and any("vllm-start-" in p for p in texts)
    for name, text in texts.items():
        assert CANARY_KEY not in text and CANARY_HF not in text, name
        assert "--api-key" not in text and "--hf-token" not in text, name
        assert not re.search(r"^\s*Environment=.*(VLLM_API_KEY|HF_TOKEN)", text, re.M), name


def test_api_key_in_extra_args_never_reaches_a_wrapper():
    with pytest.raises(ConfigError):
        parse_config(
            {
                "environment": "dev",
                "platform": "docker",
                "hosts": [{"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S"}],
                "models": [
                    {
                        "name": "llama",
                        "model": "meta-llama/Llama-3.1-8B",
                        "gpu": "L40S",
                        "extraArgs": ["--api-key", CANARY_KEY],
                    }
                ],
            }
        )
    cfg = cfg_for()
    bad = cfg.models[0].model_copy(update={"extra_args": ("--api-key", CANARY_KEY)})
    with pytest.raises(RenderError):
        S.render_start_wrapper(cfg, bad, replica_of(cfg, "llama", 0))


# --- secret writer -------------------------------------------------------------------------


def test_secret_writer_contract():
    text = H.render_secret_writer_script()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "set +o xtrace" in lines and "set -euo pipefail" in lines and "umask 077" in lines
    assert not re.search(r"set -[a-z]*x|set -o xtrace|bash -x", text)
    assert f"readonly FILE_MODE={D.SECRET_FILE_MODE:o}\n" in text and D.SECRET_FILE_MODE == 0o600
    assert 'chmod "$FILE_MODE" "$tmp"' in text and 'chown 0:0 "$tmp"' in text
    assert f"readonly ETC_DIR={D.VLLM_ETC_DIR}\n" in text
    assert 'tmp="$(mktemp "$ETC_DIR/' in text  # same directory: mv is an atomic rename
    assert 'mv -f -- "$tmp" "$target"' in text
    assert '| cmp -s - "$target"' in text and "unchanged" in text
    # the content is only ever assigned, or printed by the printf builtin into a pipe or the temp file
    uses = [line for line in lines if re.search(r"\$\{?content", line)]
    assert uses
    for line in uses:
        rest = line.replace("printf '%s' \"$content\"", "")
        if re.search(r"\$\{?content", rest):
            assert re.match(r"\s*(content=|\[\[ )", rest), line
    for line in lines:
        if re.match(r"\s*(echo|die)\b", line):
            assert "content" not in line, line
    # model names validated with the config's own pattern
    from vllm_stack.config import NAME_RE

    assert f"readonly NAME_RE='{NAME_RE}'\n" in text
    assert "VLLM_API_KEY|HF_TOKEN" in text


# --- bootstrap -----------------------------------------------------------------------------


def test_bootstrap_docker_runtime_contents():
    cfg = cfg_for("docker", gpu_count=4)
    text = H.render_bootstrap_script(cfg, "gpu-a")
    assert text.startswith("#!/bin/bash\n") and "\nset -euo pipefail\n" in text
    assert "readonly GPU_COUNT=4\n" in text and "readonly GPU_KEY='hosts[0].gpuCount'\n" in text
    assert "readonly RUNTIME=docker\n" in text
    assert "nvidia-smi -L" in text and "nvidia-ctk --version" in text and "{{json .Runtimes}}" in text
    assert "useradd" in text and "args=(--system --no-create-home --shell /usr/sbin/nologin)" in text
    assert f"readonly DCGM_IMAGE={D.DCGM_EXPORTER_IMAGE}\n" in text
    assert ":latest" not in D.DCGM_EXPORTER_IMAGE and ":" in D.DCGM_EXPORTER_IMAGE.rsplit("/", 1)[-1]
    assert f"readonly DCGM_PUBLISH=127.0.0.1:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}\n" in text
    assert 'docker run -d --restart always --name "$DCGM_NAME"' in text and "--gpus all" in text
    assert f"readonly DIR_MODE={D.VLLM_DIR_MODE:o}\n" in text and D.VLLM_DIR_MODE == 0o750
    assert 'ensure_dir "$ETC_DIR" root "$VLLM_USER" "$DIR_MODE"' in text
    assert 'ensure_dir "$WEIGHTS_DIR" "$VLLM_USER" "$VLLM_USER" "$DIR_MODE"' in text
    assert H.NOTHING_CHANGED in text
    # the secret writer ships inside the bootstrap, byte for byte
    assert H.render_secret_writer_script() in text
    assert "dcgm_unit_content()" not in text


def test_bootstrap_systemd_runtime_embeds_the_dcgm_unit():
    cfg = cfg_for("systemd")
    text = H.render_bootstrap_script(cfg, "gpu-a")
    assert "readonly RUNTIME=systemd\n" in text
    unit_text = S.render_dcgm_unit(publish=f"127.0.0.1:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}")
    assert unit_text in text
    unit = parse_unit(unit_text)
    run = shlex.split(one(unit, "Service", "ExecStart"))
    assert run[:2] == [D.DOCKER_BIN, "run"] and run[-1] == D.DCGM_EXPORTER_IMAGE
    assert run[run.index("-p") + 1] == f"127.0.0.1:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}"
    assert one(unit, "Service", "Restart") == "always"


def test_dcgm_publishes_on_the_host_address_when_prometheus_is_elsewhere():
    cfg = cfg_for("docker", second_host=True, front_host="edge")
    assert H.dcgm_bind(cfg, cfg.host("gpu-a")) == "10.0.0.5"
    assert H.dcgm_bind(cfg, cfg.host("edge")) == "127.0.0.1"
    text = H.render_bootstrap_script(cfg, "gpu-a")
    assert f"readonly DCGM_PUBLISH=10.0.0.5:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}\n" in text


def test_bootstrap_unknown_host():
    with pytest.raises(RenderError, match="nope"):
        H.render_bootstrap_script(cfg_for(), "nope")


# --- all files of a host ----------------------------------------------------------------------


def test_host_files_and_modes_systemd_runtime():
    cfg = cfg_for("systemd", on_demand=2, second_host=True)
    files = H.render_host_files(cfg, "gpu-a", place(cfg))
    assert {p: (f.mode, f.owner) for p, f in files.items()} == {
        H.BOOTSTRAP_PATH: (0o700, "root:root"),
        H.SECRET_WRITER_PATH: (0o755, "root:root"),
        "/etc/systemd/system/vllm-llama.service": (0o644, "root:root"),
        "/etc/systemd/system/vllm-llama-1.service": (0o644, "root:root"),
        "/etc/systemd/system/vllm-qwen.service": (0o644, "root:root"),
        "/usr/local/bin/vllm-start-llama": (0o755, "root:root"),
        "/usr/local/bin/vllm-start-llama-1": (0o755, "root:root"),
        "/usr/local/bin/vllm-start-qwen": (0o755, "root:root"),
    }
    assert all(f.path == p for p, f in files.items())
    assert not any(p.startswith(D.VLLM_ETC_DIR) for p in files)  # secrets only via the writer
    edge = H.render_host_files(cfg, "edge", place(cfg))
    assert set(edge) == {H.BOOTSTRAP_PATH, H.SECRET_WRITER_PATH}


def test_host_files_docker_runtime_have_no_units():
    cfg = cfg_for("docker")
    assert set(H.render_host_files(cfg, "gpu-a", place(cfg))) == {H.BOOTSTRAP_PATH, H.SECRET_WRITER_PATH}


def test_rendering_is_deterministic():
    a = all_host_texts(cfg_for("systemd", second_host=True))
    b = all_host_texts(cfg_for("systemd", second_host=True))
    assert a == b
