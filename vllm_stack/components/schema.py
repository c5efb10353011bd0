"""The package schema the component provider host serves, generated offline (no engine needed).

`python -m vllm_stack.components.schema --write` regenerates provider/schema.json, the file a
reviewer reads to see what `pulumi package add` gives another language.
"""

import json
import sys
from pathlib import Path
from typing import Any

from pulumi.provider.experimental.component import ComponentProvider

from vllm_stack import __version__
from vllm_stack.defaults import PROVIDER_NAME

from . import COMPONENTS

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "provider" / "schema.json"


def schema() -> dict[str, Any]:
    provider = ComponentProvider(COMPONENTS, PROVIDER_NAME, version=__version__)
    assert provider.schema is not None
    doc: dict[str, Any] = json.loads(provider.schema)
    return doc


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = dump(schema())
    if sys.argv[1:] == ["--write"]:
        SCHEMA_FILE.write_text(text)
    else:
        sys.stdout.write(text)
