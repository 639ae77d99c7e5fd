"""Writes for pipeline deployments: start a run, run it, record its outcome, activate and destroy."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from infra.outputs import MissingOutputError, settings_from_outputs
from metering.runs import RunKind, heartbeat, runs_fail_stale
from portal.deployments import runner
from portal.deployments.models import (
    MUTATING_ACTIONS,
    UNFINISHED,
    Deployment,
    DeploymentAction,
    DeploymentStatus,
    PipelineEnvironment,
)
from portal.kernel import ApplicationError

logger = logging.getLogger(__name__)

# Deployments keep heartbeats like metering's runs (registered in metering.runs by DeploymentsConfig.ready).
DEPLOYMENTS = RunKind("deployment", "deployments.Deployment", state_field="status", error_field="error")


def running_deployment(environment: PipelineEnvironment) -> Deployment | None:
    return (Deployment.objects.filter(environment=environment, action__in=MUTATING_ACTIONS, status__in=UNFINISHED)
            .order_by("created_at").first())


def deployment_start(*, environment: PipelineEnvironment, action: str, requested_by: str = "") -> Deployment:
    """Record a run and queue it on a worker once the record is committed.

    A second deploy or destroy of an environment while one is queued or running is refused by a database
    constraint, so two admins (or two web processes) cannot both get one started.
    """
    if action not in DeploymentAction.values:
        raise ApplicationError(f"Unknown action {action!r}.")
    # A run whose worker was killed would hold the environment forever: it is failed first.
    runs_fail_stale(kind=DEPLOYMENTS, by=f"a new {action} request")
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(environment=environment, action=action,
                                                   requested_by=requested_by)
    except IntegrityError:
        current = running_deployment(environment)
        which = f" ({current.get_action_display().lower()} #{current.pk}, {current.status})" if current else ""
        raise ApplicationError(
            f"A deploy or destroy of {environment.name} is already in progress{which}: wait for it to finish.",
            {"deployment": current.pk if current else None},
        ) from None
    from portal.deployments.tasks import run_deployment

    transaction.on_commit(lambda: run_deployment.delay(deployment.pk))
    return deployment


def environment_destroy_start(*, environment: PipelineEnvironment, confirmation: str,
                              requested_by: str = "") -> Deployment:
    """Destroy, only when the operator typed the environment's name exactly."""
    if confirmation.strip() != environment.name:
        raise ApplicationError(f"Destroy not started: type {environment.name!r} exactly to confirm.")
    return deployment_start(environment=environment, action=DeploymentAction.DESTROY, requested_by=requested_by)


@transaction.atomic
def environment_activate(*, environment: PipelineEnvironment) -> PipelineEnvironment:
    """Make this environment's deployed outputs the portal's configuration (one active at most)."""
    if not environment.config:
        raise ApplicationError(f"Environment {environment.name} has no deployed outputs yet: deploy it first.")
    PipelineEnvironment.objects.filter(is_active=True).exclude(pk=environment.pk).update(is_active=False)
    PipelineEnvironment.objects.filter(pk=environment.pk).update(is_active=True)
    environment.is_active = True
    return environment


def _claim(deployment_id: int) -> bool:
    """queued -> running, once: a redelivered task finds it running (or finished) and does nothing."""
    now = timezone.now()
    return bool(Deployment.objects.filter(pk=deployment_id, status=DeploymentStatus.QUEUED)
                .update(status=DeploymentStatus.RUNNING, started_at=now, heartbeat_at=now))


def _finish(deployment: Deployment, *, status: str, exit_code: int | None = None, error: str = "") -> None:
    finished = timezone.now()
    started = deployment.started_at or finished
    fields = {"status": status, "finished_at": finished, "duration": finished - started, "exit_code": exit_code,
              "error": error, "heartbeat_at": finished}
    Deployment.objects.filter(pk=deployment.pk).update(**fields)
    for name, value in fields.items():
        setattr(deployment, name, value)


def deployment_run(*, deployment_id: int) -> Deployment:
    """Run a queued deployment to its end and record the outcome; safe to call twice."""
    if not _claim(deployment_id):
        return Deployment.objects.get(pk=deployment_id)
    deployment = Deployment.objects.select_related("environment").get(pk=deployment_id)
    with heartbeat(deployment):  # the log writer beats while the CLI runs, output or not
        return _run_claimed(deployment)


