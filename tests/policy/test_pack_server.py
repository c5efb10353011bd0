"""The pack's real entry point, as the Pulumi CLI starts it: `python policies/__main__.py` serves the
analyzer gRPC API and prints its port. This test talks to it like the CLI does (GetAnalyzerInfo,
Configure, Analyze) and stops it; it proves the sys.path set-up and the registration work outside
pytest's import paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from .helpers import POLICY_DIR, ROOT, VLLM_ARGV, server

grpc = pytest.importorskip("grpc")
from google.protobuf import empty_pb2, json_format, struct_pb2  # noqa: E402
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc  # noqa: E402


@pytest.fixture(scope="module")
def analyzer():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PULUMI_CONFIG")}
    proc = subprocess.Popen(
        [sys.executable, "-u", str(POLICY_DIR / "__main__.py")],
        cwd=str(ROOT / "tests"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    port: list[str] = []
    reader = threading.Thread(target=lambda: port.append(proc.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    try:
        if not port or not port[0].isdigit():
            proc.kill()
            pytest.fail(f"the pack did not print its port: {proc.stderr.read()[-3000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port[0]}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(json.loads(json.dumps(d)))
    return s


def test_analyzer_info_lists_every_policy(analyzer):
    from vllm_policy import checks

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    names = {p.name for p in info.policies}
    assert info.name == "vllm-stack-policies"
    assert set(checks.POLICY_IDS) <= names
    schema = next(p for p in info.policies if p.name == "gpu-memory-utilization-ceiling").configSchema
    assert "prodCeiling" in json_format.MessageToDict(schema.properties)


def test_analyze_reports_a_violation_with_its_level(analyzer):
    cfg = {
        "gpu-memory-utilization-ceiling": analyzer_pb2.PolicyConfig(
            enforcementLevel=analyzer_pb2.MANDATORY, properties=_struct({"environment": "prod"})
        )
    }
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=cfg))
    argv = list(VLLM_ARGV)
    argv[argv.index("--gpu-memory-utilization") + 1] = "0.94"
    r = server(argv=argv)
    resp = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name)
    )
    found = [d for d in resp.diagnostics if d.policyName == "gpu-memory-utilization-ceiling"]
    assert len(found) == 1 and "0.94" in found[0].message and found[0].enforcementLevel == analyzer_pb2.MANDATORY
    assert {d.policyName for d in resp.diagnostics} == {"gpu-memory-utilization-ceiling"}
