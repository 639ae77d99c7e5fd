"""Celery tasks for tenants: thin wrappers around services, safe to run twice."""

from celery import shared_task

from tenants.services.lifecycle import tenants_end_trials


@shared_task
def end_trials() -> int:
    """Activate trialing tenants whose trial is over; returns how many changed."""
    return len(tenants_end_trials())


@shared_task
def apply_subscription_requests() -> int:
    """Carry out the tenants' scheduled downgrades and cancellations whose time came; returns how many."""
    from tenants.services.subscription_requests import subscription_requests_apply_due

    return subscription_requests_apply_due()


@shared_task
def purge_cancelled_users() -> dict:
    """Delete the identity users of tenants cancelled longer than the retention, and disable any user
    still enabled in a suspended or cancelled tenant."""
    from tenants.services.identity import tenant_users_purge_cancelled, tenant_users_reconcile

    return {"disabled": tenant_users_reconcile(), "deleted": tenant_users_purge_cancelled()}


@shared_task
def expire_signups() -> int:
    """Pending signups past their code's expiry are closed and their encrypted password wiped."""
    from tenants.services.signup import signup_requests_expire

    return signup_requests_expire()


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_emails(self, delivery_ids: list[int]) -> dict:
    """Send these recorded emails. Those that failed for a passing reason are retried here, with
    exponential backoff, until EMAIL_MAX_ATTEMPTS (the service counts them, so Celery sets no cap);
    a duplicate run sends nothing twice."""
    from tenants.services.email import email_deliveries_send

    result = email_deliveries_send(delivery_ids=delivery_ids)
    if result.retry:
        raise self.retry(args=[result.retry], countdown=result.countdown())
    return result.summary()


@shared_task
def sweep_emails() -> dict:
    """Queue again the pending emails whose task was lost, and wipe secrets past their expiry."""
    from tenants.services.email import email_deliveries_sweep

    return email_deliveries_sweep()


# Retries due sooner than this wait in the broker; later ones are queued by the sweep (every minute) when due.
RETRY_IN_TASK_SECONDS = 600


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True)
def deliver_webhook(self, delivery_id: int) -> str:
    """Make the due attempt of one webhook delivery; a failed one is retried here after the schedule's wait
    (the service counts attempts, so Celery sets no cap). A duplicate or early run sends nothing. Its outcome
    is recorded on the delivery, so no result is stored (one write less per delivery)."""
    from tenants.webhooks.delivery import webhook_delivery_attempt

    result = webhook_delivery_attempt(delivery_id=delivery_id)
    if result.outcome == "retry" and result.retry_in <= RETRY_IN_TASK_SECONDS:
        raise self.retry(args=[delivery_id], countdown=result.retry_in)
    # A longer wait is left to the sweep, which queues the delivery once it is due (a message held for hours
    # would sit unacknowledged in a worker, and Redis hands it out again after its visibility timeout).
    return result.outcome


@shared_task
def sweep_webhooks() -> dict:
    """Queue again the pending webhook deliveries whose task was lost or whose worker died."""
    from tenants.webhooks.delivery import webhook_deliveries_sweep

    return webhook_deliveries_sweep()


@shared_task(acks_late=True, ignore_result=True)
def deliver_webhooks(delivery_ids: list[int]) -> dict:
    """Make the due attempts of several deliveries to one endpoint, one after the other (a burst of events
    costs one message per batch instead of one per delivery); a failed one is retried by its own
    ``deliver_webhook`` task, or the sweep."""
    from tenants.webhooks.delivery import webhook_delivery_attempt

    outcomes: dict[str, int] = {}
    for delivery_id in delivery_ids:
        result = webhook_delivery_attempt(delivery_id=delivery_id)
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if result.outcome == "retry" and result.retry_in <= RETRY_IN_TASK_SECONDS:
            deliver_webhook.apply_async(args=[delivery_id], countdown=result.retry_in)
        if result.outcome in ("retry", "failed") and result.status_code is None:
            # The receiver did not answer (a batch is one endpoint's): the rest would wait for the same
            # timeouts one after the other. They stay pending; the sweep queues them within a minute or two.
            outcomes["left"] = len(delivery_ids) - sum(outcomes.values())
            break
    return outcomes