def _run_claimed(deployment: Deployment) -> Deployment:
    environment = deployment.environment
    log = runner.LogWriter(deployment.pk)
    workdir: Path | None = None
    try:
        env = runner.child_env(environment, deployment.action)
        argv = runner.cdk_cli()
        workdir = runner.prepare_workdir(deployment)
        outputs_file = workdir / "outputs.json"
        argv = [*argv, *runner.cdk_arguments(deployment.action, outputs_file)]
        Deployment.objects.filter(pk=deployment.pk).update(command=" ".join(argv))
        exit_code = runner.run_streaming(argv, cwd=workdir, env=env, log=log)
    except runner.RunRefused as exc:
        log.write(str(exc))
        log.flush()
        _finish(deployment, status=DeploymentStatus.FAILED, error=str(exc))
        return deployment
    except BaseException as exc:
        # Time limit, lost worker, an OS error starting the CLI: the record must not stay "running".
        logger.exception("deployment %s crashed", deployment.pk)
        _finish(deployment, status=DeploymentStatus.FAILED, error=f"The run stopped: {exc!r}")
        if not isinstance(exc, Exception):
            raise
        return deployment

    if exit_code != 0:
        _finish(deployment, status=DeploymentStatus.FAILED, exit_code=exit_code,
                error=f"cdk {deployment.action} exited with code {exit_code}; see the log.")
    elif deployment.action == DeploymentAction.DEPLOY:
        _record_outputs(deployment, outputs_file, log)
    elif deployment.action == DeploymentAction.DESTROY:
        _forget_outputs(environment)
        _finish(deployment, status=DeploymentStatus.SUCCEEDED, exit_code=0)
    else:
        _finish(deployment, status=DeploymentStatus.SUCCEEDED, exit_code=0)
    if workdir is not None and deployment.action != DeploymentAction.SYNTH:
        # Only a synth's assembly is worth keeping (to read the templates); the rest is rebuilt each run.
        shutil.rmtree(workdir / "cdk.out", ignore_errors=True)
    deployment.refresh_from_db()
    return deployment


def _record_outputs(deployment: Deployment, outputs_file: Path, log: runner.LogWriter) -> None:
    """The deployed stacks' outputs become the environment's configuration."""
    environment = deployment.environment
    try:
        outputs = json.loads(outputs_file.read_text())
        config = settings_from_outputs(outputs)
    except (OSError, ValueError, MissingOutputError) as exc:
        message = f"The deploy finished but its outputs could not be read from {outputs_file}: {exc}"
        log.write(message)
        log.flush()
        _finish(deployment, status=DeploymentStatus.FAILED, exit_code=0, error=message)
        return
    with transaction.atomic():
        env = PipelineEnvironment.objects.select_for_update().get(pk=environment.pk)
        env.outputs, env.config, env.deployed_at = outputs, config, timezone.now()
        # The first environment deployed configures the portal; switching later is the admin's choice.
        env.is_active = env.is_active or not PipelineEnvironment.objects.filter(is_active=True).exists()
        env.save(update_fields=["outputs", "config", "deployed_at", "is_active", "updated_at"])
    log.write("Outputs recorded as the configuration of " + environment.name
              + (" (active: the portal uses them)." if env.is_active else " (not active)."))
    log.flush()
    _finish(deployment, status=DeploymentStatus.SUCCEEDED, exit_code=0)


def _forget_outputs(environment: PipelineEnvironment) -> None:
    PipelineEnvironment.objects.filter(pk=environment.pk).update(
        outputs={}, config={}, is_active=False, deployed_at=None, updated_at=timezone.now())


def deployment_abandon(*, deployment: Deployment) -> Deployment:
    """Mark a run whose worker was lost as failed, so the environment can be deployed again."""
    if deployment.status not in UNFINISHED:
        raise ApplicationError(f"Deployment #{deployment.pk} is already {deployment.status}.")
    deployment.started_at = deployment.started_at or deployment.created_at
    _finish(deployment, status=DeploymentStatus.FAILED, error="Marked failed by an operator (worker lost?).")
    return deployment
