"""What every vllm-stack component does the same way: its type token, its registered inputs,
and an alias to the type it had before the per-platform split (so `pulumi up` on an existing
stack renames in place instead of replacing every child)."""

import typing
from typing import Any, Mapping, MutableMapping, NotRequired, Required, Sequence

import pulumi

from vllm_stack import defaults as D


def _camel(key: str) -> str:
    """The schema's (and the engine's) spelling of an input: `api_key` → `apiKey`."""
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _unwrap(hint: Any) -> Any:
    """`NotRequired[int]` / `Required[X]` → the type inside."""
    while typing.get_origin(hint) in (NotRequired, Required):
        hint = typing.get_args(hint)[0]
    return hint


def _is_list_hint(hint: Any) -> bool:
    origin: Any = typing.get_origin(hint)  # Any: typeshed types get_origin's result too narrowly for list
    return origin is list


def coerce_integers(args: MutableMapping[str, Any], cls: Any) -> None:
    """Turn whole floats into ints where the args class says `int`, nested TypedDicts and lists included.

    Through the provider host (a YAML or TypeScript program) every number arrives as a protobuf
    double: a port of 8000 would become `8000.0` in an endpoint or a docker port. In place, so the
    component's own reference to `args` sees it too."""
    # The raw annotations, not get_type_hints: `pulumi.Input` holds forward references it cannot resolve.
    hints = dict(cls.__annotations__) if typing.is_typeddict(cls) else {}
    for key, hint in hints.items():
        if key not in args:
            continue
        hint, value = _unwrap(hint), args[key]
        if hint is int and isinstance(value, float) and value.is_integer():
            args[key] = int(value)
        elif typing.is_typeddict(hint) and isinstance(value, MutableMapping):
            coerce_integers(value, hint)
        elif _is_list_hint(hint) and isinstance(value, list):
            (item,) = typing.get_args(hint) or (None,)
            if typing.is_typeddict(item):
                for v in value:
                    if isinstance(v, MutableMapping):
                        coerce_integers(v, item)


class Component(pulumi.ComponentResource):
    """Base class: type `vllmstack:index:<ClassName>`; `args` registered as the component's inputs."""

    #: The pre-split type name (`GpuNode`, `VllmServer`, ...), aliased so existing stacks keep their URNs.
    _previous_type: str | None = None

    def __init__(self, name: str, args: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        if isinstance(args, MutableMapping):
            coerce_integers(args, type(self).__init__.__annotations__.get("args"))
        aliases: list[pulumi.Input[str] | pulumi.Alias] = []
        if self._previous_type:
            aliases.append(pulumi.Alias(type_=f"{D.COMPONENT_PREFIX}:{self._previous_type}"))
        #: The parent the caller gave (the children's alias target after a move).
        self.opts_parent = opts.parent if opts is not None else None
        #: What the caller made this component wait for; children that must wait too are given it.
        self.opts_depends_on: list[pulumi.Resource] = [
            d for d in _as_list(opts.depends_on if opts else None) if isinstance(d, pulumi.Resource)
        ]
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))
        super().__init__(
            f"{D.COMPONENT_PREFIX}:{type(self).__name__}", name, {_camel(k): v for k, v in args.items()}, opts
        )

    def child(self, *, depends_on: Sequence[pulumi.Resource] | None = None, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a child: `parent=self`, waiting for what this component waits for (Pulumi does not
        pass a component's dependsOn to its children) and for `depends_on`."""
        return pulumi.ResourceOptions(parent=self, depends_on=self.opts_depends_on + list(depends_on or []), **kwargs)

    def publish(self, **outputs: Any) -> None:
        """Set each output attribute (declared `pulumi.Output[...]` on the class) and register them all."""
        for key, value in outputs.items():
            setattr(self, key, pulumi.Output.from_input(value))
        self.register_outputs({_camel(key): getattr(self, key) for key in outputs})
