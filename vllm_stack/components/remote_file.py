"""A file on an SSH host, written by pulumi-command from stdin (never from argv).

Secret files are created under `umask 077` and their command output is not logged, so
the content exists only in the secret stdin Output and the 0600 file.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import pulumi
from pulumi_command import remote

from vllm_stack.render import host_commands

from .base import Component


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remote_file(
    name: str,
    connection: remote.ConnectionArgs,
    path: str,
    content: pulumi.Input[str],
    *,
    mode: int = 0o644,
    owner: str = "root",
    group: str = "root",
    secret: bool = False,
    parent: Component,
    depends_on: Sequence[pulumi.Resource] = (),
) -> remote.Command:
    install = host_commands.install_file(path, mode=mode, owner=owner, group=group, secret=secret)
    return remote.Command(
        name,
        connection=connection,
        create=install,
        update=install,
        delete=host_commands.remove_file(path),
        stdin=pulumi.Output.secret(content) if secret else content,
        logging=remote.Logging.NONE if secret else remote.Logging.STDOUT_AND_STDERR,
        opts=parent.child(depends_on=list(depends_on)),
    )
