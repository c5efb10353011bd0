"""Inputs and outputs both variants of a pool, a front and a monitoring stack share, declared once.

The schema analyzer (`pulumi.provider.experimental`) collects fields through the MRO but reads a
field's description only from the class that is analyzed, so a field with a description is
declared on each variant instead (the variant's annotation wins).
"""

from typing import NotRequired, TypedDict

import pulumi

from vllm_stack.endpoints import Backend

from .args import PoolArgs
from .base import Component
from .tls import TlsArgs


class Pool(Component):
    _previous_type = "SpotOnDemandPool"
    endpoints: pulumi.Output[list[str]]
    on_demand_replicas: pulumi.Output[int]
    spot_replicas: pulumi.Output[int]
    gpus: pulumi.Output[int]

    def publish_pool(self, args: PoolArgs) -> None:
        self.publish(
            endpoints=[Backend(**b).hostport for b in args["backends"]],
            on_demand_replicas=args["on_demand"],
            spot_replicas=args["spot"],
            gpus=args["gpus"],
        )


class FrontArgs(TlsArgs):
    """What both fronts take besides their platform's files or objects."""

    url: str
    routes: dict[str, str]


class Front(Component):
    _previous_type = "NginxFront"
    url: pulumi.Output[str]
    routes: pulumi.Output[dict[str, str]]

    def publish_front(self, args: FrontArgs) -> None:
        """`url` and `routes`, as the front was given them."""
        self.publish(url=args["url"], routes=args["routes"])


class MonitoringArgs(TypedDict):
    """What both monitoring stacks take besides their platform's files or objects."""

    prometheus_url: str
    grafana_url: NotRequired[str]
    grafana_admin_password: NotRequired[pulumi.Input[str]]
    alertmanager_config: NotRequired[pulumi.Input[str]]


class Monitoring(Component):
    _previous_type = "MonitoringStack"
    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str | None]

    def publish_urls(self, args: MonitoringArgs) -> None:
        self.publish(prometheus_url=args["prometheus_url"], grafana_url=args.get("grafana_url"))
