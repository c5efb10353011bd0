"""The dev stack (docker platform) under the mock engine: graph, parents, inputs, secrets."""

from __future__ import annotations

from .conftest import SCAN_SECRETS, by_type, one, unwrap

COMPONENT = "vllmstack:index:"


def test_component_tree(dev):
    comps = {r["type"].removeprefix(COMPONENT) for r in dev["resources"] if r["type"].startswith(COMPONENT)}
    assert comps == {
        "SshGpuNode",
        "DockerVllmServer",
        "HostSpotOnDemandPool",
        "HostNginxFront",
        "HostMonitoringStack",
        "DockerNginxExporter",
    }
    urns = {r["urn"]: r for r in dev["resources"]}
    server = one(dev, COMPONENT + "DockerVllmServer", "llama-8b-od-0")
    assert urns[server["parent"]]["type"] == COMPONENT + "HostSpotOnDemandPool"
    for r in dev["resources"]:
        if not r["type"].startswith(COMPONENT):
            assert r["parent"] in urns, f"{r['type']} {r['name']} is not parented to a component"


def test_vllm_container_inputs(dev):
    c = one(dev, "docker:index/container:Container", "llama-8b-od-0")
    argv = c["inputs"]["command"]
    # the directory the host's pre-fetch wrote (tests/stack/test_program_weights.py), under the route name
    assert argv[:3] == [
        "/var/lib/vllm/models/meta-llama--Llama-3.1-8B-Instruct/main",
        "--served-model-name",
        "llama-8b",
    ]
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
    assert argv[argv.index("--max-num-seqs") + 1] == "64"
    assert (
        c["inputs"]["ports"] == [{"internal": 8000, "external": 8000, "ip": "127.0.0.1", "protocol": "tcp"}]
        or c["inputs"]["ports"][0]["ip"] == "127.0.0.1"
    )
    assert c["inputs"]["ipcMode"] == "host" and c["inputs"]["restart"] == "always"
    assert c["inputs"]["gpus"] == "device=0"
    hc = c["inputs"]["healthcheck"]
    assert "/health" in " ".join(hc["tests"]) and int(hc["startPeriod"].rstrip("s")) >= 120
    envs = " ".join(c["inputs"].get("envs", []))
    assert "VLLM_API_KEY" not in envs and "HF_TOKEN" not in envs


def test_secret_env_file_travels_only_as_secret_stdin(dev):
    env_cmd = one(dev, "command:remote:Command", "gpu-dev-1-llama-8b-env")
    assert "stdin" in env_cmd["secretKeys"]
    stdin = unwrap(env_cmd["inputs"]["stdin"])
    assert f"VLLM_API_KEY={SCAN_SECRETS['apiKey']}" in stdin and f"HF_TOKEN={SCAN_SECRETS['hfToken']}" in stdin
    assert env_cmd["inputs"]["logging"] == "none"
    assert SCAN_SECRETS["apiKey"] not in env_cmd["inputs"]["create"]


def test_ssh_connection_key_is_secret(dev):
    boot = one(dev, "command:remote:Command", "gpu-dev-1-bootstrap")
    assert "connection" in boot["secretKeys"]
    assert boot["inputs"]["create"] == "sudo bash -s"


def test_front_pushes_tls_key_and_api_keys_as_0600_secrets(dev):
    cmds = {r["name"]: r for r in by_type(dev, "command:remote:Command")}
    for name in ("front-api-keys", "front-tls-key"):
        assert "stdin" in cmds[name]["secretKeys"], name
        assert "umask 077" in cmds[name]["inputs"]["create"] and "-m 600" in cmds[name]["inputs"]["create"]
    assert f'Bearer {SCAN_SECRETS["apiKey"]}$"' in unwrap(cmds["front-api-keys"]["inputs"]["stdin"])


def test_outputs(dev):
    assert dev["outputs"]["endpoint"] == "https://vllm.dev.internal"
    assert dev["outputs"]["routes"]["llama-8b"] == "https://vllm.dev.internal/llama-8b/v1"
    assert "apiKey" in dev["secretOutputs"]
    assert dev["outputs"]["monthlyCostUsd"] == 518.4  # 1x L40S at $0.72 x 720 h (seed 000 "$518")


def test_no_secret_value_outside_secret_inputs_or_secret_artifacts(dev):
    _assert_secret_containment(dev)


def _assert_secret_containment(d):
    import json

    values = [v for v in SCAN_SECRETS.values()]
    for r in d["resources"]:
        for key, val in r["inputs"].items():
            if key in r["secretKeys"]:
                continue
            text = json.dumps(val)
            for v in values:
                needle = v.strip().splitlines()[1] if v.startswith("-----") else v
                assert needle not in text, f"{r['type']} {r['name']}.{key} leaks a secret"
    for path, art in d["artifacts"].items():
        for v in values:
            needle = v.strip().splitlines()[1] if v.startswith("-----") else v
            assert needle not in art["content"], f"artifact {path} leaks a secret"
        if art["secret"]:
            assert art["mode"] == 0o600 or path.startswith("k8s/"), path
    for name, val in d["outputs"].items():
        if name in d["secretOutputs"]:
            continue
        for v in values:
            assert v not in json.dumps(val), name


