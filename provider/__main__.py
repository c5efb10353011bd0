"""Host vllm-stack's components for Pulumi programs in any language (TypeScript, Go, YAML, ...).

`pulumi package add ./provider` (or `github.com/<org>/vllm-stack/provider@<tag>`) runs this file;
the schema is inferred from the type annotations of `vllm_stack.components.COMPONENTS`.
"""

from pulumi.provider.experimental import component_provider_host

from vllm_stack import __version__
from vllm_stack.components import COMPONENTS
from vllm_stack.defaults import PROVIDER_NAME

if __name__ == "__main__":
    component_provider_host(components=COMPONENTS, name=PROVIDER_NAME, version=__version__)
