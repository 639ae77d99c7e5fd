#!/usr/bin/env python3
"""The CDK app: `cdk synth` / `cdk deploy` run this (cdk.json: "python3 app.py"); so does `python app.py`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Run as a script from infra/, the repository root is not on sys.path; the stacks live in the `infra`
# package (so that the tests import the very same code).
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk  # noqa: E402

from infra.config import load_context_files  # noqa: E402
from infra.stacks import build_app  # noqa: E402


def main() -> None:
    # The files are defaults: the CDK CLI passes the same context (and -c overrides), which wins.
    app = cdk.App(context=load_context_files())
    env = cdk.Environment(account=os.getenv("CDK_DEFAULT_ACCOUNT"), region=os.getenv("CDK_DEFAULT_REGION"))
    build_app(app, env=env)
    app.synth()


if __name__ == "__main__":
    main()
