"""The component provider host (provider/__main__.py) as a process, spoken to over its gRPC protocol.

No Pulumi CLI exists here, so no engine launches the plugin; this test does what the engine does
first: start the plugin with an engine address, read the port it prints, and call the
ResourceProvider service. GetPluginInfo and GetSchema need no engine (Construct does: it registers
the children with the engine's resource monitor, and stays untested outside a real `pulumi up`).
The schema served must be the committed provider/schema.json, which tests/unit/test_provider_schema
checks against the components and the YAML example.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from concurrent import futures

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)

from vllm_stack import __version__
from vllm_stack.components.schema import SCHEMA_FILE

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = ROOT / "provider"


@contextlib.contextmanager
def _provider_process(engine_address: str):
    """The plugin as the engine starts it: engine address as the argument, the port on stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(PROVIDER / "__main__.py"), engine_address],
        cwd=PROVIDER,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip().isdigit(), f"no port printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def provider():
    with _provider_process("127.0.0.1:9") as stub:  # nothing listens there: these calls need no engine
        yield stub


def test_the_hosted_provider_serves_the_committed_schema(provider):
    resp = provider.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60)
    served = json.loads(resp.schema)
    assert served == json.loads(SCHEMA_FILE.read_text())
    assert served["name"] == "vllmstack" and served["version"] == __version__
    assert "vllmstack:index:DockerVllmServer" in served["resources"]


def test_the_hosted_provider_reports_its_version(provider):
    info = provider.GetPluginInfo(empty_pb2.Empty(), timeout=30)
    assert info.version == __version__


# --- Construct: what a YAML/TypeScript program's `pulumi up` asks the provider to do ----------------
#
# The engine is replaced by the plan's own mock monitor (vllm_stack.offline.engine.RecordingMonitor)
# served over gRPC, plus an Engine service that keeps the log lines. Nothing else is faked: the
# provider process deserializes the inputs by its inferred schema and builds the component's children
# exactly as it would for a real engine.


class _Monitor(resource_pb2_grpc.ResourceMonitorServicer):
    def __init__(self, monitor) -> None:
        self.monitor = monitor

    def SupportsFeature(self, request, context):  # noqa: N802 - gRPC method names
        return resource_pb2.SupportsFeatureResponse(hasSupport=request.id != "outputValues")

    def GetDeploymentInfo(self, request, context):  # noqa: N802
        return self.monitor.GetDeploymentInfo(request)

    def RegisterResource(self, request, context):  # noqa: N802
        return self.monitor.RegisterResource(request)

    def RegisterResourceOutputs(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    def RegisterPackage(self, request, context):  # noqa: N802
        return resource_pb2.RegisterPackageResponse(ref="vllmstack-test")

    def SignalAndWaitForShutdown(self, request, context):  # noqa: N802
        return empty_pb2.Empty()


class _Engine(engine_pb2_grpc.EngineServicer):
    def __init__(self) -> None:
        self.logs: list[str] = []

    def Log(self, request, context):  # noqa: N802
        self.logs.append(request.message)
        return empty_pb2.Empty()

    def GetRootResource(self, request, context):  # noqa: N802
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(self, request, context):  # noqa: N802
        return engine_pb2.SetRootResourceResponse()


@pytest.fixture(scope="module")
def engine():
    import pulumi.runtime.settings as settings

    from vllm_stack.offline.engine import RecordingMocks, RecordingMonitor

    settings.reset_options(project="vllm-stack", stack="provider-test")  # the mock monitor's URNs
    monitor, eng = RecordingMonitor(RecordingMocks()), _Engine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(_Monitor(monitor), server)
    engine_pb2_grpc.add_EngineServicer_to_server(eng, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", monitor, eng
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def hosted(engine):
    address, monitor, eng = engine
    with _provider_process(address) as stub:
        yield stub, address, monitor, eng


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


DOCKER_SERVER_INPUTS = {
    "model": "qwen-7b",
    "capacity": "spot",
    "argv": ["Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen-7b", "--host", "0.0.0.0", "--port", "8000"],
    "gpu": "L40S",
    "address": "10.0.2.21",
    "port": 8000,
    "containerName": "vllm-qwen-7b-spot-0",
    "image": "vllm/vllm-openai:v0.33.0",
    "env": {"HF_HOME": "/var/lib/vllm/models"},
    "gpus": "device=0",
    "secretEnvFile": "/etc/vllm/qwen-7b.env",
    "weightsDir": "/var/lib/vllm/models",
    "labels": {"vllm-stack/model": "qwen-7b"},
    "stopTimeout": 35,
    "startupBudgetSeconds": 900,
    "healthWaitSeconds": 1200,
    "drain": {
        "ssh": {"host": "10.0.1.11", "user": "ubuntu"},
        "command": "sudo /usr/local/sbin/vllm-drain qwen-7b 10.0.2.21:8000 20",
        "seconds": 20,
    },
}


def _construct(hosted, name: str, inputs: dict):
    stub, address, _, _ = hosted
    request = provider_pb2.ConstructRequest(
        project="vllm-stack",
        stack="provider-test",
        monitorEndpoint=address,
        type="vllmstack:index:DockerVllmServer",
        name=name,
        inputs=_struct(inputs),
    )
    return stub.Construct(request, timeout=120)


def test_construct_builds_a_docker_server_from_schema_inputs(hosted):
    _, _, monitor, eng = hosted
    resp = _construct(hosted, "qwen-7b-spot-0", DOCKER_SERVER_INPUTS)
    assert resp.urn.endswith("vllmstack:index:DockerVllmServer::qwen-7b-spot-0"), (resp.urn, eng.logs)
    outputs = json_format.MessageToDict(resp.state)
    assert outputs["endpoint"] == "10.0.2.21:8000" and outputs["capacity"] == "spot"
    children = {r.name: r for r in monitor.recorded if r.parent == resp.urn}
    container = children["qwen-7b-spot-0"]
    assert container.type == "docker:index/container:Container"
    assert container.inputs["command"] == DOCKER_SERVER_INPUTS["argv"]
    assert container.inputs["ports"][0]["ip"] == "10.0.2.21"
    assert container.inputs["waitTimeout"] == 1200  # an int from a protobuf double: coerced by the component
    hook = children["qwen-7b-spot-0-drain"]
    assert hook.type == "command:remote:Command" and "vllm-drain qwen-7b" in hook.inputs["delete"]
    assert container.urn in hook.dependencies  # deleted after the hook ran


def test_construct_refuses_inputs_the_schema_does_not_allow(hosted):
    bad = {k: v for k, v in DOCKER_SERVER_INPUTS.items() if k != "argv"}
    with pytest.raises(grpc.RpcError) as err:
        _construct(hosted, "missing-argv", bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The property errors travel in the rich status (google.rpc.Status details), as the engine reads them.
    details = b"".join(v for k, v in err.value.trailing_metadata() or () if k == "grpc-status-details-bin")
    assert b"argv" in details
