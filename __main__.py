"""The vllm-stack Pulumi program (`pulumi up` runs this file): one consumer of the package.

Everything is in `vllm_stack.stack`: config → deployment model → rendered artifacts →
components (`vllm_stack.components`).
"""

from vllm_stack.stack import main

main()
