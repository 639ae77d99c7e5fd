"""The AWS Marketplace registration landing, through the test client: AWS posts the buyer's browser with
``x-amzn-marketplace-token``; the landing resolves it (ResolveCustomer: moto 5.2.5 implements only
BatchMeterUsage of this service, so this one AWS call is stubbed with botocore's Stubber) and hands the
customer to the self-service signup, whose tenant is then collected through AWS Marketplace (its invoices:
metering/tests/test_marketplace_reporting.py)."""


import boto3
import pytest
from botocore.stub import Stubber
from django.core.cache import cache

from tenants.models import BillingChannel, MarketplaceCustomer, Tenant
from tenants.tests.factories import import_sample_plans
from tenants.tests.test_signup import _code, _form

RESOLVED = {"CustomerIdentifier": "cust-7Jq2", "ProductCode": "prod-abc123", "CustomerAWSAccountId": "123456789012"}


@pytest.fixture
def aws(monkeypatch, settings):
    """The Marketplace Metering client the landing uses, with ResolveCustomer stubbed (moto has no ResolveCustomer)."""
    settings.MARKETPLACE_PRODUCT_CODE = "prod-abc123"
    client = boto3.client("meteringmarketplace", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    stubber = Stubber(client)
    monkeypatch.setattr("tenants.services.marketplace.marketplace_client", lambda: client)
    with stubber:
        yield stubber


@pytest.fixture
def plans(db):
    cache.clear()
    yield import_sample_plans()
    cache.clear()


def land(client, token="reg-token-1"):
    return client.post("/marketplace/aws/", {"x-amzn-marketplace-token": token})


@pytest.mark.usefixtures("local_identity")
def test_a_marketplace_buyer_signs_up_and_is_collected_through_aws(client, aws, plans, mailoutbox,
                                                                   django_capture_on_commit_callbacks):
    aws.add_response("resolve_customer", RESOLVED, {"RegistrationToken": "reg-token-1"})
    landed = land(client)
    assert landed.status_code == 302 and landed["Location"] == "/signup/"
    customer = MarketplaceCustomer.objects.get()
    assert (customer.customer_identifier, customer.product_code, customer.aws_account_id, customer.tenant) == (
        "cust-7Jq2", "prod-abc123", "123456789012", None)
    page = client.get("/signup/").content.decode()
    assert "Subscribed through AWS Marketplace" in page and "123456789012" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/signup/", _form(plans)).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/signup/verify/", {"code": _code(mailoutbox)})["Location"] == "/tenant/"
    tenant = Tenant.objects.get(slug="acme-corp")
    customer.refresh_from_db()
    assert customer.tenant == tenant and tenant.billing_channel == BillingChannel.AWS_MARKETPLACE

    # AWS sends the buyer again (from "Set up your account"): the account exists, so to the sign-in page.
    aws.add_response("resolve_customer", RESOLVED, {"RegistrationToken": "reg-token-2"})
    again = land(client, "reg-token-2")
    assert again.status_code == 302 and again["Location"] == "/account/login/"
    assert MarketplaceCustomer.objects.count() == 1


def test_the_landing_refuses_a_bad_token_or_another_products(client, aws, plans):
    missing = client.post("/marketplace/aws/", {})
    assert missing.status_code == 400 and "registration token" in missing.content.decode()
    aws.add_client_error("resolve_customer", "InvalidTokenException", http_status_code=400)
    refused = land(client, "forged")
    assert refused.status_code == 400 and "did not accept this registration" in refused.content.decode()
    aws.add_client_error("resolve_customer", "ThrottlingException", http_status_code=400)
    busy = land(client, "later")
    assert busy.status_code == 400 and "try again in a few minutes" in busy.content.decode()
    aws.add_response("resolve_customer", {**RESOLVED, "ProductCode": "prod-other"},
                     {"RegistrationToken": "other"})
    other = land(client, "other")
    assert other.status_code == 400 and "for another product" in other.content.decode()
    assert client.get("/marketplace/aws/").status_code == 405
    assert MarketplaceCustomer.objects.count() == 0
    # The signup without a landing is the usual one.
    assert "Subscribed through AWS Marketplace" not in client.get("/signup/").content.decode()
