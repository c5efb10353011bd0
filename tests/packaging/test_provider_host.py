"""The component provider host (provider/__main__.py) as a process, spoken to over its gRPC protocol.

No Pulumi CLI exists here, so no engine launches the plugin; this test does what the engine does
first: start the plugin with an engine address, read the port it prints, and call the
ResourceProvider service. GetPluginInfo and GetSchema need no engine (Construct does: it registers
the children with the engine's resource monitor, and stays untested outside a real `pulumi up`).
The schema served must be the committed provider/schema.json, which tests/unit/test_provider_schema
checks against the components and the YAML example.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from vllm_stack import __version__
from vllm_stack.components.schema import SCHEMA_FILE

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = ROOT / "provider"


@pytest.fixture(scope="module")
def provider():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    # The engine address is the first argument (unused by the calls below; nothing listens there).
    proc = subprocess.Popen(
        [sys.executable, str(PROVIDER / "__main__.py"), "127.0.0.1:9"],
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


def test_the_hosted_provider_serves_the_committed_schema(provider):
    resp = provider.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60)
    served = json.loads(resp.schema)
    assert served == json.loads(SCHEMA_FILE.read_text())
    assert served["name"] == "vllmstack" and served["version"] == __version__
    assert "vllmstack:index:DockerVllmServer" in served["resources"]


def test_the_hosted_provider_reports_its_version(provider):
    info = provider.GetPluginInfo(empty_pb2.Empty(), timeout=30)
    assert info.version == __version__
