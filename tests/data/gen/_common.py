"""Shared helpers for the test-vector generators in this directory.

Run every generator with the oracle virtualenv, e.g.

    /work/shared/oracle/.venv/bin/python tests/data/gen/canonical_json.py

The generators import Synapse (matrix-synapse, the version installed in that
venv) only as a *library* to compute expected values; no Synapse source text
is copied into this repository.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# NB: synapse.event_auth must be imported before synapse.state (import cycle).
import synapse.event_auth  # noqa: F401,E402
import synapse  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)

SYNAPSE_VERSION = synapse.__version__


def write_json(path: str, obj: Any) -> None:
    """Pretty-printed UTF-8 JSON, stable formatting, trailing newline."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path, DATA)}", file=sys.stderr)


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
