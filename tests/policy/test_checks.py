"""Every rule on hand-built resources: one good and at least one bad input each.

Resources are built in the shape the mock engine records (camelCase inputs, numbers as
floats) and run through `vllm_policy.offline.evaluate`, so the exact policy id and level of
each finding are asserted, not only the check function.
"""

from __future__ import annotations

import pytest

from vllm_stack import defaults as D

from .helpers import (
    LABEL_GPU,
    VLLM_ARGV,
    command,
    config_map,
    container,
    deployment,
    evaluate,
    ids,
    messages,
    pdb,
    pool,
    res,
    server,
    service,
    vllm_container_spec,
)


def argv(**flags_: str) -> list[str]:
    """VLLM_ARGV with flags replaced/added: argv(gpu_memory_utilization="0.97")."""
    out = list(VLLM_ARGV)
    for k, v in flags_.items():
        flag = "--" + k.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = v
        else:
            out += [flag, v]
    return out


def k8s_stack(**kw) -> list:
    """A prod Kubernetes model that passes every rule (Deployment + PDB + ClusterIP Service)."""
    return [deployment(**kw), pdb(), service("llama-8b", selector={D.LABEL_MODEL: "llama-8b"})]


# --- the good baseline -------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_good_docker_container_and_k8s_model_pass_every_rule(env):
    resources = [
        container(labels={D.LABEL_ENVIRONMENT: env, LABEL_GPU: "L40S"}),
        *k8s_stack(env=env, extra_labels={LABEL_GPU: "L40S"}),
    ]
    assert evaluate(resources, env) == []


# --- gpu-memory-utilization-ceiling ---------------------------------------------------------------


def test_utilization_at_prod_ceiling_passes():
    assert evaluate([server(argv=argv(gpu_memory_utilization=f"{D.GPU_MEMORY_UTILIZATION_PROD_CEILING:g}"))]) == []


def test_utilization_above_prod_ceiling_fails_in_prod_only():
    r = server(argv=argv(gpu_memory_utilization="0.94"))
    v = evaluate([r], "prod")
    assert ids(v) == {"gpu-memory-utilization-ceiling"}
    assert "0.94" in messages(v, "gpu-memory-utilization-ceiling") and "0.93" in messages(
        v, "gpu-memory-utilization-ceiling"
    )
    assert evaluate([r], "dev") == []


def test_utilization_above_hard_ceiling_is_mandatory_in_dev():
    v = evaluate([server(argv=argv(gpu_memory_utilization="0.97"))], "dev")
    assert ids(v, "mandatory") == {"gpu-memory-utilization-ceiling"}
    assert "0.97" in messages(v, "gpu-memory-utilization-ceiling")


@pytest.mark.parametrize(
    "smuggled",
    [["--gpu-memory-utilization=0.98"], ["--gpu_memory_utilization", "0.98"], ["--gpu-memory-utilization", "0.98"]],
)
def test_utilization_smuggled_through_extra_args_any_spelling(smuggled):
    v = evaluate([server(argv=VLLM_ARGV + smuggled)], "dev")
    assert "gpu-memory-utilization-ceiling" in ids(v)
    assert "0.98" in messages(v, "gpu-memory-utilization-ceiling")


def test_utilization_on_every_server_variant_and_not_in_text():
    resources = [
        server("k8s", kind="KubernetesVllmServer", argv=argv(gpu_memory_utilization="0.99")),
        server("unit", kind="SystemdVllmServer", argv=argv(gpu_memory_utilization="0.96")),
        # A provider resource's text is not interpreted: the components' typed argv is what is judged.
        command("adhoc", create="vllm serve m --host 127.0.0.1 --gpu-memory-utilization=0.951"),
    ]
    v = [x for x in evaluate(resources, "dev") if x["policy"] == "gpu-memory-utilization-ceiling"]
    assert {x["urn"].rsplit("::", 1)[-1] for x in v} == {"k8s", "unit"}
    text = "\n".join(x["message"] for x in v)
    assert "0.99" in text and "0.96" in text and "argv" in text


