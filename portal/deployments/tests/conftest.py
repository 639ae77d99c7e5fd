"""Fixtures for deployments: a fake `cdk` on CDK_CLI that writes an outputs file, and AWS credentials or none."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from moto import mock_aws

from infra.outputs import API_STACK, EVENTS_STACK, STACK_NAMES, STACK_OUTPUTS
from portal.deployments.models import PipelineEnvironment

ACCOUNT = "123456789012"  # moto's account: sts:GetCallerIdentity answers it under mock_aws
REGION = "eu-west-1"


def fake_outputs(region: str = REGION) -> dict[str, dict[str, str]]:
    """What `cdk deploy --outputs-file` writes for the nine stacks: a plausible value for every output."""
    outputs = {stack: {key: f"{stack}-{key}" for key in keys} for stack, keys in STACK_OUTPUTS.items()}
    outputs[API_STACK].update({
        "UserPoolId": f"{region}_FakePool1", "UserPoolClientId": "fakeclient0123456789",
        "Region": region, "RestApiEndpoint": f"https://abc123.execute-api.{region}.amazonaws.com/prod",
    })
    outputs[EVENTS_STACK].update({"EventsTableName": "events", "EventsFirehoseStreamName": "saas-metering-events"})
    return outputs


FAKE_CDK = """\
#!{python}
# A stand-in for the CDK CLI: records how it was called, prints a deploy-like log, writes --outputs-file.
import json, os, sys, time

args = sys.argv[1:]
record = os.environ.get("FAKE_CDK_RECORD")
if record:
    names = ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID",
             "AWS_SESSION_TOKEN", "AWS_PROFILE", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION")
    with open(record, "a") as f:
        f.write(json.dumps({{"argv": args, "cwd": os.getcwd(), "env": {{n: os.environ.get(n) for n in names}}}}) + "\\n")
mode = os.environ.get("FAKE_CDK_MODE", "ok")
print("fake cdk " + " ".join(args), flush=True)
for stack in {stacks!r}:
    print(stack + ": start", flush=True)
if mode == "slow":
    time.sleep(float(os.environ.get("FAKE_CDK_SLEEP", "3")))
if mode == "fail":
    print("SaaSMeteringDemoIcebergTable failed: AccessDeniedException: not authorized to perform glue:CreateTable",
          file=sys.stderr, flush=True)
    sys.exit(1)
if "--outputs-file" in args:
    with open(args[args.index("--outputs-file") + 1], "w") as f:
        json.dump({outputs!r}, f)
print("done", flush=True)
"""


@pytest.fixture
def fake_cdk(tmp_path, settings, monkeypatch):
    """CDK_CLI pointing at the fake; yields a function returning the recorded calls."""
    script = tmp_path / "bin" / "cdk"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(FAKE_CDK).format(python=sys.executable, stacks=list(STACK_NAMES),
                                                       outputs=fake_outputs()))
    script.chmod(0o755)
    record = tmp_path / "cdk-calls.jsonl"
    settings.CDK_CLI = str(script)
    settings.VAR_DIR = tmp_path / "var"
    # Environment variables too, for a worker process started after this fixture.
    monkeypatch.setenv("CDK_CLI", str(script))
    monkeypatch.setenv("FAKE_CDK_RECORD", str(record))
    monkeypatch.setenv("FAKE_CDK_MODE", "ok")
    for name in ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_REGION", "AWS_REGION", "LAKE_DATABASE",
                 "LAKE_TABLE", "ATHENA_WORKGROUP", "ATHENA_OUTPUT_LOCATION", "METERED_API_BASE_URL",
                 "LAKE_EVENTS_TABLE", "EVENTS_FIREHOSE_STREAM"):
        monkeypatch.delenv(name, raising=False)

    def calls() -> list[dict]:
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return calls


@pytest.fixture
def aws_credentials(monkeypatch):
    """Credentials the SDK finds, answered by moto (account 123456789012)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credentials anywhere the SDK looks: variables, profile files, instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def environment(db):
    return PipelineEnvironment.objects.create(
        name="prod", account=ACCOUNT, region=REGION,
        context={"athena_configuration": {"workgroup_name": "billing", "output_prefix": "athena-results/",
                                          "results_expiration_days": 7}},
    )


@pytest.fixture
def queued(monkeypatch):
    """Capture the task messages deployment_start sends (the tests run them in process)."""
    sent: list[int] = []
    from portal.deployments import tasks

    monkeypatch.setattr(tasks.run_deployment, "delay", lambda deployment_id: sent.append(deployment_id))
    return sent
