"""GpuNode: a prepared place for vLLM to run.

docker platform: one existing GPU host over SSH — driver/toolkit check, `vllm` user,
weights dir, 0600 secret env files (from stdin), DCGM exporter.
kubernetes platform: the GPU node-group conventions — namespace, NVIDIA device plugin
and DCGM DaemonSets, the weights PVC.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from pulumi_command import remote

from vllm_stack import defaults as D
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.config import HostSpec, ModelSpec, StackConfig
from vllm_stack.quoting import ssh_url
from vllm_stack.render import host_commands, host_scripts
from vllm_stack.render import k8s as k8s_render
from vllm_stack.render.systemd import secret_env_path
from vllm_stack.render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN, render_secret_env_file

from . import artifacts, k8s_objects
from .remote_file import content_hash
from .stack_inputs import StackSecrets

MODEL_SECRET = "vllm-model-secrets"   # VLLM_API_KEY / HF_TOKEN for every model pod (kubernetes)
PLACEHOLDER = "secret-placeholder"  # token-safe stand-in in recorded artifacts


@dataclass(frozen=True)
class GpuNodeArgs:
    cfg: StackConfig
    secrets: StackSecrets
    host: HostSpec | None = None                  # docker platform
    models: tuple[ModelSpec, ...] = ()            # models with a replica on this host (secret env files)


def ssh_connection(host: HostSpec, secrets: StackSecrets) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(host=host.address, user=host.user, port=float(host.port),
                                 private_key=secrets.ssh_private_key)


class GpuNode(pulumi.ComponentResource):
    connection: remote.ConnectionArgs | None
    docker_provider: docker.Provider | None
    namespace: str | None
    weights_path: str
    weights_claim: str | None
    gpu: str | None
    gpu_count: int | None
    dcgm_target: ScrapeTarget | None
    secret_name: str | None

    def __init__(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{D.COMPONENT_PREFIX}:GpuNode", name, None, opts)
        self.connection = self.docker_provider = None
        self.namespace = self.weights_claim = None
        self.dcgm_target = None
        self.secret_name = None
        self.weights_path = D.VLLM_WEIGHTS_DIR
        self.ready: list[pulumi.Resource] = []
        if args.cfg.platform == "kubernetes":
            self._kubernetes(args)
            self.gpu, self.gpu_count = None, None
        else:
            assert args.host is not None
            self._ssh_host(name, args)
            self.gpu, self.gpu_count = args.host.gpu, args.host.gpu_count
            bind = host_scripts.dcgm_bind(args.cfg, args.host)
            self.dcgm_target = ScrapeTarget("dcgm", args.host.address if bind == "0.0.0.0" else bind,
                                            D.DCGM_EXPORTER_PORT, (("host", args.host.name),))
        self.register_outputs({"weightsPath": self.weights_path, "namespace": self.namespace,
                               "gpu": self.gpu, "gpuCount": self.gpu_count})

    def _ssh_host(self, name: str, args: GpuNodeArgs) -> None:
        host, cfg = args.host, args.cfg
        assert host is not None               # docker platform: checked in __init__
        conn = self.connection = ssh_connection(host, args.secrets)
        script = host_scripts.render_bootstrap_script(cfg, host.name)
        writer = host_scripts.render_secret_writer_script()
        artifacts.record(f"hosts/{host.name}/bootstrap.sh", script, D.ROOT_EXECUTABLE_MODE)
        artifacts.record(f"hosts/{host.name}/{D.SECRET_WRITER_NAME}", writer, D.EXECUTABLE_MODE)
        # The bootstrap installs the secret writer itself (byte for byte), so reruns are no-ops.
        bootstrap = remote.Command(
            f"{name}-bootstrap", connection=conn, create="sudo bash -s", update="sudo bash -s", stdin=script,
            triggers=[content_hash(script)], opts=pulumi.ResourceOptions(parent=self))
        self.ready = [bootstrap]
        for model in args.models:
            env: pulumi.Output[str] = pulumi.Output.all(args.secrets.api_key, args.secrets.hf_token).apply(
                lambda kv: render_secret_env_file({ENV_API_KEY: kv[0], ENV_HF_TOKEN: kv[1] or ""}))
            artifacts.record(f"hosts/{host.name}/etc/vllm/{model.name}.env",
                             render_secret_env_file({ENV_API_KEY: PLACEHOLDER,
                                                     ENV_HF_TOKEN: PLACEHOLDER if args.secrets.hf_token else ""}),
                             D.SECRET_FILE_MODE, secret=True)
            # Annotated: mypy cannot pick Output.secret's type variable from an Output argument alone.
            secret_env: pulumi.Output[str] = pulumi.Output.secret(env)
            self.ready.append(remote.Command(
                f"{name}-{model.name}-env", connection=conn,
                create=host_commands.write_secrets(model.name),
                update=host_commands.write_secrets(model.name),
                delete=host_commands.remove_file(secret_env_path(model.name)),
                stdin=secret_env, logging=remote.Logging.NONE,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[bootstrap])))
        # The docker CLI behind the provider reaches the host over SSH with the deployer's ssh-agent.
        self.docker_provider = docker.Provider(
            f"{name}-docker", host=ssh_url(host.user, host.address, host.port),
            ssh_opts=["-o", "StrictHostKeyChecking=accept-new"], opts=pulumi.ResourceOptions(parent=self))

    def _kubernetes(self, args: GpuNodeArgs) -> None:
        cfg = args.cfg
        self.namespace = cfg.kubernetes.namespace
        self.secret_name = MODEL_SECRET   # DCGM is discovered by Prometheus' kubernetes_sd: no static target
        objs = k8s_render.gpu_node_objects(cfg)
        created: list[pulumi.Resource] = []
        ns = None
        for obj in objs:
            artifacts.record_k8s(obj)
            res = k8s_objects.create(obj, self, depends_on=[ns] if ns is not None else None)
            if obj["kind"] == "Namespace":
                ns = res
            if obj["kind"] == "PersistentVolumeClaim":
                self.weights_claim = obj["metadata"]["name"]
            created.append(res)
        # VLLM_API_KEY / HF_TOKEN for every model pod: a Secret (envFrom), never a ConfigMap.
        placeholders = {ENV_API_KEY: PLACEHOLDER, **({ENV_HF_TOKEN: PLACEHOLDER} if args.secrets.hf_token else {})}
        secret = k8s_render.secret_object(cfg, MODEL_SECRET, placeholders)
        artifacts.record_k8s(secret)
        values = {ENV_API_KEY: args.secrets.api_key,
                  **({ENV_HF_TOKEN: args.secrets.hf_token} if args.secrets.hf_token else {})}
        created.append(k8s_objects.create(secret, self, overrides={"stringData": values},
                                          depends_on=[ns] if ns is not None else None))
        self.ready = created

