"""Weights fetched once, as the program creates it under the mock engine (render/weights.py).

Kubernetes (prod): one Job per model mounting the weights PVC, HF_TOKEN from the model Secret by
reference, a custom timeout from the startup budget, and every Deployment of the model created
after it (dependsOn). SSH hosts (dev: docker runtime; examples/Pulumi.docker-prod.yaml: systemd):
one pre-fetch per host and model after the bootstrap and the model's env file, and the servers
after the host node; vLLM's argv names the local directory.
"""

from __future__ import annotations

from vllm_stack import defaults as D
from vllm_stack.deployment import ROUTER_COMPONENT

from .conftest import ROOT, SCAN_SECRETS, by_type, dump, one

JOB = "kubernetes:batch/v1:Job"
DEP = "kubernetes:apps/v1:Deployment"
CMD = "command:remote:Command"
LLAMA_70B_DIR = f"{D.VLLM_WEIGHTS_DIR}/meta-llama--Llama-3.1-70B-Instruct/main"


def _pod(r):
    return r["inputs"]["spec"]["template"]["spec"]


def test_one_weights_job_per_model_mounting_the_pvc_with_the_token_by_reference(prod):
    jobs = {r["name"]: r for r in by_type(prod, JOB)}
    assert sorted(jobs) == ["job-vllm-weights-llama-70b", "job-vllm-weights-mistral-7b"]
    job = jobs["job-vllm-weights-llama-70b"]
    pod = _pod(job)
    assert pod["restartPolicy"] == "OnFailure"
    (c,) = pod["containers"]
    assert c["command"][:2] == ["bash", "-c"]
    script = c["command"][2]
    assert f"readonly TARGET={LLAMA_70B_DIR}\n" in script and "    hf\n    download\n" in script
    claim = {v["name"]: v for v in pod["volumes"]}["weights"]["persistentVolumeClaim"]["claimName"]
    pvc = one(prod, "kubernetes:core/v1:PersistentVolumeClaim", f"persistentvolumeclaim-{claim}")
    assert pvc["inputs"]["spec"]["accessModes"] == ["ReadWriteMany"]  # several vLLM pods read it
    assert c["volumeMounts"] == [{"name": "weights", "mountPath": D.VLLM_WEIGHTS_DIR}]
    secret = one(prod, "kubernetes:core/v1:Secret", "secret-vllm-model-secrets")
    token = [e for e in c["env"] if e["name"] == "HF_TOKEN"]
    assert token == [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "vllm-model-secrets", "key": "HF_TOKEN", "optional": True}},
        }
    ]
    assert "HF_TOKEN" in str(secret["inputs"]["stringData"])
    assert "envFrom" not in c  # only HF_TOKEN, never VLLM_API_KEY
    assert SCAN_SECRETS["hfToken"] not in str(job["inputs"])


def test_deployments_depend_on_their_models_weights_job_and_load_its_directory(prod):
    jobs = {r["inputs"]["metadata"]["name"]: r["urn"] for r in by_type(prod, JOB)}
    seen = 0
    for dep in by_type(prod, DEP):
        labels = dep["inputs"]["metadata"]["labels"]
        model = labels.get(D.LABEL_MODEL)
        if model is None or labels.get("app.kubernetes.io/component") == ROUTER_COMPONENT:
            continue  # the routers load no weights
        seen += 1
        assert jobs[f"vllm-weights-{model}"] in dep["dependencies"], dep["name"]
        other = [u for n, u in jobs.items() if n != f"vllm-weights-{model}"]
        assert not set(other) & set(dep["dependencies"]), dep["name"]
        args = _pod(dep)["containers"][0]["args"]
        assert args[0].startswith(f"{D.VLLM_WEIGHTS_DIR}/") and args[0].endswith("/main")
        assert args[1:3] == ["--served-model-name", model]
    assert seen == 3
    dep = one(prod, DEP, "deployment-llama-70b-on-demand")
    assert _pod(dep)["containers"][0]["args"][0] == LLAMA_70B_DIR


