"""A file on an SSH host, written by pulumi-command from stdin (never from argv).

Secret files are created under `umask 077` and their command output is not logged, so
the content exists only in the secret stdin Output and the 0600 file.
"""
from __future__ import annotations

import hashlib
import shlex
from typing import Sequence

import pulumi
from pulumi_command import remote


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remote_file(name: str, connection: remote.ConnectionArgs, path: str, content: pulumi.Input[str], *,
                mode: int = 0o644, owner: str = "root", group: str = "root", secret: bool = False,
                parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> remote.Command:
    q = shlex.quote(path)
    install = (f"sudo sh -c 'umask 077; install -D -m {mode:o} -o {owner} -g {group} /dev/stdin {q}'"
               if secret else f"sudo install -D -m {mode:o} -o {owner} -g {group} /dev/stdin {q}")
    return remote.Command(
        name,
        connection=connection,
        create=install,
        update=install,
        delete=f"sudo rm -f {q}",
        stdin=pulumi.Output.secret(content) if secret else content,
        logging=remote.Logging.NONE if secret else remote.Logging.STDOUT_AND_STDERR,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
