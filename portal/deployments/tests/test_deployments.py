"""Deployments with the CDK CLI replaced by a fake: outputs become configuration, failures keep their log,
concurrent deploys are refused, deploy without credentials says why, destroy needs the name typed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from infra.outputs import API_STACK, settings_from_outputs
from portal.deployments.models import Deployment, DeploymentStatus, PipelineEnvironment
from portal.deployments.services import deployment_start, environment_activate, environment_destroy_start
from portal.deployments.tasks import run_deployment
from portal.deployments.tests.conftest import ACCOUNT, REGION, fake_outputs
from portal.kernel import ApplicationError, pipeline_setting

pytestmark = pytest.mark.django_db


def start_and_run(django_capture_on_commit_callbacks, queued, environment, action):
    with django_capture_on_commit_callbacks(execute=True):
        deployment = deployment_start(environment=environment, action=action, requested_by="ops")
    assert queued[-1] == deployment.pk
    run_deployment(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def test_deploy_outputs_become_the_portals_configuration(fake_cdk, aws_credentials, environment, queued,
                                                         django_capture_on_commit_callbacks):
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")

    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    assert deployment.exit_code == 0 and deployment.error == ""
    assert deployment.duration is not None and deployment.finished_at >= deployment.started_at
    assert "SaaSMeteringDemoRandomGenApiGw: start" in deployment.log and "done" in deployment.log
    assert "Outputs recorded as the configuration of prod (active" in deployment.log

    environment.refresh_from_db()
    expected = settings_from_outputs(fake_outputs())
    assert environment.outputs == fake_outputs()
    assert environment.config == expected
    assert environment.is_active and environment.deployed_at is not None

    # The identity backend, the lake backend and the tenant area now read the deployed values.
    from metering.lake.athena import AthenaLake
    from tenants.identity.cognito import configured_pool
    from tenants.views_tenant import _curl

    assert pipeline_setting("COGNITO_USER_POOL_ID") == f"{REGION}_FakePool1"
    pool = configured_pool()
    assert (pool.user_pool_id, pool.client_id, pool.region) == (f"{REGION}_FakePool1", "fakeclient0123456789", REGION)
    lake = AthenaLake.from_settings()
    assert lake.workgroup == expected["ATHENA_WORKGROUP"] and lake.database == expected["LAKE_DATABASE"]
    assert lake.region == REGION and lake.output_location == expected["ATHENA_OUTPUT_LOCATION"]
    assert _curl("TOKEN").startswith(f'curl "https://abc123.execute-api.{REGION}.amazonaws.com/prod/random/strings')

    # How the CLI was called: the whole app, no approval prompt, the outputs file, the environment's target.
    (call,) = fake_cdk()
    argv = call["argv"]
    assert argv[:2] == ["deploy", "--all"] and argv[argv.index("--require-approval") + 1] == "never"
    assert Path(argv[argv.index("--outputs-file") + 1]).parent == Path(call["cwd"])
    assert call["env"]["CDK_DEFAULT_ACCOUNT"] == ACCOUNT and call["env"]["CDK_DEFAULT_REGION"] == REGION
    assert call["env"]["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] == "1"
    context = json.loads((Path(call["cwd"]) / "cdk.context.json").read_text())
    assert context["athena_configuration"]["workgroup_name"] == "billing"  # the environment's override
    assert context["data_firehose_configuration"]["stream_name"] == "random-gen"  # infra's default
    assert json.loads((Path(call["cwd"]) / "cdk.json").read_text())["app"].endswith("infra/app.py")


def test_explicit_environment_variable_wins_over_deployed_outputs(fake_cdk, aws_credentials, environment, queued,
                                                                  django_capture_on_commit_callbacks, monkeypatch,
                                                                  settings):
    start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    monkeypatch.setenv("COGNITO_USER_POOL_ID", "eu-west-1_FromEnv")
    settings.COGNITO_USER_POOL_ID = "eu-west-1_FromEnv"
    assert pipeline_setting("COGNITO_USER_POOL_ID") == "eu-west-1_FromEnv"


def test_no_active_environment_means_settings(db, settings, monkeypatch):
    monkeypatch.delenv("ATHENA_WORKGROUP", raising=False)
    settings.ATHENA_WORKGROUP = "primary"
    assert pipeline_setting("ATHENA_WORKGROUP") == "primary"


def test_deploy_outputs_name_the_events_stream_and_table(fake_cdk, aws_credentials, environment, queued,
                                                        django_capture_on_commit_callbacks):
    """Issue 15: the events stack's outputs become EVENTS_FIREHOSE_STREAM and LAKE_EVENTS_TABLE, which the
    events sink reads with pipeline_setting; the run's context carries infra's events configuration."""
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    environment.refresh_from_db()
    assert environment.config["EVENTS_FIREHOSE_STREAM"] == "saas-metering-events"
    assert environment.config["LAKE_EVENTS_TABLE"] == "events"
    assert pipeline_setting("EVENTS_FIREHOSE_STREAM") == "saas-metering-events"
    assert pipeline_setting("LAKE_EVENTS_TABLE") == "events"
    assert pipeline_setting("LAKE_DATABASE") == environment.config["LAKE_DATABASE"]  # the events table's database
    (call,) = fake_cdk()
    context = json.loads((Path(call["cwd"]) / "cdk.context.json").read_text())
    assert context["events_configuration"]["stream_name"] == "saas-metering-events"


def test_failed_deploy_is_recorded_with_its_log(fake_cdk, aws_credentials, environment, queued, monkeypatch,
                                                 django_capture_on_commit_callbacks):
    monkeypatch.setenv("FAKE_CDK_MODE", "fail")
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")

    assert deployment.status == DeploymentStatus.FAILED
    assert deployment.exit_code == 1
    assert deployment.error == "cdk deploy exited with code 1; see the log."
    assert "AccessDeniedException: not authorized to perform glue:CreateTable" in deployment.log
    assert "SaaSMeteringDemoIcebergTable: start" in deployment.log
    assert deployment.duration is not None
    environment.refresh_from_db()
    assert environment.config == {} and environment.outputs == {} and not environment.is_active
    # Nothing deployed, so the portal keeps its own settings.
    assert pipeline_setting("COGNITO_USER_POOL_ID") != f"{REGION}_FakePool1"


def test_missing_outputs_fail_the_deploy(fake_cdk, aws_credentials, environment, queued, tmp_path, settings,
                                         django_capture_on_commit_callbacks):
    # A CLI that exits 0 without writing outputs (e.g. stacks filtered out): a clear failure, not a half config.
    script = tmp_path / "bin" / "cdk-no-outputs"
    script.write_text("#!/bin/sh\necho deployed nothing\n")
    script.chmod(0o755)
    settings.CDK_CLI = str(script)
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    assert deployment.status == DeploymentStatus.FAILED and deployment.exit_code == 0
    assert "outputs could not be read" in deployment.error
    environment.refresh_from_db()
    assert environment.config == {}


def test_second_deploy_is_refused_while_one_runs(fake_cdk, environment, queued):
    first = deployment_start(environment=environment, action="deploy")
    with pytest.raises(ApplicationError, match=rf"already in progress \(deploy #{first.pk}, queued\)"):
        deployment_start(environment=environment, action="deploy")
    Deployment.objects.filter(pk=first.pk).update(status=DeploymentStatus.RUNNING)
    with pytest.raises(ApplicationError, match="already in progress"):
        deployment_start(environment=environment, action="destroy")
    # The database itself refuses, whatever the code path.
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.create(environment=environment, action="deploy", status=DeploymentStatus.RUNNING)
    # Synth and diff change nothing, so they may run beside it; another environment is independent.
    deployment_start(environment=environment, action="synth")
    deployment_start(environment=environment, action="diff")
    other = PipelineEnvironment.objects.create(name="staging", account=ACCOUNT, region="us-east-1")
    deployment_start(environment=other, action="deploy")
    # Once the first one has finished, a new deploy may start.
    Deployment.objects.filter(pk=first.pk).update(status=DeploymentStatus.SUCCEEDED)
    assert deployment_start(environment=environment, action="deploy").status == DeploymentStatus.QUEUED


def test_admin_deploy_action_refuses_a_concurrent_deploy_with_a_message(fake_cdk, environment, queued,
                                                                       admin_client):
    url = reverse("admin:deployments_pipelineenvironment_changelist")
    data = {"action": "deploy", "_selected_action": [environment.pk]}
    response = admin_client.post(url, data, follow=True)
    assert "Deploy of prod queued" in response.content.decode()
    response = admin_client.post(url, data, follow=True)
    assert "A deploy or destroy of prod is already in progress" in response.content.decode()
    assert Deployment.objects.filter(environment=environment, action="deploy").count() == 1


def test_deploy_without_credentials_says_why(fake_cdk, no_aws_credentials, environment, queued,
                                             django_capture_on_commit_callbacks):
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    assert deployment.status == DeploymentStatus.FAILED
    assert deployment.error.startswith("No AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    assert deployment.error in deployment.log
    assert deployment.exit_code is None and deployment.duration is not None
    assert fake_cdk() == []  # the CLI never ran


def test_synth_runs_without_credentials(fake_cdk, no_aws_credentials, environment, queued,
                                        django_capture_on_commit_callbacks):
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "synth")
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    (call,) = fake_cdk()
    assert call["argv"][0] == "synth" and call["env"]["CDK_DEFAULT_ACCOUNT"] == ACCOUNT
    environment.refresh_from_db()
    assert environment.config == {}  # a synth configures nothing


def test_synth_never_hands_credentials_to_the_cli(fake_cdk, aws_credentials, environment, queued,
                                                  django_capture_on_commit_callbacks):
    # With credentials, the CLI would replace CDK_DEFAULT_ACCOUNT with the caller's account.
    start_and_run(django_capture_on_commit_callbacks, queued, environment, "synth")
    (call,) = fake_cdk()
    assert call["env"]["AWS_ACCESS_KEY_ID"] is None


def test_credentials_of_another_account_are_refused(fake_cdk, aws_credentials, queued,
                                                    django_capture_on_commit_callbacks):
    elsewhere = PipelineEnvironment.objects.create(name="other", account="210987654321", region=REGION)
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, elsewhere, "deploy")
    assert deployment.status == DeploymentStatus.FAILED
    assert "credentials are for account 123456789012, but environment other is account 210987654321" in deployment.error
    assert fake_cdk() == []


def test_assumed_role_credentials_go_to_the_cli_only(fake_cdk, aws_credentials, environment, queued,
                                                    django_capture_on_commit_callbacks):
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT},
                                                "Action": "sts:AssumeRole"}]}))["Role"]
    environment.assume_role_arn = role["Arn"]
    environment.save()
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    (call,) = fake_cdk()
    assert call["env"]["AWS_ACCESS_KEY_ID"] not in (None, "testing") and call["env"]["AWS_SESSION_TOKEN"]
    environment.refresh_from_db()
    stored = json.dumps([environment.outputs, environment.config, environment.context, deployment.log])
    assert call["env"]["AWS_ACCESS_KEY_ID"] not in stored and call["env"]["AWS_SESSION_TOKEN"] not in stored


def test_a_redelivered_task_runs_nothing_twice(fake_cdk, aws_credentials, environment, queued,
                                               django_capture_on_commit_callbacks):
    deployment = start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    run_deployment(deployment.pk)
    assert len(fake_cdk()) == 1
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED


def test_destroy_needs_the_name_typed(fake_cdk, aws_credentials, environment, queued, admin_client,
                                      django_capture_on_commit_callbacks):
    start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    changelist = reverse("admin:deployments_pipelineenvironment_changelist")
    response = admin_client.post(changelist, {"action": "destroy", "_selected_action": [environment.pk]})
    confirm = reverse("admin:deployments_pipelineenvironment_destroy", args=[environment.pk])
    assert response.status_code == 302 and response["Location"] == confirm
    page = admin_client.get(confirm).content.decode()
    assert "Type <code>prod</code> to confirm" in page and "configures the portal" in page

    response = admin_client.post(confirm, {"confirmation": "staging"}, follow=True)
    assert "Destroy not started: type &#x27;prod&#x27; exactly to confirm." in response.content.decode()
    assert not Deployment.objects.filter(action="destroy").exists()
    with pytest.raises(ApplicationError):
        environment_destroy_start(environment=environment, confirmation="")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(confirm, {"confirmation": "prod"})
    destroy = Deployment.objects.get(action="destroy")
    assert response.status_code == 302 and response["Location"].endswith(f"/deployment/{destroy.pk}/change/")
    run_deployment(destroy.pk)
    destroy.refresh_from_db()
    assert destroy.status == DeploymentStatus.SUCCEEDED
    assert fake_cdk()[-1]["argv"][:3] == ["destroy", "--all", "--force"]
    environment.refresh_from_db()
    assert environment.config == {} and not environment.is_active
    assert pipeline_setting("COGNITO_USER_POOL_ID") != f"{REGION}_FakePool1"


def test_deployment_page_and_its_live_log(fake_cdk, aws_credentials, environment, queued, admin_client,
                                          django_capture_on_commit_callbacks):
    deployment = deployment_start(environment=environment, action="deploy")
    page = admin_client.get(reverse("admin:deployments_deployment_change", args=[deployment.pk])).content.decode()
    assert 'id="deployment-log"' in page and 'data-running="1"' in page and "setTimeout(poll, 2000)" in page
    run_deployment(deployment.pk)
    data = admin_client.get(reverse("admin:deployments_deployment_log", args=[deployment.pk])).json()
    assert data["status"] == "succeeded" and data["finished"] and data["exit_code"] == 0
    assert "SaaSMeteringDemoRandomGenApiGw: start" in data["log"]
    env_page = admin_client.get(reverse("admin:deployments_pipelineenvironment_change", args=[environment.pk]))
    assert fake_outputs()[API_STACK]["UserPoolId"] in env_page.content.decode()


def test_make_active_switches_the_configuration(fake_cdk, aws_credentials, environment, queued,
                                                django_capture_on_commit_callbacks):
    start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    staging = PipelineEnvironment.objects.create(name="staging", account=ACCOUNT, region=REGION)
    with pytest.raises(ApplicationError, match="no deployed outputs"):
        environment_activate(environment=staging)
    staging.config = {"COGNITO_USER_POOL_ID": "eu-west-1_Staging"}
    staging.save()
    environment_activate(environment=staging)
    assert pipeline_setting("COGNITO_USER_POOL_ID") == "eu-west-1_Staging"
    assert list(PipelineEnvironment.objects.filter(is_active=True)) == [staging]


def test_environment_validation():
    env = PipelineEnvironment(name="prod", account="1234", region="mars-1",
                              context={"data_firehose_configuration": {"stream_name": "x"}})
    with pytest.raises(ValidationError) as info:
        env.full_clean()
    assert set(info.value.message_dict) == {"account", "region", "context"}
    assert "missing context key" in " ".join(info.value.message_dict["context"])
    PipelineEnvironment(name="ok", account=ACCOUNT, region="ap-southeast-2",
                        context={"cognito_configuration": {"self_sign_up_enabled": True}}).full_clean()


@pytest.fixture
def slow_cdk(fake_cdk, monkeypatch):
    monkeypatch.setenv("FAKE_CDK_MODE", "slow")
    return fake_cdk


@pytest.mark.redis
def test_a_real_worker_runs_a_synth_and_the_log_is_visible_while_it_runs(slow_cdk, no_aws_credentials,
                                                                         celery_worker_process):
    # The worker is another process, started after these fixtures: it finds the (slow) fake through CDK_CLI.
    environment = PipelineEnvironment.objects.create(name="live", account=ACCOUNT, region=REGION)
    deployment = Deployment.objects.create(environment=environment, action="synth")
    run_deployment.apply_async(args=[deployment.pk], queue=celery_worker_process)
    seen_running_log = False
    deadline = time.time() + 60
    while time.time() < deadline:
        deployment.refresh_from_db()
        if deployment.status == DeploymentStatus.RUNNING and "SaaSMeteringDemoRandomGenApiGw: start" in deployment.log:
            seen_running_log = True
        if deployment.is_finished:
            break
        time.sleep(0.2)
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
    assert seen_running_log, "the log was not visible while the run was going"
    assert "done" in deployment.log


def test_pipeline_config_command(fake_cdk, aws_credentials, environment, queued,
                                 django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No active pipeline environment"):
        call_command("pipeline_config")
    start_and_run(django_capture_on_commit_callbacks, queued, environment, "deploy")
    out = StringIO()
    call_command("pipeline_config", "METERED_API_BASE_URL", "COGNITO_CLIENT_ID", stdout=out)
    assert out.getvalue().split() == [f"https://abc123.execute-api.{REGION}.amazonaws.com/prod", "fakeclient0123456789"]
    out = StringIO()
    call_command("pipeline_config", stdout=out)
    assert f"COGNITO_USER_POOL_ID={REGION}_FakePool1" in out.getvalue().splitlines()