def test_utilization_threshold_comes_from_pack_config():
    r = server(argv=argv(gpu_memory_utilization="0.94"))
    assert evaluate([r], "prod", {"gpu-memory-utilization-ceiling": {"prodCeiling": 0.95}}) == []
    v = evaluate(
        [server(argv=argv(gpu_memory_utilization="0.91"))],
        "prod",
        {"gpu-memory-utilization-ceiling": {"prodCeiling": 0.9}},
    )
    assert "0.91" in messages(v, "gpu-memory-utilization-ceiling")


# --- model-fits-gpu -----------------------------------------------------------------------------


def test_model_fits_gpu_good():
    r = server(argv=argv(), gpu="L40S")
    assert evaluate([r]) == []


def test_70b_fp16_on_one_h100_does_not_fit_and_the_numbers_are_reported():
    a = [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--host",
        "0.0.0.0",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "8192",
    ]
    v = evaluate([server(argv=a, gpu="H100-SXM5-80GB")])
    assert ids(v) == {"model-fits-gpu"}
    msg = messages(v, "model-fits-gpu")
    assert "meta-llama/Llama-3.1-70B-Instruct" in msg and "H100-SXM5-80GB" in msg and "131.4" in msg  # weights GiB
    assert "0.92" in msg


def test_model_fit_uses_tp_quantization_and_kv_dtype():
    a = [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "16384",
    ]
    r = server(kind="KubernetesVllmServer", argv=a, gpu="H100-SXM5-80GB")
    assert "model-fits-gpu" not in ids(evaluate([r]))
    assert "model-fits-gpu" in ids(evaluate([server(argv=a[:2] + ["1"] + a[3:], gpu="H100-SXM5-80GB")]))


def test_one_sequence_must_fit_the_kv_cache():
    # 8B fp16 on a 24 GB L4 at 0.9: ~15 GiB weights leave ~1.3 GiB KV, less than 128k tokens x 128 KiB.
    a = ["meta-llama/Llama-3.1-8B-Instruct", "--gpu-memory-utilization", "0.9", "--max-model-len", "131072"]
    v = evaluate([server(argv=a, gpu="L4")], "dev")
    assert "model-fits-gpu" in ids(v, "advisory")  # an estimate: advisory in dev
    assert "131072" in messages(v, "model-fits-gpu")


