"""Running the CDK CLI for a deployment: the command line, its environment and credentials, the live log."""

from __future__ import annotations

import json
import logging
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import Value
from django.db.models.functions import Concat

from infra.config import CDK_JSON, CONTEXT_FILE, INFRA_DIR
from metering.runs import beat
from portal.deployments.models import Deployment, DeploymentAction, PipelineEnvironment

logger = logging.getLogger(__name__)

# The log reaches the database in batches: often enough to watch live, rarely enough to stay cheap.
FLUSH_SECONDS = 0.5
FLUSH_LINES = 50

NO_CREDENTIALS = (
    "No AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or give the worker an "
    "instance or container role) in the environment of the Celery worker, then run {action} again. "
    "Synthesize needs no credentials."
)

# Variables through which the AWS SDKs find credentials; synth runs without them (see offline_env).
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class RunRefused(Exception):
    """A run that cannot start (no credentials, wrong account, no CLI); the message is for the operator."""


def cdk_cli() -> list[str]:
    """The CDK CLI as argv: settings.CDK_CLI, else the pinned one from `make cdk`, else `cdk` on PATH."""
    configured = settings.CDK_CLI
    if configured:
        return shlex.split(configured)
    local = INFRA_DIR / "node_modules" / ".bin" / "cdk"
    if local.exists():
        return [str(local)]
    found = shutil.which("cdk")
    if not found:
        raise RunRefused("The CDK CLI is not installed: run `make cdk` (or set CDK_CLI to its path).")
    return [found]


def cdk_arguments(action: str, outputs_file: Path) -> list[str]:
    common = ["--no-color", "--ci", "--no-notices"]
    if action == DeploymentAction.SYNTH:
        return ["synth", "--quiet", *common]
    if action == DeploymentAction.DIFF:
        return ["diff", "--all", *common]
    if action == DeploymentAction.DEPLOY:
        return ["deploy", "--all", "--require-approval", "never", "--progress", "events",
                "--outputs-file", str(outputs_file), *common]
    if action == DeploymentAction.DESTROY:
        return ["destroy", "--all", "--force", *common]
    raise ValueError(f"unknown action {action!r}")


def environment_context(environment: PipelineEnvironment) -> dict:
    """infra/cdk.context.json with the environment's overrides (each replaces a whole top-level key)."""
    return {**json.loads(CONTEXT_FILE.read_text()), **(environment.context or {})}


def prepare_workdir(deployment: Deployment) -> Path:
    """A directory of this run's own: cdk.json (the app and infra's feature flags) and cdk.context.json.

    The CLI reads both from its working directory. A directory per run keeps infra/cdk.context.json (shared,
    in git) untouched, lets each environment carry its own context, and keeps parallel runs' cloud
    assemblies apart.
    """
    workdir = Path(settings.VAR_DIR) / "deployments" / deployment.environment.name / str(deployment.pk)
    workdir.mkdir(parents=True, exist_ok=True)
    infra_cdk = json.loads(CDK_JSON.read_text())
    app = f"{shlex.quote(sys.executable)} {shlex.quote(str(INFRA_DIR / 'app.py'))}"
    (workdir / "cdk.json").write_text(json.dumps({"app": app, "context": infra_cdk.get("context", {})}, indent=2))
    (workdir / "cdk.context.json").write_text(json.dumps(environment_context(deployment.environment), indent=2))
    return workdir


@dataclass
class Credentials:
    env: dict[str, str]  # what to add to the child's environment
    account: str | None


def base_env(environment: PipelineEnvironment) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CDK_DEFAULT_ACCOUNT": environment.account,
        "CDK_DEFAULT_REGION": environment.region,
        "AWS_REGION": environment.region,
        "AWS_DEFAULT_REGION": environment.region,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def offline_env(env: dict[str, str]) -> dict[str, str]:
    """Synth without credentials, so the CLI cannot swap in the caller's account for the environment's."""
    env = {k: v for k, v in env.items() if k not in _CREDENTIAL_VARS}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    return env


def resolve_credentials(environment: PipelineEnvironment, action: str) -> Credentials:
    """The worker's credentials (or a role assumed with them), checked against the environment's account.

    Nothing is stored: temporary credentials go into the child process's environment only.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(region_name=environment.region)
    if session.get_credentials() is None:
        raise RunRefused(NO_CREDENTIALS.format(action=action))
    extra: dict[str, str] = {}
    try:
        if environment.assume_role_arn:
            answer = session.client("sts").assume_role(
                RoleArn=environment.assume_role_arn,
                RoleSessionName=f"metering-portal-{environment.name}"[:64],
                DurationSeconds=3600,
            )["Credentials"]
            extra = {"AWS_ACCESS_KEY_ID": answer["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": answer["SecretAccessKey"],
                     "AWS_SESSION_TOKEN": answer["SessionToken"]}
            session = boto3.Session(aws_access_key_id=extra["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=extra["AWS_SECRET_ACCESS_KEY"],
                                    aws_session_token=extra["AWS_SESSION_TOKEN"], region_name=environment.region)
        account = session.client("sts").get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as exc:
        what = f"assume {environment.assume_role_arn}" if environment.assume_role_arn else "check the credentials"
        raise RunRefused(f"Could not {what} with the worker's AWS credentials: {exc}") from exc
    if account != environment.account:
        # The CLI hands the app the caller's account: deploying anyway would target the wrong account.
        raise RunRefused(
            f"The AWS credentials are for account {account}, but environment {environment.name} is account "
            f"{environment.account}. Use credentials of that account, or set a role in it to assume."
        )
    return Credentials(env=extra, account=account)


def child_env(environment: PipelineEnvironment, action: str) -> dict[str, str]:
    env = base_env(environment)
    if action == DeploymentAction.SYNTH:
        return offline_env(env)
    credentials = resolve_credentials(environment, action)
    if credentials.env:
        # The assumed role's keys must win over a profile the worker may have.
        env = {k: v for k, v in env.items() if k not in _CREDENTIAL_VARS}
        env.update(credentials.env)
    return env


class LogWriter:
    """Appends lines to Deployment.log in batches, with an UPDATE ... SET log = log || chunk."""

    def __init__(self, deployment_id: int):
        self.deployment_id = deployment_id
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def write(self, line: str) -> None:
        self.pending.append(line if line.endswith("\n") else line + "\n")
        if len(self.pending) >= FLUSH_LINES or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def tick(self) -> None:
        beat()  # called every FLUSH_SECONDS while the CLI is silent: the run is alive all the same
        if self.pending and time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        beat()
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        chunk, self.pending = "".join(self.pending), []
        Deployment.objects.filter(pk=self.deployment_id).update(log=Concat("log", Value(chunk)))


def run_streaming(argv: list[str], *, cwd: Path, env: dict[str, str], log: LogWriter) -> int:
    """Run argv, streaming stdout and stderr (merged, line by line) into the log; return the exit code."""
    log.write("$ " + " ".join(shlex.quote(a) for a in argv))
    log.flush()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
                            start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            try:
                line = lines.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                log.tick()
                continue
            if line is None:
                break
            log.write(line)
        return proc.wait()
    except BaseException:
        # A Celery time limit or a worker shutdown: stop the CLI (and the app it started) with us.
        _terminate(proc)
        raise
    finally:
        log.flush()


def _terminate(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
