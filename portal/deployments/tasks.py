"""Celery tasks for pipeline deployments: thin wrappers around the services."""

from celery import shared_task


@shared_task(acks_late=True)
def run_deployment(deployment_id: int) -> dict:
    """Run one synth/diff/deploy/destroy; a redelivered message finds the run claimed and does nothing."""
    from portal.deployments.services import deployment_run

    deployment = deployment_run(deployment_id=deployment_id)
    return {"deployment": deployment.pk, "status": deployment.status, "exit_code": deployment.exit_code}
