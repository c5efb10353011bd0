"""The weights pre-fetch renderers (render/weights.py): paths, names, the script, the unit, the Job."""

from __future__ import annotations

import pytest

from vllm_stack import defaults as D
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.render import host_commands as HC
from vllm_stack.render import k8s_model
from vllm_stack.render import systemd as S
from vllm_stack.render import weights as W
from vllm_stack.render.vllm_args import RenderError, serve_argv
from vllm_stack.startup import budget

ROOT = D.VLLM_WEIGHTS_DIR


def _cfg(platform="docker", **model):
    m = {"name": "llama", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S", **model}
    raw = {"environment": "dev", "platform": platform, "models": [m]}
    if platform == "docker":
        raw |= {
            "hostRuntime": "systemd",
            "hosts": [{"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": 1}],
        }
    return parse_config(raw, secrets=("apiKey", "hfToken"))


def test_local_dir_is_one_segment_per_repo_and_revision_and_maps_back():
    assert W.local_dir("meta-llama/Llama-3.1-8B-Instruct", "main") == f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/main"
    assert W.local_dir("gpt2", "v1.0", "/w") == "/w/gpt2/v1.0"
    assert W.repo_of_path(f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/main") == "meta-llama/Llama-3.1-8B-Instruct"
    assert W.repo_of_path(f"{ROOT}/gpt2/abc/") == "gpt2"
    for other in ("/models/custom", f"{ROOT}/a--b", f"{ROOT}/a--b/main/x", f"{ROOT}/a--b--c/main", "relative/a--b/x"):
        assert W.repo_of_path(other) is None, other
    for repo, rev in (
        ("a--b/c", "main"),
        ("a/b/c", "main"),
        ("/abs", "main"),
        ("a/b", "x/y"),
        ("a/b", ".."),
        ("a/b", ""),
    ):
        with pytest.raises(RenderError):
            W.local_dir(repo, rev)


def test_fetch_of_derives_every_name_and_pins_the_revision():
    w = W.fetch_of(_cfg(revision="0123456789abcdef0123456789abcdef01234567").models[0])
    assert w == W.WeightsFetch(
        model="llama",
        repo="meta-llama/Llama-3.1-8B-Instruct",
        revision="0123456789abcdef0123456789abcdef01234567",
        path=f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/0123456789abcdef0123456789abcdef01234567",
        marker=f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/0123456789abcdef0123456789abcdef01234567/.vllm-stack-complete",
        name="vllm-weights-llama",
        script="/usr/local/bin/vllm-fetch-weights-llama",
    )
    assert w.unit == "vllm-weights-llama.service" and w.unit_path == "/etc/systemd/system/vllm-weights-llama.service"
    unpinned = W.fetch_of(_cfg().models[0])
    assert unpinned is not None and unpinned.revision == "main" and unpinned.path.endswith("/main")


ARCH = {"params": 7e9, "layers": 32, "kvHeads": 8, "headDim": 128, "attentionHeads": 32, "maxPositions": 8192}


def test_a_local_path_model_has_no_prefetch_and_is_loaded_as_given():
    cfg = _cfg(model="/models/custom", architecture=ARCH)
    spec = cfg.models[0]
    assert W.fetch_of(spec) is None
    assert W.model_path(spec) == "/models/custom"
    with pytest.raises(RenderError, match="nothing to pre-fetch"):
        S.render_weights_unit(spec)
    assert "Requires=" not in S.render_systemd_unit(cfg, spec, _replica(cfg))


def _replica(cfg):
    from vllm_stack.placement import place

    return place(cfg)[cfg.models[0].name][0]


def test_download_argv_and_script_exact():
    w = W.fetch_of(_cfg().models[0])
    assert w is not None
    d = f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/main"
    assert W.download_argv(w, hf_bin="/usr/local/bin/hf") == [
        "/usr/local/bin/hf",
        "download",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--revision",
        "main",
        "--local-dir",
        d,
        "--exclude",
        "original/*",
    ]
    text = W.render_fetch_script(w, hf_bin="hf")
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail\n" in text
    assert "readonly REPO=meta-llama/Llama-3.1-8B-Instruct\nreadonly REVISION=main\n" in text
    assert f"readonly TARGET={d}\nreadonly MARKER={d}/.vllm-stack-complete\n" in text
    assert "readonly -a DOWNLOAD=(\n    hf\n    download\n" in text and "    'original/*'\n)\n" in text
    assert "--token" not in text and "HF_TOKEN=" not in text  # the token only ever from the environment


def test_vllm_argv_names_the_local_directory_and_keeps_the_route_name():
    spec = _cfg().models[0]
    argv = serve_argv(spec, model_path=W.model_path(spec))
    assert argv[:3] == [f"{ROOT}/meta-llama--Llama-3.1-8B-Instruct/main", "--served-model-name", "llama"]
    assert "--download-dir" not in argv


def test_weights_unit_exact():
    cfg = _cfg()
    spec = cfg.models[0]
    text = S.render_weights_unit(spec)
    lines = text.splitlines()
    for line in (
        "Type=oneshot",
        "User=vllm",
        "Group=vllm",
        "EnvironmentFile=/etc/vllm/llama.env",
        "Environment=HF_HOME=/var/lib/vllm/models",
        "ExecStart=/usr/local/bin/vllm-fetch-weights-llama",
        "TimeoutStartSec=600",
        "SyslogIdentifier=vllm-weights-llama",
        "ReadWritePaths=/var/lib/vllm/models",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "WantedBy=multi-user.target",
    ):
        assert line in lines, line
    assert "RemainAfterExit=yes" not in lines  # a start after a revision change reruns it
    assert "HF_TOKEN" not in text
    unit = S.render_systemd_unit(cfg, spec, _replica(cfg))
    assert "Requires=vllm-weights-llama.service\nAfter=vllm-weights-llama.service\n" in unit


def test_fetch_budget_numbers_for_8b_and_70b():
    b8 = budget(_cfg().models[0])
    assert (b8.download_seconds, b8.fetch_seconds, b8.fetch_deadline_seconds, b8.fetch_timeout) == (
        154,
        600,
        900,
        "15m",
    )
    b70 = budget(
        _cfg("kubernetes", model="meta-llama/Llama-3.1-70B-Instruct", gpu="H100-SXM5-80GB", tensorParallel=2).models[0]
    )
    # 131.45 GiB / 100 MiB/s = 1347 s, + 50 % = 2021 s; + 300 s pull = 2321 -> 2340 s
    assert (b70.download_seconds, b70.fetch_seconds, b70.fetch_deadline_seconds, b70.fetch_timeout) == (
        1347,
        2021,
        2340,
        "39m",
    )


def test_weights_job_shape():
    cfg = _cfg("kubernetes", pool={"onDemand": 2})
    spec = cfg.models[0]
    job = k8s_model.weights_job(cfg, spec, secret_name="model-secret")
    assert job is not None
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == "vllm-weights-llama"
    assert job["spec"]["backoffLimit"] == D.WEIGHTS_JOB_BACKOFF_LIMIT
    assert job["spec"]["activeDeadlineSeconds"] == 900
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure" and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    w = W.fetch_of(spec)
    assert w is not None
    assert c["image"] == spec.image
    assert c["command"] == ["bash", "-c", W.render_fetch_script(w, hf_bin="hf")]
    assert "args" not in c  # not a vLLM server: the policies' vLLM argv rules do not read it
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "model-secret", "key": "HF_TOKEN", "optional": True}},
    } in c["env"]
    assert "envFrom" not in c
    assert c["volumeMounts"] == [{"name": "weights", "mountPath": D.VLLM_WEIGHTS_DIR}]
    assert pod["volumes"] == [{"name": "weights", "persistentVolumeClaim": {"claimName": "vllm-stack-weights"}}]
    assert "podAffinity" not in pod["affinity"]  # RWX (two pods): any node mounts it
    assert {"key": D.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "nvidia.com/gpu" not in str(c["resources"])
    # the first object of the model: the stack creates the Deployments after it
    assert k8s_model.model_objects(cfg, spec, secret_name="model-secret")[0] == job


def test_weights_job_prefers_the_vllm_pods_node_with_a_read_write_once_pvc():
    cfg = _cfg("kubernetes", pool={"onDemand": 1})
    job = k8s_model.weights_job(cfg, cfg.models[0], secret_name="s")
    assert job is not None
    term = job["spec"]["template"]["spec"]["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "vllm"


def test_docker_prefetch_command_reads_the_token_from_the_env_file():
    cmd = HC.fetch_weights_container(
        name="vllm-weights-m",
        image="img:1",
        script="/usr/local/bin/f",
        weights_dir="/w",
        env_file="/etc/vllm/m.env",
        env={"HF_HOME": "/w"},
    )
    assert cmd == (
        "sudo /usr/bin/docker rm -f vllm-weights-m >/dev/null 2>&1; sudo /usr/bin/docker run --rm --name vllm-weights-m "
        "--env-file /etc/vllm/m.env -e HF_HOME=/w -v /w:/w -v /usr/local/bin/f:/usr/local/bin/f:ro "
        "--entrypoint /bin/bash img:1 /usr/local/bin/f"
    )
    assert HC.fetch_weights_unit("vllm-weights-m.service") == (
        "sudo systemctl daemon-reload && sudo systemctl start vllm-weights-m.service"
    )


def test_model_names_that_would_collide_with_a_prefetch_are_refused():
    with pytest.raises(ConfigError, match="reserved"):
        _cfg(name="weights-llama")


def test_revision_grammar_in_the_config():
    with pytest.raises(ConfigError, match="revision"):
        _cfg(revision="refs/pr/1")
