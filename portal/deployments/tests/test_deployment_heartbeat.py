"""A deployment keeps a heartbeat while the CDK CLI runs (silent or not); one whose worker died no longer
holds its environment: the next deploy request marks it failed and starts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from metering import runs as heartbeat
from portal.deployments.models import Deployment, DeploymentStatus
from portal.deployments.services import deployment_start
from portal.deployments.tasks import run_deployment
from portal.kernel import ApplicationError

pytestmark = pytest.mark.django_db


def test_a_deployment_beats_while_the_cli_is_silent(fake_cdk, no_aws_credentials, environment, monkeypatch,
                                                    settings):
    settings.RUN_STALE_AFTER_SECONDS = 1  # a beat every 0.2 s at most
    monkeypatch.setenv("FAKE_CDK_MODE", "slow")
    monkeypatch.setenv("FAKE_CDK_SLEEP", "3")  # three seconds without a line of output
    seen = []
    write = heartbeat._Beat.write

    def recorded(self):
        written = write(self)
        if written and self.model is Deployment:
            seen.append(Deployment.objects.get(pk=self.pk).heartbeat_at)
        return written

    monkeypatch.setattr(heartbeat._Beat, "write", recorded)
    deployment = Deployment.objects.create(environment=environment, action="synth")
    run_deployment(deployment.pk)

    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    # The log writer ticks every half second while the CLI is silent: a beat at least every 0.7 s or so.
    assert len(seen) >= 4, seen
    assert seen == sorted(seen) and seen[-1] - seen[0] >= timedelta(seconds=2)
    # Under 2 s apart inside 3 s of silence: some beats fall while the CLI prints nothing (a loaded CI
    # machine can delay a tick by a few hundred milliseconds, so the bound leaves room for that).
    assert max(b - a for a, b in zip(seen[:-1], seen[1:], strict=True)) < timedelta(seconds=2)
    assert deployment.heartbeat_at == deployment.finished_at


def test_a_deploy_whose_worker_died_no_longer_blocks_the_environment(fake_cdk, environment, queued, settings,
                                                                     django_capture_on_commit_callbacks):
    settings.RUN_STALE_AFTER_SECONDS = 600
    first = deployment_start(environment=environment, action="deploy")
    beat_at = timezone.now() - timedelta(minutes=5)
    Deployment.objects.filter(pk=first.pk).update(status=DeploymentStatus.RUNNING, started_at=beat_at,
                                                  heartbeat_at=beat_at)
    # Its worker is alive (a heartbeat five minutes ago, under the limit): a second deploy is refused.
    with pytest.raises(ApplicationError, match="already in progress"):
        deployment_start(environment=environment, action="deploy")

    beat_at = timezone.now() - timedelta(minutes=11)
    Deployment.objects.filter(pk=first.pk).update(heartbeat_at=beat_at)
    with django_capture_on_commit_callbacks(execute=True):
        second = deployment_start(environment=environment, action="deploy", requested_by="ops")

    first.refresh_from_db()
    assert first.status == DeploymentStatus.FAILED and first.finished_at is not None
    assert first.error.startswith("The worker stopped responding: no heartbeat since ")
    assert first.error.endswith("marked failed by a new deploy request.")
    assert second.status == DeploymentStatus.QUEUED and queued[-1] == second.pk
