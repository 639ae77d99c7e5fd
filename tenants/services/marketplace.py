"""AWS Marketplace registration: resolve the token AWS posts to the landing into a customer, and turn the signup
that follows into a tenant collected through AWS Marketplace (docs/marketplace.md)."""

from __future__ import annotations

import logging

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction

from portal.kernel import ApplicationError
from tenants.models import BillingChannel, MarketplaceCustomer, Tenant

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 4096  # AWS's tokens are a few hundred characters; anything far longer is not one


def marketplace_client():
    """The Marketplace Metering Service client (one seam: tests stub or mock it)."""
    return boto3.client("meteringmarketplace", region_name=settings.MARKETPLACE_REGION)


def marketplace_customer_resolve(*, token: str, client=None) -> MarketplaceCustomer:
    """ResolveCustomer on the registration token, then the customer's row (made, or found again for a customer
    who comes back through the landing). ApplicationError says what to do when AWS refuses or fails."""
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise ApplicationError("This page is reached from AWS Marketplace: the registration token "
                               "(x-amzn-marketplace-token) is missing or malformed.")
    client = client or marketplace_client()
    try:
        answer = client.resolve_customer(RegistrationToken=token)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        logger.warning("marketplace: ResolveCustomer refused the token: %s", code)
        if code in ("InvalidTokenException", "ExpiredTokenException"):
            raise ApplicationError("AWS Marketplace did not accept this registration (the link has expired or is "
                                   "not valid): open the product in AWS Marketplace and choose \"Set up your "
                                   "account\" again.") from exc
        raise ApplicationError("AWS Marketplace could not be reached to confirm your subscription: try again in a "
                               "few minutes.") from exc
    except BotoCoreError as exc:
        logger.warning("marketplace: ResolveCustomer failed: %s", exc)
        raise ApplicationError("AWS Marketplace could not be reached to confirm your subscription: try again in a "
                               "few minutes.") from exc
    product_code = answer.get("ProductCode", "")
    if settings.MARKETPLACE_PRODUCT_CODE and product_code != settings.MARKETPLACE_PRODUCT_CODE:
        logger.warning("marketplace: a token of product %s, not %s", product_code, settings.MARKETPLACE_PRODUCT_CODE)
        raise ApplicationError("This AWS Marketplace subscription is for another product.")
    customer, _ = MarketplaceCustomer.objects.update_or_create(
        customer_identifier=answer["CustomerIdentifier"],
        defaults={"product_code": product_code, "aws_account_id": answer.get("CustomerAWSAccountId", "")},
    )
    return customer


def marketplace_customer_attach(*, customer_id: int, tenant: Tenant) -> None:
    """Make `tenant` the customer's, collected through AWS Marketplace (inside the signup's provisioning
    transaction). A customer who has a tenant already is refused: one AWS subscription, one tenant."""
    with transaction.atomic():
        customer = MarketplaceCustomer.objects.select_for_update().get(pk=customer_id)
        if customer.tenant_id is not None and customer.tenant_id != tenant.pk:
            raise ApplicationError("This AWS Marketplace subscription has an account already: sign in instead.")
        customer.tenant = tenant
        customer.save(update_fields=["tenant", "last_seen_at"])
        Tenant.objects.filter(pk=tenant.pk).update(billing_channel=BillingChannel.AWS_MARKETPLACE)
        tenant.billing_channel = BillingChannel.AWS_MARKETPLACE
