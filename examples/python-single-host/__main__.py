"""One GPU host + one vLLM server + the TLS front, built from plain arguments.

Nothing here reads vllm-stack's stack config: the model, host and front are typed values of the
package (validated like the config: a bad value names its field), the files come from its pure
renderers, and the components are the same ones the stack uses. `tests/stack/test_examples_program.py`
runs this file under the Pulumi mock engine.
"""

import pulumi
import pulumi_random as random

from vllm_stack.components import DockerVllmServer, HostNginxFront, SshGpuNode
from vllm_stack.components.args import BackendArgs, FileArgs, SshArgs
from vllm_stack.components.host import DockerVllmServerArgs, HostNginxFrontArgs, SshGpuNodeArgs
from vllm_stack.config import FrontSpec, HostSpec, ModelSpec
from vllm_stack.endpoints import Backend
from vllm_stack.render.host_scripts import render_host_bootstrap
from vllm_stack.render.nginx import NginxPaths, render_front_for
from vllm_stack.render.vllm_args import public_env, serve_argv
from vllm_stack.startup import budget

config = pulumi.Config()
address = config.get("hostAddress") or "10.0.0.5"
ssh = SshArgs(host=address, user="ubuntu", port=22, private_key=config.require_secret("sshPrivateKey"))
api_key = random.RandomPassword("api-key", length=48, special=False).result

model = ModelSpec.model_validate({"name": "qwen-7b", "model": "Qwen/Qwen2.5-7B-Instruct", "gpu": "L40S"})
front = FrontSpec.model_validate({"domain": "llm.example.com", "tls": "selfSigned"})
weights = "/var/lib/vllm/models"
port = 8000
startup = budget(model)  # how long a first start may take: `pulumi up` waits for health this long

host = HostSpec.model_validate({"name": "gpu-a", "address": address, "gpu": "L40S"})
node = SshGpuNode(
    "gpu-a",
    SshGpuNodeArgs(
        ssh=ssh,
        bootstrap=render_host_bootstrap(host, runtime="docker", dcgm_bind_address="127.0.0.1"),
        models=[model.name],
        api_key=api_key,
        docker_host=f"ssh://ubuntu@{address}:22",
        gpu="L40S",
        gpu_count=1,
    ),
)

server = DockerVllmServer(
    "qwen-7b-od-0",
    DockerVllmServerArgs(
        model=model.name,
        capacity="onDemand",
        address="127.0.0.1",
        port=port,
        container_name="vllm-qwen-7b-od-0",
        image=model.image,
        argv=serve_argv(model, host="0.0.0.0", port=port, download_dir=weights),
        gpu=model.gpu,
        env=public_env(weights_dir=weights, gated=False),
        gpus="device=0",
        secret_env_file=f"/etc/vllm/{model.name}.env",
        weights_dir=weights,
        labels={"vllm-stack/model": model.name, "vllm-stack/gpu": model.gpu},
        stop_timeout=35,
        startup_budget_seconds=startup.startup_seconds,
        health_wait_seconds=startup.rollout_seconds,
    ),
    pulumi.ResourceOptions(depends_on=[node], providers=[node.docker_provider]),
)

paths = NginxPaths(upstream_auth="/etc/nginx/vllm/upstream-auth.conf")
files = render_front_for(front, [model.name], model.name, [Backend(model.name, "127.0.0.1", port)], paths=paths)
front_files = [
    FileArgs(id="nginx-conf", path=paths.conf, content=files["nginx.conf"]),
    FileArgs(
        id=f"upstreams-{model.name}-conf",
        path=paths.upstream_file(model.name),
        content=files[f"upstreams/{model.name}.conf"],
    ),
]
assert paths.upstream_auth is not None
gate = HostNginxFront(
    "front",
    HostNginxFrontArgs(
        ssh=ssh,
        url=f"https://{front.domain}",
        routes={model.name: f"https://{front.domain}/{model.name}/v1"},
        files=front_files,
        api_keys_path=paths.api_keys,
        upstream_auth_path=paths.upstream_auth,
        cert_path=paths.cert,
        key_path=paths.key,
        api_key=api_key,
        domain=front.domain,
        tls=front.tls,
    ),
    pulumi.ResourceOptions(depends_on=[server]),
)

pulumi.export("endpoint", gate.url)
pulumi.export("replica", server.endpoint)
pulumi.export("backends", [BackendArgs(model=model.name, address="127.0.0.1", port=port, capacity="onDemand")])