def test_weights_job_timeouts_come_from_the_startup_budget(prod):
    got = {r["name"]: (r["customTimeouts"], r["inputs"]["spec"]["activeDeadlineSeconds"]) for r in by_type(prod, JOB)}
    # 70B at online FP8 downloads the 16-bit checkpoint: 131.45 GiB at 100 MiB/s = 1347 s, + 50 % =
    # 2021 s, + 300 s image pull -> 39 min; Mistral 7B: below the 600 s floor, + 300 s -> 15 min
    assert got == {
        "job-vllm-weights-llama-70b": (["39m", "39m", ""], 2340),
        "job-vllm-weights-mistral-7b": (["15m", "15m", ""], 900),
    }


def _host_commands(d, suffix):
    return {r["name"]: r for r in by_type(d, CMD) if r["name"].endswith(suffix)}


def test_docker_hosts_prefetch_once_per_model_in_the_vllm_image_before_the_containers(dev):
    (fetch,) = _host_commands(dev, "-weights").values()
    assert fetch["name"] == "gpu-dev-1-llama-8b-weights"
    cmd = fetch["inputs"]["create"]
    assert cmd == (
        "sudo /usr/bin/docker rm -f vllm-weights-llama-8b >/dev/null 2>&1; sudo /usr/bin/docker run --rm "
        "--name vllm-weights-llama-8b --env-file /etc/vllm/llama-8b.env -e HF_HOME=/var/lib/vllm/models "
        "-e VLLM_NO_USAGE_STATS=1 -e VLLM_WORKER_MULTIPROC_METHOD=spawn "
        "-v /var/lib/vllm/models:/var/lib/vllm/models "
        "-v /usr/local/bin/vllm-fetch-weights-llama-8b:/usr/local/bin/vllm-fetch-weights-llama-8b:ro "
        "--entrypoint /bin/bash vllm/vllm-openai:v0.33.0 /usr/local/bin/vllm-fetch-weights-llama-8b"
    )
    assert SCAN_SECRETS["hfToken"] not in str(fetch["inputs"])
    env = one(dev, CMD, "gpu-dev-1-llama-8b-env")
    script = one(dev, CMD, "gpu-dev-1-llama-8b-weights-script")
    assert {env["urn"], script["urn"]} <= set(fetch["dependencies"])
    assert fetch["customTimeouts"] == ["15m", "15m", ""]
    node = one(dev, "vllmstack:index:SshGpuNode", "gpu-dev-1")
    assert fetch["parent"] == node["urn"]
    for c in by_type(dev, "docker:index/container:Container"):
        if c["inputs"]["name"].startswith("vllm-llama-8b"):
            server = next(r for r in dev["resources"] if r["urn"] == c["parent"])
            assert fetch["urn"] in server["dependencies"]  # through the node: its pre-fetch comes first
            assert c["inputs"]["command"][0] == f"{D.VLLM_WEIGHTS_DIR}/meta-llama--Llama-3.1-8B-Instruct/main"


def test_systemd_hosts_prefetch_with_a_oneshot_unit_the_vllm_units_require():
    d = dump(str(ROOT / "examples/Pulumi.docker-prod.yaml"))
    fetches = _host_commands(d, "-weights")
    assert fetches and all(
        r["inputs"]["create"] == "sudo systemctl daemon-reload && sudo systemctl start vllm-weights-llama-8b.service"
        for r in fetches.values()
    )
    arts = d["artifacts"]
    host = next(iter(fetches))[: -len("-llama-8b-weights")]
    unit = arts[f"hosts/{host}/systemd/vllm-weights-llama-8b.service"]["content"]
    assert "Type=oneshot\n" in unit and "ExecStart=/usr/local/bin/vllm-fetch-weights-llama-8b\n" in unit
    assert "EnvironmentFile=/etc/vllm/llama-8b.env\n" in unit and "User=vllm\n" in unit
    vllm_units = [p for p in arts if p.startswith(f"hosts/{host}/systemd/vllm-llama-8b")]
    assert vllm_units
    for p in vllm_units:
        text = arts[p]["content"]
        assert "Requires=vllm-weights-llama-8b.service\nAfter=vllm-weights-llama-8b.service\n" in text
    for srv in by_type(d, "vllmstack:index:SystemdVllmServer"):
        assert srv["inputs"]["argv"][0] == f"{D.VLLM_WEIGHTS_DIR}/meta-llama--Llama-3.1-8B-Instruct/main"
