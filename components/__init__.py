"""Thin Pulumi ComponentResources: each calls the pure renderers in `vllm_stack.render`
and creates its child resources with `parent=self`. No rendering logic lives here."""