def test_program_refuses_a_plain_api_key_from_pulumi_config():
    """Under `pulumi up` the program itself checks secret-ness (`is_config_secret`), not only the plan."""
    import subprocess
    import sys

    from .conftest import ROOT

    code = (
        "import yaml, sys; sys.path.insert(0, '.');"
        "from vllm_stack.offline.engine import run_program;"
        "from vllm_stack.loader import split_namespaced;"
        "plain, _ = split_namespaced(yaml.safe_load(open('Pulumi.dev.yaml'))['config']);"
        "plain['apiKey'] = 'sk-plain-value-in-config-0001';"
        "run_program('.', 'dev', plain, {'sshPrivateKey': 'k'})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert "apiKey: must be a Pulumi secret" in proc.stderr
    assert "sk-plain-value-in-config-0001" not in proc.stderr


def test_grafana_datasource_is_where_prometheus_listens(dev):
    """Grafana runs on the host network: its datasource must be Prometheus' own listen address
    (it was `http://prometheus:9090`, a name nothing resolves there)."""
    import yaml

    prom = one(dev, "docker:index/container:Container", "monitoring-prometheus")
    listen = next(a.split("=", 1)[1] for a in prom["inputs"]["command"] if a.startswith("--web.listen-address="))
    ds = yaml.safe_load(dev["artifacts"]["monitoring/grafana/datasources/prometheus.yaml"]["content"])
    assert ds["datasources"][0]["url"] == f"http://{listen}"
    assert dev["outputs"]["prometheusUrl"] == f"http://{listen}"
    assert prom["inputs"]["networkMode"] == "host"
    graf = one(dev, "docker:index/container:Container", "monitoring-grafana")
    assert graf["inputs"]["networkMode"] == "host"


def test_commands_are_quoted_words(dev):
    """Every remote command is built word by word (render/host_commands.py)."""
    cmds = {r["name"]: r["inputs"] for r in by_type(dev, "command:remote:Command")}
    assert cmds["gpu-dev-1-llama-8b-env"]["create"] == "sudo /usr/local/sbin/vllm-write-secrets llama-8b"
    assert cmds["gpu-dev-1-llama-8b-env"]["delete"] == "sudo rm -f /etc/vllm/llama-8b.env"


def test_alertmanager_container_beside_prometheus_with_its_config_as_a_0600_secret(dev):
    """Alerts reach someone: the monitoring host runs Alertmanager on loopback, Prometheus notifies
    it, and alertmanager.yml (the receiver URL inside) travels only as secret stdin into a 0600 file."""
    import yaml

    from vllm_stack import defaults as D
    from vllm_stack.deployment import ALERTMANAGER_CONTAINER, ALERTMANAGER_DIR

    am = one(dev, "docker:index/container:Container", "monitoring-alertmanager")
    assert am["inputs"]["name"] == ALERTMANAGER_CONTAINER and am["inputs"]["networkMode"] == "host"
    assert am["inputs"]["command"] == [
        f"--config.file={ALERTMANAGER_DIR}/alertmanager.yml",
        "--storage.path=/alertmanager",
        "--web.listen-address=127.0.0.1:9093",
        "--cluster.listen-address=",
    ]
    assert am["inputs"]["restart"] == "always"
    prom = yaml.safe_load(dev["artifacts"]["monitoring/prometheus.yml"]["content"])
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    cfg_file = one(dev, "command:remote:Command", "monitoring-alertmanager-config")
    assert "stdin" in cfg_file["secretKeys"] and cfg_file["inputs"]["logging"] == "none"
    create = cfg_file["inputs"]["create"]
    assert "-m 600" in create and f"-o {D.ALERTMANAGER_UID}" in create
    deployed = yaml.safe_load(unwrap(cfg_file["inputs"]["stdin"]))
    (hook,) = [r for r in deployed["receivers"] if r["name"] == "team-webhook"]
    assert hook["webhook_configs"][0]["url"] == SCAN_SECRETS["alertWebhookUrl"]
    recorded = dev["artifacts"]["monitoring/alertmanager.yml"]
    assert recorded["secret"] and recorded["mode"] == 0o600
    assert "https://secret-placeholder.invalid/" in recorded["content"]
    # only the file is mounted: its 0700 parent directory (umask 077) stays out of the container's path
    (vol,) = am["inputs"]["volumes"]
    assert vol["hostPath"] == vol["containerPath"] == f"{ALERTMANAGER_DIR}/alertmanager.yml" and vol["readOnly"]


def test_container_waits_for_health_as_long_as_the_startup_budget(dev):
    c = one(dev, "docker:index/container:Container", "llama-8b-od-0")
    assert c["inputs"]["wait"] is True and c["inputs"]["waitTimeout"] == 1200  # image pull 300 + startup 900
    assert c["inputs"]["healthcheck"]["startPeriod"] == "900s"  # a loading replica is not `unhealthy`
    server = one(dev, "vllmstack:index:DockerVllmServer", "llama-8b-od-0")
    assert server["inputs"]["startupBudgetSeconds"] == 900 and server["inputs"]["healthWaitSeconds"] == 1200
