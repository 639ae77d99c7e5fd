"""A coupon code at signup, through the signup pages: a good code ends applied to the new subscription (and
counted once), a wrong, expired or used-up code is a form error naming the field, and a coupon used up between
the form and the verification leaves the account made without it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tenants.models import Coupon, SignupRequest, SubscriptionCoupon
from tenants.services.coupons import coupon_create
from tenants.tests.test_signup import _code, _form, on_commit, plans  # noqa: F401  (fixtures)


@pytest.fixture
def launch(db):
    return coupon_create(code="LAUNCH10", name="Launch", kind="percent", percent_off="10", duration="repeating",
                         duration_periods=3, max_redemptions=1)


@pytest.mark.usefixtures("local_identity", "on_commit")
def test_a_code_at_signup_is_applied_to_the_new_subscription(client, plans, launch, mailoutbox):  # noqa: F811
    response = client.post("/signup/", _form(plans, coupon=" launch10 "))
    assert response.status_code == 302, response.content
    assert SignupRequest.objects.get().coupon == launch
    assert client.post("/signup/verify/", {"code": _code(mailoutbox)}).status_code == 302
    (redemption,) = SubscriptionCoupon.objects.all()
    assert (redemption.subscription.tenant.slug, redemption.coupon.code, redemption.via) == ("acme-corp", "LAUNCH10",
                                                                                             "signup")
    launch.refresh_from_db()
    assert launch.times_redeemed == 1 and launch.percent_off == Decimal("10")


@pytest.mark.usefixtures("local_identity", "on_commit")
@pytest.mark.parametrize("setup,code,message", [
    (None, "NOPE", "No coupon has this code."),
    ("expired", "LAUNCH10", "Coupon LAUNCH10 expired"),
    ("used", "LAUNCH10", "Coupon LAUNCH10 has been used up."),
    ("euro", "EURO5", "Coupon EURO5 is in EUR; the plan bills in USD."),
])
def test_a_bad_code_is_a_form_error(client, plans, launch, setup, code, message):  # noqa: F811
    if setup == "expired":
        Coupon.objects.filter(pk=launch.pk).update(redeem_by=timezone.now() - timedelta(days=1))
    elif setup == "used":
        Coupon.objects.filter(pk=launch.pk).update(times_redeemed=1)
    elif setup == "euro":
        coupon_create(code="EURO5", kind="fixed", amount_off="5.00", currency="EUR")
    response = client.post("/signup/", _form(plans, coupon=code))
    assert response.status_code == 200 and message in response.content.decode()
    assert not SignupRequest.objects.exists()


@pytest.mark.usefixtures("local_identity", "on_commit")
def test_a_coupon_used_up_before_verification_leaves_the_account_made_without_it(client, plans, launch,  # noqa: F811
                                                                                  mailoutbox):
    client.post("/signup/", _form(plans, coupon="LAUNCH10"))
    Coupon.objects.filter(pk=launch.pk).update(times_redeemed=1)  # someone else took the last one meanwhile
    assert client.post("/signup/verify/", {"code": _code(mailoutbox)}).status_code == 302
    assert SignupRequest.objects.get().status == "provisioned" and not SubscriptionCoupon.objects.exists()
