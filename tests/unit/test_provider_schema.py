"""The component provider (provider/): its inferred schema, generated offline, and the YAML example."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import yaml

from vllm_stack.components import COMPONENTS
from vllm_stack.components.schema import SCHEMA_FILE, dump, schema

ROOT = Path(__file__).resolve().parents[2]
SECRET_INPUTS = {"apiKey", "extraApiKeys", "hfToken", "grafanaAdminPassword", "tlsPrivateKey", "tlsCertificate"}


@pytest.fixture(scope="module")
def doc() -> dict:
    return schema()


def test_committed_schema_is_what_the_provider_serves(doc):
    """provider/schema.json is reviewed by humans: regenerate with `python -m vllm_stack.components.schema --write`."""
    assert SCHEMA_FILE.read_text() == dump(doc)


def test_every_component_with_typed_inputs_and_outputs(doc):
    assert sorted(doc["resources"]) == sorted(f"vllmstack:index:{c.__name__}" for c in COMPONENTS)
    for token, res in doc["resources"].items():
        assert res["isComponent"] is True and res["description"], token
        assert res["inputProperties"] and res["properties"], token
        for name, prop in {**res["inputProperties"], **res["properties"]}.items():
            assert "type" in prop or "$ref" in prop, (token, name)
        assert set(res["requiredInputs"]) <= set(res["inputProperties"]), token
    for token, typ in doc["types"].items():
        assert typ["type"] == "object" and typ["properties"], token


def test_secrets_and_addresses_may_be_outputs_of_other_resources(doc):
    """A secret or a new machine's address is known only at deploy time: those inputs are not `plain`."""
    for token, res in doc["resources"].items():
        for name in SECRET_INPUTS & set(res["inputProperties"]):
            assert "plain" not in res["inputProperties"][name], (token, name)
    ssh = doc["types"]["vllmstack:index:SshArgs"]["properties"]
    assert not any("plain" in ssh[k] for k in ("host", "user", "privateKey"))


def test_outputs_are_the_attributes_each_component_sets(doc):
    assert sorted(doc["resources"]["vllmstack:index:DockerVllmServer"]["properties"]) == [
        "capacity",
        "endpoint",
        "model",
    ]
    assert sorted(doc["resources"]["vllmstack:index:HostNginxFront"]["properties"]) == ["routes", "url"]
    assert doc["resources"]["vllmstack:index:HostNginxFront"]["properties"]["routes"]["type"] == "object"


def test_plugin_manifest_and_entry_point():
    manifest = yaml.safe_load((ROOT / "provider" / "PulumiPlugin.yaml").read_text())
    assert manifest == {"runtime": "python"}
    # Imported, not run: the entry point only starts the gRPC server under `__main__`.
    module = runpy.run_path(str(ROOT / "provider" / "__main__.py"), run_name="provider_probe")
    assert module["COMPONENTS"] is COMPONENTS and module["PROVIDER_NAME"] == "vllmstack"


def _yaml_program() -> dict:
    return yaml.safe_load((ROOT / "examples" / "yaml-single-host" / "Pulumi.yaml").read_text())


def test_yaml_example_uses_the_schema(doc):
    program = _yaml_program()
    ours = {n: r for n, r in program["resources"].items() if r["type"].startswith("vllmstack:")}
    assert {r["type"] for r in ours.values()} == {
        "vllmstack:index:SshGpuNode",
        "vllmstack:index:DockerVllmServer",
        "vllmstack:index:HostNginxFront",
    }
    for name, r in ours.items():
        res = doc["resources"][r["type"]]
        props = set(r["properties"])
        assert props <= set(res["inputProperties"]), (name, props - set(res["inputProperties"]))
        assert set(res["requiredInputs"]) <= props, (name, set(res["requiredInputs"]) - props)
        for key, value in r["properties"].items():
            ref = res["inputProperties"][key].get("$ref", "")
            if ref.startswith("#/types/") and isinstance(value, dict) and "fn::readFile" not in value:
                typ = doc["types"][ref.removeprefix("#/types/")]
                assert set(value) <= set(typ["properties"]) and set(typ.get("required", [])) <= set(value), (name, key)
    for ref in re.findall(r"\$\{([\w-]+)\.(\w+)\}", yaml.safe_dump(program["outputs"])):
        res = doc["resources"][program["resources"][ref[0]]["type"]]
        assert ref[1] in res["properties"], ref


def test_yaml_check_sees_an_unknown_input(doc):
    program = _yaml_program()
    program["resources"]["front"]["properties"]["bogus"] = 1
    res = doc["resources"]["vllmstack:index:HostNginxFront"]
    assert not set(program["resources"]["front"]["properties"]) <= set(res["inputProperties"])


def test_whole_floats_from_the_provider_host_become_ints_where_the_args_say_int():
    """Protobuf numbers are doubles: a YAML program's `port: 8000` reaches the component as 8000.0."""
    from vllm_stack.components.base import coerce_integers
    from vllm_stack.components.host import DockerVllmServerArgs
    from vllm_stack.components.args import PoolArgs

    args = {"port": 8000.0, "stop_timeout": 35.0, "drain": {"seconds": 20.0, "command": "x"}, "model": "m"}
    coerce_integers(args, DockerVllmServerArgs)
    assert args == {"port": 8000, "stop_timeout": 35, "drain": {"seconds": 20, "command": "x"}, "model": "m"}
    assert all(type(v) is int for v in (args["port"], args["stop_timeout"], args["drain"]["seconds"]))
    pool = {"on_demand": 1.0, "backends": [{"model": "m", "address": "10.0.0.1", "port": 8001.0, "capacity": "spot"}]}
    coerce_integers(pool, PoolArgs)
    assert type(pool["on_demand"]) is int and type(pool["backends"][0]["port"]) is int
    odd = {"port": 8000.5}
    coerce_integers(odd, DockerVllmServerArgs)
    assert odd == {"port": 8000.5}  # not a whole number: left for the component to refuse
