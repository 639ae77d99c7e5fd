"""Admin for pipeline environments (synthesize, diff, deploy, destroy) and their runs, with live logs."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db import models
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from metering.runs import liveness
from portal.deployments.models import Deployment, DeploymentAction, DeploymentStatus, PipelineEnvironment
from portal.deployments.services import (
    deployment_abandon,
    deployment_start,
    environment_activate,
    environment_destroy_start,
)
from portal.kernel import ApplicationError
from tenants.forms import JSONFormField


def _pretty(value) -> str:
    if not value:
        return "-"
    return format_html("<pre style=\"margin:0\">{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def _deployment_link(deployment: Deployment) -> str:
    url = reverse("admin:deployments_deployment_change", args=[deployment.pk])
    return format_html('<a href="{}">{} #{}</a>', url, deployment.get_action_display(), deployment.pk)


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("action", "status", "created_at", "duration", "exit_code", "requested_by", "error")
    readonly_fields = fields
    ordering = ("-created_at",)
    max_num = 0

    def has_add_permission(self, request, obj=None):
        return False


def _start(modeladmin, request, queryset, action: str) -> None:
    for environment in queryset:
        try:
            deployment = deployment_start(environment=environment, action=action,
                                          requested_by=request.user.get_username())
        except ApplicationError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            modeladmin.message_user(
                request, format_html("{} of {} queued: {} (its log updates live).",
                                     deployment.get_action_display(), environment.name, _deployment_link(deployment)),
                messages.SUCCESS)


@admin.register(PipelineEnvironment)
class PipelineEnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "region", "is_active", "deployed_at", "last_run")
    list_filter = ("is_active", "region")
    search_fields = ("name", "account")
    readonly_fields = ("is_active", "deployed_at", "config_display", "outputs_display", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "account", "region", "assume_role_arn", "context")}),
        ("Deployed", {"fields": ("is_active", "deployed_at", "config_display", "outputs_display",
                                 "created_at", "updated_at")}),
    )
    inlines = [DeploymentInline]
    actions = ["synthesize", "diff", "deploy", "destroy", "make_active"]
    formfield_overrides = {models.JSONField: {"form_class": JSONFormField}}  # deep JSON: a form error

    @admin.display(description="Portal configuration (from the outputs)")
    def config_display(self, obj):
        return _pretty(obj.config)

    @admin.display(description="Stack outputs")
    def outputs_display(self, obj):
        return _pretty(obj.outputs)

    @admin.display(description="Last run")
    def last_run(self, obj):
        deployment = obj.deployments.order_by("-created_at", "-id").first()
        if deployment is None:
            return "-"
        return format_html("{} ({})", _deployment_link(deployment), deployment.get_status_display())

    @admin.action(description="Synthesize (cdk synth, no AWS credentials needed)")
    def synthesize(self, request, queryset):
        _start(self, request, queryset, DeploymentAction.SYNTH)

    @admin.action(description="Diff against the account (cdk diff)")
    def diff(self, request, queryset):
        _start(self, request, queryset, DeploymentAction.DIFF)

    @admin.action(description="Deploy (cdk deploy --all)")
    def deploy(self, request, queryset):
        _start(self, request, queryset, DeploymentAction.DEPLOY)

    @admin.action(description="Destroy (asks to type the environment's name)")
    def destroy(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Destroy one environment at a time.", messages.ERROR)
            return None
        return HttpResponseRedirect(reverse("admin:deployments_pipelineenvironment_destroy",
                                            args=[queryset.get().pk]))

    @admin.action(description="Use for the portal (make active)")
    def make_active(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one environment.", messages.ERROR)
            return
        try:
            environment = environment_activate(environment=queryset.get())
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"The outputs of {environment.name} now configure the portal.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("<int:pk>/destroy/", self.admin_site.admin_view(self.destroy_view),
                 name="deployments_pipelineenvironment_destroy"),
            *super().get_urls(),
        ]

    def destroy_view(self, request, pk: int):
        environment = get_object_or_404(PipelineEnvironment, pk=pk)
        if not self.has_change_permission(request, environment):
            return HttpResponseRedirect(reverse("admin:index"))
        if request.method == "POST":
            try:
                deployment = environment_destroy_start(environment=environment,
                                                       confirmation=request.POST.get("confirmation", ""),
                                                       requested_by=request.user.get_username())
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, format_html("Destroy of {} queued: {}.", environment.name,
                                                       _deployment_link(deployment)), messages.WARNING)
                return HttpResponseRedirect(reverse("admin:deployments_deployment_change", args=[deployment.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Destroy {environment.name}?",
            "environment": environment,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/deployments/destroy_confirmation.html", context)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "environment", "action", "status", "created_at", "duration", "exit_code", "requested_by",
                    "heartbeat_at", "worker")
    list_filter = ("status", "action", "environment")
    search_fields = ("environment__name", "error", "requested_by")
    list_select_related = ("environment",)
    fields = ("environment", "action", "status", "requested_by", "command", "created_at", "started_at",
              "finished_at", "duration", "exit_code", "error", "heartbeat_at", "worker", "log_display")
    readonly_fields = fields
    actions = ["mark_failed"]
    change_form_template = "admin/deployments/deployment/change_form.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Worker")
    def worker(self, obj):
        return liveness(obj, running=obj.status == DeploymentStatus.RUNNING)

    @admin.display(description="Log")
    def log_display(self, obj):
        return format_html(
            '<pre id="deployment-log" data-url="{}" data-running="{}" '
            'style="max-height:40em;overflow:auto;white-space:pre-wrap">{}</pre>',
            reverse("admin:deployments_deployment_log", args=[obj.pk]),
            "1" if not obj.is_finished else "0", obj.log or "(nothing yet)")

    @admin.action(description="Mark failed (its worker was lost)")
    def mark_failed(self, request, queryset):
        for deployment in queryset.filter(status__in=[DeploymentStatus.QUEUED, DeploymentStatus.RUNNING]):
            deployment_abandon(deployment=deployment)
            self.message_user(request, f"Deployment #{deployment.pk} marked failed.", messages.WARNING)

    def get_urls(self):
        return [
            path("<int:pk>/log/", self.admin_site.admin_view(self.log_view), name="deployments_deployment_log"),
            *super().get_urls(),
        ]

    def log_view(self, request, pk: int):
        """The log and state as JSON, polled by the change page while the run is unfinished."""
        if not self.has_view_permission(request):
            return JsonResponse({"detail": "forbidden"}, status=403)
        deployment = get_object_or_404(Deployment, pk=pk)
        return JsonResponse({
            "id": deployment.pk, "status": deployment.status, "finished": deployment.is_finished,
            "log": deployment.log, "exit_code": deployment.exit_code, "error": deployment.error,
            "duration": deployment.duration.total_seconds() if deployment.duration else None,
        })
