"""Pipeline environments (where the CDK app is deployed) and the record of every CDK run against them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


def validate_context(value) -> None:
    """The overrides must be an object, and merged over infra/cdk.context.json they must pass infra's checks."""
    from infra.config import ConfigError, PipelineConfig, load_context_files

    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError("Context must be a JSON object of top-level cdk.context.json keys.")
    try:
        PipelineConfig.from_context({**load_context_files(), **value})
    except ConfigError as exc:
        raise ValidationError(f"Context not usable by the CDK app: {exc}") from exc


class PipelineEnvironment(models.Model):
    """An AWS account and region the metering pipeline is deployed to, with its context overrides.

    Credentials are never stored: a run uses the worker's own AWS credentials (environment, profile or
    instance role), or temporary ones from assuming `assume_role_arn` with them.
    """

    name = models.SlugField(max_length=50, unique=True,
                            help_text="Short name, e.g. prod or staging; typed to confirm a destroy.")
    account = models.CharField(max_length=12, validators=[RegexValidator(r"^\d{12}$", "An AWS account id is 12 digits.")])
    region = models.CharField(max_length=32, validators=[
        RegexValidator(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$", "Not an AWS region name (e.g. us-east-1).")])
    context = models.JSONField(default=dict, blank=True, validators=[validate_context],
                               help_text="Overrides of infra/cdk.context.json, by top-level key (each replaces "
                                         "the whole key), e.g. {\"athena_configuration\": {...}}.")
    assume_role_arn = models.CharField(
        max_length=2048, blank=True,
        validators=[RegexValidator(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$", "Not an IAM role ARN.")],
        help_text="Optional: a role the worker assumes (sts:AssumeRole) for this environment's runs. "
                  "Its temporary credentials go to the CDK process only.")
    is_active = models.BooleanField(
        default=False, help_text="The active environment's outputs configure the portal (Cognito, Athena, API URL).")
    outputs = models.JSONField(default=dict, blank=True, editable=False,
                               help_text="Stack outputs of the last successful deploy.")
    config = models.JSONField(default=dict, blank=True, editable=False,
                              help_text="The portal settings taken from those outputs.")
    deployed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True),
                                    name="deployments_one_active_environment"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.account}/{self.region})"


class DeploymentAction(models.TextChoices):
    SYNTH = "synth", "Synthesize"
    DIFF = "diff", "Diff"
    DEPLOY = "deploy", "Deploy"
    DESTROY = "destroy", "Destroy"


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# Actions that change the account: only one of them may be queued or running per environment.
MUTATING_ACTIONS = (DeploymentAction.DEPLOY, DeploymentAction.DESTROY)
UNFINISHED = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)


class Deployment(models.Model):
    """One CDK run (synth, diff, deploy or destroy) of an environment, with its log as it is written."""

    environment = models.ForeignKey(PipelineEnvironment, on_delete=models.CASCADE, related_name="deployments")
    action = models.CharField(max_length=10, choices=DeploymentAction.choices)
    status = models.CharField(max_length=10, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED)
    log = models.TextField(blank=True, default="")
    command = models.TextField(blank=True, default="", help_text="The CDK command line that ran.")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.DurationField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Last sign of life of the worker running it; a running deployment whose heartbeat is older "
                  "than RUN_STALE_AFTER_SECONDS is marked failed.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The refusal of concurrent deploys: a second deploy/destroy of the same environment cannot
            # even be recorded while one is queued or running.
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(action__in=["deploy", "destroy"], status__in=["queued", "running"]),
                name="deployments_one_mutating_run_per_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.environment.name} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED)