def test_model_fit_skips_unknown_models_and_unlabelled_gpus(monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # under CI an unlabelled GPU fails (test_config_keys_read.py)
    assert evaluate([server(argv=["/models/custom", "--gpu-memory-utilization", "0.9"], gpu="L4")]) == []
    assert evaluate([server(argv=["meta-llama/Llama-3.1-70B-Instruct"], gpu=None)]) == []


def test_gpu_comes_from_the_server_components_gpu_input():
    a = ["meta-llama/Llama-3.1-70B-Instruct", "--host", "127.0.0.1"]
    v = evaluate([server(kind="SystemdVllmServer", argv=a, gpu="L4")])
    assert "L4" in messages(v, "model-fits-gpu")


# --- fp8-requires-fp8-gpu ------------------------------------------------------------------------


def test_fp8_on_hopper_passes():
    a = [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--quantization",
        "fp8",
        "--kv-cache-dtype",
        "fp8",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "8192",
    ]
    assert evaluate([server(argv=a, gpu="H100-SXM5-80GB")]) == []


def test_fp8_kv_cache_on_ampere_is_mandatory_fp8_weights_advisory():
    a = [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--quantization",
        "fp8",
        "--kv-cache-dtype",
        "fp8",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "8192",
    ]
    v = evaluate([server(argv=a, gpu="A100-SXM4-80GB")])
    fp8 = [x for x in v if x["policy"] == "fp8-requires-fp8-gpu"]
    assert {x["enforcement"] for x in fp8} == {"mandatory", "advisory"}
    mandatory = next(x["message"] for x in fp8 if x["enforcement"] == "mandatory")
    advisory = next(x["message"] for x in fp8 if x["enforcement"] == "advisory")
    assert "--kv-cache-dtype fp8" in mandatory and "A100-SXM4-80GB" in mandatory and "8" in mandatory
    assert "--quantization fp8" in advisory and "Marlin" in advisory
    assert ids(v, "mandatory") == {"fp8-requires-fp8-gpu"}


def test_fp8_weights_alone_on_ampere_only_warn():
    a = [
        "mistralai/Mistral-7B-Instruct-v0.3",
        "--quantization",
        "fp8",
        "--gpu-memory-utilization",
        "0.9",
        "--max-model-len",
        "8192",
    ]
    v = evaluate([server(argv=a, gpu="A10G")])
    assert ids(v) == {"fp8-requires-fp8-gpu"} and ids(v, "mandatory") == set()
    assert "A10G" in messages(v, "fp8-requires-fp8-gpu")


# --- no-secrets-in-argv ---------------------------------------------------------------------------


def test_no_secrets_in_argv_good():
    assert "no-secrets-in-argv" not in ids(evaluate([container(), command("c", create="sudo systemctl restart x")]))


def test_api_key_flag_on_container_command():
    v = evaluate([container(command=VLLM_ARGV + ["--api-key", "sk-abcdefghijklmnopqrstuvwxyz"])])
    assert "no-secrets-in-argv" in ids(v, "mandatory")
    msg = messages(v, "no-secrets-in-argv")
    assert "--api-key" in msg and "sk-a" in msg and "sk-abcdefghijklmnopqrstuvwxyz" not in msg  # redacted
    srv = evaluate([server(argv=VLLM_ARGV + ["--api-key", "sk-abcdefghijklmnopqrstuvwxyz"])])
    assert "no-invalid-vllm-flags" in ids(srv)  # the flag table refuses it on a server's argv


@pytest.mark.parametrize(
    "where, resource",
    [
        (
            "create",
            command("c", create="curl -H 'Authorization: Bearer abcdef0123456789' http://127.0.0.1:8000/v1/models"),
        ),
        ("envs", container(envs=["TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123"])),
        ("labels", deployment(extra_labels={"token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123"})),
        (
            "--hf-token",
            command("c", create="vllm serve m --host 127.0.0.1 --hf-token=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123"),
        ),
    ],
)
def test_token_looking_values_anywhere_on_a_command_line(where, resource):
    v = evaluate([resource, pdb()], "dev")
    assert "no-secrets-in-argv" in ids(v)
    msg = messages(v, "no-secrets-in-argv")
    assert where in msg or "hf_A" in msg or "Bear" in msg


def test_annotations_are_checked():
    r = deployment()
    r.inputs["metadata"]["annotations"] = {"note": "key sk-proj0123456789abcdefghij"}
    v = evaluate([r, pdb()])
    assert "metadata.annotations" in messages(v, "no-secrets-in-argv")


# --- secrets-only-in-secret-stores ------------------------------------------------------------------


def test_secret_env_file_from_secret_stdin_with_0600_passes():
    r = command(
        "env",
        create="sudo /usr/local/sbin/vllm-write-secrets llama-8b",
        stdin="VLLM_API_KEY=[secret]-api-key\nHF_TOKEN=[secret]\n",
        secret_stdin=True,
    )
    key = command(
        "key",
        create="sudo sh -c 'umask 077; install -D -m 600 -o root -g root /dev/stdin /etc/k.pem'",
        stdin="-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        secret_stdin=True,
    )
    secret = res("kubernetes:core/v1:Secret", "secret-x", {"stringData": {"VLLM_API_KEY": "[secret]"}}, ["stringData"])
    assert evaluate([r, key, secret]) == []


def test_api_key_in_config_map():
    v = evaluate([config_map("env", {"VLLM_API_KEY": "abc123def456ghi"})])
    assert ids(v) == {"secrets-only-in-secret-stores"}
    assert "VLLM_API_KEY" in messages(v, "secrets-only-in-secret-stores")


def test_pem_private_key_in_config_map_file():
    v = evaluate(
        [config_map("tls", {"key.pem": "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"})]
    )
    assert "PEM private key" in messages(v, "secrets-only-in-secret-stores")


def test_plain_env_value_in_pod_spec():
    spec = vllm_container_spec(env=[{"name": "HF_TOKEN", "value": "plainvalue123456"}])
    v = evaluate([deployment(container_spec=spec), pdb()])
    assert ids(v) == {"secrets-only-in-secret-stores"}
    msg = messages(v, "secrets-only-in-secret-stores")
    assert "HF_TOKEN" in msg and "plai" in msg
    ok = vllm_container_spec(env=[{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert evaluate([deployment(container_spec=ok), pdb()]) == []


def test_secret_in_container_envs():
    v = evaluate([container(envs=["VLLM_API_KEY=literal-key-value-123"])])
    assert "VLLM_API_KEY" in messages(v, "secrets-only-in-secret-stores")


def test_secret_in_world_readable_unit_file():
    unit = "[Service]\nEnvironment=HF_TOKEN=abcdefabcdef1234\nExecStart=/usr/local/bin/vllm-start-llama-8b\n"
    v = evaluate(
        [
            command(
                "unit",
                create="sudo install -D -m 644 -o root -g root /dev/stdin /etc/systemd/system/vllm-llama-8b.service",
                stdin=unit,
            )
        ]
    )
    assert "unit file" in messages(v, "secrets-only-in-secret-stores")


def test_secret_stdin_must_be_a_pulumi_secret_and_0600():
    v = evaluate(
        [
            command(
                "env",
                create="sudo install -D -m 644 /dev/stdin /etc/vllm/x.env",
                stdin="VLLM_API_KEY=abcdefabcdef1234\n",
            )
        ]
    )
    msg = messages(v, "secrets-only-in-secret-stores")
    assert "without mode 0600" in msg and "not a Pulumi secret" in msg and "VLLM_API_KEY" in msg


def test_secret_placeholder_in_a_plain_input():
    v = evaluate(
        [res("command:remote:Command", "leak", {"create": "true", "environment": {"KEY": "[secret]-api-key"}})]
    )
    assert "environment.KEY" in messages(v, "secrets-only-in-secret-stores")


def test_the_plans_secret_value_in_a_plain_input_is_a_leak():
    """The plan feeds VALUE_PLACEHOLDER as every secret value: the check matched only `[secret]`
    and so could never fire on what the plan really sends."""
    from vllm_stack.offline.engine import VALUE_PLACEHOLDER

    v = evaluate(
        [res("command:remote:Command", "leak", {"create": f"curl -H 'Authorization: Bearer {VALUE_PLACEHOLDER}' x"})]
    )
    assert "input create carries a secret value" in messages(v, "secrets-only-in-secret-stores")


# --- vllm-not-exposed ---------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.1.12", "192.168.3.4", "172.20.0.5"])
def test_loopback_and_private_binds_pass(ip):
    assert evaluate([container(ports=[{"internal": 8000.0, "external": 8000.0, "ip": ip}])]) == []


@pytest.mark.parametrize(
    "ip, words",
    [("0.0.0.0", "every interface"), ("", "every interface"), (None, "every interface"), ("203.0.113.7", "public")],
)
def test_public_or_unspecified_docker_port(ip, words):
    port = {"internal": 8000.0, "external": 8001.0}
    if ip is not None:
        port["ip"] = ip
    v = evaluate([container(ports=[port])])
    assert ids(v) == {"vllm-not-exposed"}
    msg = messages(v, "vllm-not-exposed")
    assert words in msg and "8001" in msg


@pytest.mark.parametrize("kind", ["DockerVllmServer", "SystemdVllmServer"])
def test_host_server_address_must_be_private(kind):
    v = evaluate([server(kind=kind, address="0.0.0.0")])
    assert "0.0.0.0" in messages(v, "vllm-not-exposed") and "every interface" in messages(v, "vllm-not-exposed")
    assert evaluate([server(kind=kind, address="10.0.1.5")]) == []


def test_vllm_service_must_be_cluster_ip():
    sel = {D.LABEL_MODEL: "llama-8b", "app.kubernetes.io/component": "vllm"}
    assert evaluate([service("llama-8b", selector=sel, typ=None)]) == []
    v = evaluate([service("llama-8b", selector=sel, typ="LoadBalancer")])
    assert ids(v) == {"vllm-not-exposed"} and "LoadBalancer" in messages(v, "vllm-not-exposed")
    front = service("front", selector={"app.kubernetes.io/component": "front"}, typ="LoadBalancer")
    assert evaluate([front]) == []


def test_host_network_vllm_pod():
    v = evaluate([deployment(pod_extra={"hostNetwork": True}), pdb()])
    assert "hostNetwork" in messages(v, "vllm-not-exposed")


# --- nginx front: tls-required-in-prod, tls-min-version, api-key-required ---------------------------

GOOD_NGINX = """
http {
    map $http_authorization $vllm_key_ok {
        default 0;
        include /etc/nginx/vllm/api-keys.map;
    }
    server {
        listen 80;
        return 301 https://$host$request_uri;
    }
    server {
        listen 443 ssl;
        ssl_certificate /etc/nginx/vllm/tls/fullchain.pem;
        ssl_certificate_key /etc/nginx/vllm/tls/privkey.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /health { return 200 '{"status":"ok"}'; }
        location /v1/ {
            if ($vllm_key_ok = 0) {
                return 401 '{"error":"Unauthorized"}';
            }
            proxy_pass http://vllm_llama-8b/v1/;
        }
    }
}
"""
NGINX_CREATE = "sudo install -D -m 644 -o root -g root /dev/stdin /etc/nginx/nginx.conf"


def nginx(conf: str, env: str = "prod", k8s: bool = False):
    if k8s:
        return config_map("vllm-stack-front-config", {"nginx.conf": conf}, env)
    return command("front-nginx-conf", create=NGINX_CREATE, stdin=conf)


@pytest.mark.parametrize("k8s", [False, True])
def test_good_front_passes(k8s):
    assert evaluate([nginx(GOOD_NGINX, k8s=k8s)]) == []


def test_front_without_tls_fails_in_prod_only():
    plain = GOOD_NGINX.replace("listen 443 ssl;", "listen 443;")
    v = evaluate([nginx(plain)], "prod")
    assert ids(v) == {"tls-required-in-prod"} and "listen ... ssl" in messages(v, "tls-required-in-prod")
    assert evaluate([nginx(plain)], "dev") == []


def test_plain_http_server_must_not_proxy():
    conf = GOOD_NGINX.replace(
        "return 301 https://$host$request_uri;",
        "location /v1/ { if ($vllm_key_ok = 0) { return 401; } proxy_pass http://vllm_llama-8b/v1/; }",
    )
    v = evaluate([nginx(conf, k8s=True)])
    assert ids(v) == {"tls-required-in-prod"} and "80" in messages(v, "tls-required-in-prod")


@pytest.mark.parametrize("protocols, old", [("TLSv1 TLSv1.1 TLSv1.2", "TLSv1, TLSv1.1"), ("SSLv3 TLSv1.2", "SSLv3")])
def test_old_tls_protocols(protocols, old):
    v = evaluate([nginx(GOOD_NGINX.replace("TLSv1.2 TLSv1.3", protocols))], "dev")
    assert ids(v) == {"tls-min-version"} and old in messages(v, "tls-min-version")


def test_tls_min_version_configurable():
    v = evaluate([nginx(GOOD_NGINX)], "prod", {"tls-min-version": {"minVersion": "TLSv1.3"}})
    assert "TLSv1.2" in messages(v, "tls-min-version")


def test_front_without_api_key_map():
    conf = GOOD_NGINX.replace("map $http_authorization $vllm_key_ok", "map $http_x_foo $vllm_key_ok")
    v = evaluate([nginx(conf)])
    assert "api-key-required" in ids(v) and "$http_authorization" in messages(v, "api-key-required")


def test_location_without_the_gate():
    conf = GOOD_NGINX.replace(
        """            if ($vllm_key_ok = 0) {
                return 401 '{"error":"Unauthorized"}';
            }
""",
        "",
    )
    v = evaluate([nginx(conf)])
    assert ids(v) == {"api-key-required"} and "/v1/" in messages(v, "api-key-required")


# --- on-demand-floor ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["HostSpotOnDemandPool", "KubernetesSpotOnDemandPool"])
def test_on_demand_floor_good_with_spot(kind):
    assert evaluate([pool(on_demand=1.0, spot=3.0, kind=kind), *k8s_stack()]) == []


@pytest.mark.parametrize("kind", ["HostSpotOnDemandPool", "KubernetesSpotOnDemandPool"])
def test_spot_only_model_in_prod(kind):
    p = pool(on_demand=0.0, spot=2.0, kind=kind)
    v = evaluate([p], "prod")
    assert ids(v) == {"on-demand-floor"}
    msg = messages(v, "on-demand-floor")
    assert "llama-8b" in msg and "0 on-demand" in msg and "2 spot" in msg
    assert ids(evaluate([p], "dev"), "mandatory") == set()


def test_floor_is_configurable():
    v = evaluate([pool(on_demand=1.0, spot=2.0)], "prod", {"on-demand-floor": {"minOnDemand": 2}})
    assert "1 on-demand" in messages(v, "on-demand-floor") and ">= 2" in messages(v, "on-demand-floor")


@pytest.mark.parametrize("secs", ["5", "45"])
def test_prestop_drain_outside_10_30_seconds(secs):
    spec = vllm_container_spec(prestop=["sleep", secs])
    v = evaluate([deployment(container_spec=spec, grace=60.0), pdb()])
    assert ids(v) == {"on-demand-floor"} and f"{secs} s" in messages(v, "on-demand-floor")


def test_grace_period_shorter_than_drain():
    v = evaluate([deployment(grace=20.0), pdb()])
    assert "terminationGracePeriodSeconds 20" in messages(v, "on-demand-floor")


@pytest.mark.parametrize("kind", ["DockerVllmServer", "SystemdVllmServer"])
def test_host_spot_server_drain_seconds(kind):
    assert evaluate([server("spot-0", kind=kind, capacity="spot", drain_seconds=20.0)]) == []
    v = evaluate([server("spot-1", kind=kind, capacity="spot", drain_seconds=120.0)], "dev")
    assert ids(v, "advisory") == {"on-demand-floor"} and "120 s" in messages(v, "on-demand-floor")
    missing = evaluate([server("spot-2", kind=kind, capacity="spot")], "prod")
    assert "no drain hook" in messages(missing, "on-demand-floor")
    assert evaluate([server("od-0", kind=kind)], "prod") == []  # on-demand replicas need no hook


def test_drain_hook_text_is_not_interpreted():
    hook = command("x-drain", create="true", delete="sudo /usr/local/sbin/vllm-drain llama-8b 10.0.2.22:8000 120")
    assert evaluate([hook], "dev") == []


# --- gpu-limits-and-probes ------------------------------------------------------------------------


def test_gpu_limit_must_equal_tensor_parallel():
    spec = vllm_container_spec(args=argv(tensor_parallel_size="2"), gpus=1.0)
    v = evaluate([deployment(container_spec=spec), pdb()])
    assert ids(v) == {"gpu-limits-and-probes"}
    msg = messages(v, "gpu-limits-and-probes")
    assert "is 1" in msg and "--tensor-parallel-size is 2" in msg


def test_missing_gpu_limit():
    spec = vllm_container_spec(resources={"requests": {"cpu": "2"}})
    v = evaluate([deployment(container_spec=spec), pdb()])
    assert f"no resources.limits[{D.GPU_RESOURCE}]" in messages(v, "gpu-limits-and-probes")


def test_readiness_delay_too_short():
    v = evaluate([deployment(container_spec=vllm_container_spec(readiness_delay=30.0)), pdb()], "dev")
    assert ids(v, "advisory") == {"gpu-limits-and-probes"}
    assert "initialDelaySeconds 30" in messages(v, "gpu-limits-and-probes")


def test_pdb_required_for_on_demand_in_prod():
    v = evaluate([deployment()], "prod")
    assert ids(v) == {"gpu-limits-and-probes"} and "PodDisruptionBudget" in messages(v, "gpu-limits-and-probes")
    assert evaluate([deployment()], "dev") == []
    other_model = pdb(model="mistral-7b")
    assert "PodDisruptionBudget" in messages(evaluate([deployment(), other_model]), "gpu-limits-and-probes")


# --- pinned-images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, words",
    [("vllm/vllm-openai:latest", ":latest"), ("vllm/vllm-openai", "no tag"), ("registry:5000/vllm-openai", "no tag")],
)
def test_unpinned_images(image, words):
    remote = res("docker:index/remoteImage:RemoteImage", "img", {"name": image, "keepLocally": True})
    v = evaluate([remote])
    assert ids(v) == {"pinned-images"}
    msg = messages(v, "pinned-images")
    assert image in msg and words in msg
    assert ids(evaluate([remote], "dev"), "mandatory") == set()


def test_pinned_images_pass_and_k8s_images_are_checked():
    ok = [
        res("docker:index/remoteImage:RemoteImage", "img", {"name": "vllm/vllm-openai:v0.33.0"}),
        container(image="nginx@sha256:" + "a" * 64),
        *k8s_stack(),
    ]
    assert evaluate(ok) == []
    v = evaluate([deployment(container_spec=vllm_container_spec(image="vllm/vllm-openai:latest")), pdb()])
    assert "containers[vllm].image vllm/vllm-openai:latest" in messages(v, "pinned-images")


# --- grafana-no-default-password -----------------------------------------------------------------------

GRAFANA_OK = [
    "GF_AUTH_ANONYMOUS_ENABLED=false",
    "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/admin-password",
    "GF_SECURITY_ADMIN_USER=admin",
]


def grafana(envs: list[str]):
    return res(
        "docker:index/container:Container",
        "monitoring-grafana",
        {"image": "grafana/grafana:11.4.0@sha256:" + "0" * 64, "envs": envs, "networkMode": "host"},
    )


def test_grafana_password_from_file_passes():
    assert evaluate([grafana(GRAFANA_OK)]) == []


@pytest.mark.parametrize(
    "envs, words",
    [
        (["GF_SECURITY_ADMIN_PASSWORD=admin"], "'admin'"),
        (["GF_SECURITY_ADMIN_PASSWORD="], "'empty'"),
        (["GF_AUTH_ANONYMOUS_ENABLED=false"], "admin/admin"),
        (GRAFANA_OK[1:] + ["GF_AUTH_ANONYMOUS_ENABLED=true"], "GF_AUTH_ANONYMOUS_ENABLED=true"),
    ],
)
def test_grafana_default_or_missing_password_or_anonymous(envs, words):
    v = evaluate([grafana(envs)], "dev")
    assert "grafana-no-default-password" in ids(v, "mandatory") and words in messages(v, "grafana-no-default-password")


def test_grafana_k8s_secret_key_ref_passes_literal_fails():
    def gdep(env):
        spec = {"name": "grafana", "image": "grafana/grafana:11.4.0", "env": env}
        return res(
            "kubernetes:apps/v1:Deployment",
            "deployment-grafana",
            {
                "metadata": {"name": "grafana"},
                "spec": {"replicas": 1.0, "template": {"metadata": {"labels": {}}, "spec": {"containers": [spec]}}},
            },
        )

    ok = gdep([{"name": "GF_SECURITY_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "g", "key": "p"}}}])
    assert evaluate([ok]) == []
    v = evaluate([gdep([{"name": "GF_SECURITY_ADMIN_PASSWORD", "value": "admin"}])])
    assert "'admin'" in messages(v, "grafana-no-default-password")


def test_grafana_ini_in_config_map():
    ini = "[security]\nadmin_password = admin\n[auth.anonymous]\nenabled = true\n"
    v = evaluate([config_map("grafana", {"grafana.ini": ini})])
    msg = messages(v, "grafana-no-default-password")
    assert "[auth.anonymous] enabled = true" in msg and "admin_password" in msg


# --- no-invalid-vllm-flags ------------------------------------------------------------------------------


def test_valid_flags_pass():
    assert "no-invalid-vllm-flags" not in ids(evaluate([server(argv=VLLM_ARGV + ["--enable-prefix-caching"])]))


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--dtype", "fp8"], "--dtype fp8"),
        (["--speculative-model", "m"], "--speculative-model"),
        (["--tensor-parallel-size", "2"], "--tensor-parallel-size given twice"),
        (["--disable-log-requests"], "--disable-log-requests"),
        (["-tp", "2"], "--tensor-parallel-size given twice"),
    ],
)
def test_invalid_flags(extra, words):
    v = evaluate([server(argv=VLLM_ARGV + extra)], "dev")
    assert "no-invalid-vllm-flags" in ids(v, "mandatory") and words in messages(v, "no-invalid-vllm-flags")


def test_invalid_flags_on_every_server_variant():
    resources = [
        server("k8s", kind="KubernetesVllmServer", argv=VLLM_ARGV + ["--dtype=fp8"]),
        server("unit", kind="SystemdVllmServer", argv=VLLM_ARGV + ["--dtype", "fp8"]),
    ]
    v = [x for x in evaluate(resources) if x["policy"] == "no-invalid-vllm-flags"]
    assert len(v) == 2 and all("fp8" in x["message"] for x in v)


# --- offline runner -------------------------------------------------------------------------------


def test_violations_are_sorted_mandatory_first_and_stable():
    resources = [
        server(argv=argv(gpu_memory_utilization="0.97") + ["--dtype", "fp8"]),
        res("docker:index/remoteImage:RemoteImage", "img", {"name": "x:latest"}),
    ]
    v1, v2 = evaluate(resources, "dev"), evaluate(list(reversed(resources)), "dev")
    assert v1 == v2
    levels = [x["enforcement"] for x in v1]
    assert levels == sorted(levels, key=lambda lv: lv != "mandatory")
    assert all(set(x) == {"policy", "enforcement", "message", "urn"} for x in v1)


def test_pack_config_overrides_enforcement_and_environment():
    r = res("docker:index/remoteImage:RemoteImage", "img", {"name": "x:latest"})
    assert ids(evaluate([r], "prod", {"pinned-images": "advisory"}), "mandatory") == set()
    assert evaluate([r], "prod", {"pinned-images": {"enforcementLevel": "disabled"}}) == []
    assert ids(evaluate([r], "dev", {"pinned-images": {"environment": "prod"}}), "mandatory") == {"pinned-images"}
    assert ids(evaluate([r], "prod", {"all": "advisory"}), "mandatory") == set()


def test_generic_rules_skip_components_and_unknown_components_are_ignored():
    comp = res(f"{D.COMPONENT_PREFIX}:Other", "x", {"command": ["--api-key", "sk-" + "a" * 30]}, custom=False)
    assert evaluate([comp]) == []
