"""Input types shared by the components: plain data plus `pulumi.Input`s, as `TypedDict`s.

TypedDicts because the same classes serve a Python program (call them like a constructor:
`SshArgs(host=..., user=...)`) and the component provider host, whose schema is inferred from
these annotations (`pulumi.provider.experimental`: a field typed `pulumi.Input[...]` may be an
Output of another resource; a bare type must be known when the program runs). No
`from __future__ import annotations` here: the schema analyzer reads the annotation objects.
"""

from typing import NotRequired, TypedDict

import pulumi
from pulumi_command import remote


class SshArgs(TypedDict):
    """How pulumi-command reaches a host over SSH."""

    host: pulumi.Input[str]
    """Address or DNS name of the host."""
    user: pulumi.Input[str]
    """Login user (needs passwordless sudo)."""
    port: NotRequired[pulumi.Input[int]]
    """SSH port (22)."""
    private_key: NotRequired[pulumi.Input[str]]
    """PEM private key, a secret; without it the deployer's ssh-agent is used."""


class FileArgs(TypedDict):
    """A file the component writes on a host, from stdin (never argv)."""

    id: str
    """Suffix of the file's resource name, unique within the component (changing it replaces the file)."""
    path: str
    """Absolute path on the host."""
    content: str
    mode: NotRequired[int]
    """File mode (0o644)."""


class WeightsFetchArgs(TypedDict):
    """One model's weights pre-fetch on a host: files to install, then a command that blocks until done."""

    model: str
    files: list[FileArgs]
    """The fetch script (and, systemd runtime, its oneshot unit)."""
    command: str
    """Runs the pre-fetch (`host_commands.fetch_weights_unit` / `fetch_weights_container`); a no-op
    when the weights are complete."""
    timeout: str
    """How long `pulumi up` waits for it (Pulumi duration: image pull + the download's share of the
    startup budget)."""


class VolumeArgs(TypedDict):
    host_path: str
    container_path: str
    read_only: NotRequired[bool]


class HostContainerArgs(TypedDict):
    """A long-running container on a host's docker engine (host network)."""

    name: str
    image: str
    command: NotRequired[list[str]]
    env: NotRequired[dict[str, str]]
    volumes: NotRequired[list[VolumeArgs]]


class BackendArgs(TypedDict):
    """One vLLM endpoint the front routes a model to."""

    model: str
    address: str
    port: int
    capacity: str
    """onDemand | spot"""


class DrainArgs(TypedDict):
    """A spot replica's drain hook: runs on the front host before the replica is deleted."""

    ssh: SshArgs
    command: str
    """The hook (`host_commands.drain_hook`): takes the replica out of the front, waits, then returns."""
    seconds: int
    """How long the hook waits for in-flight requests (the policy pack judges this number)."""


def connection(ssh: SshArgs) -> remote.ConnectionArgs:
    """pulumi-command's connection from `SshArgs` (the port defaults to 22)."""
    port = ssh.get("port", 22)
    return remote.ConnectionArgs(
        host=ssh["host"],
        user=ssh["user"],
        private_key=ssh.get("private_key"),
        port=float(port) if isinstance(port, int) else pulumi.Output.from_input(port).apply(float),  # type: ignore[arg-type]
    )


class PoolArgs(TypedDict):
    """What both pools take: the model, its replica split, and the backends the front routes to."""

    model: str
    on_demand: int
    spot: int
    spot_max: int
    gpus: int
    backends: list[BackendArgs]
