"""Self-service signup pages: the form, the email verification step, then sign-in to the tenant area; and the AWS
Marketplace registration landing, which resolves the customer and hands it to the same signup.

A signup belongs to the browser that started it: its session keeps a random token (made when the form is
first shown, so a double submit carries it too) and the request's id. Verification only ever looks at
that request, and only the call that verifies it with its fresh code signs the new owner in.
"""

import secrets

from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from portal.kernel import ApplicationError
from tenants.forms import SignupForm, VerifyForm
from tenants.models import MarketplaceCustomer, SignupStatus
from tenants.services import marketplace as marketplace_services
from tenants.services import signup as signup_services

SESSION_KEY = "signup_request_id"
BROWSER_KEY = "signup_browser"
MARKETPLACE_KEY = "signup_marketplace_customer"
TENANT_BACKEND = "tenants.identity.auth_backends.TenantUserBackend"


def client_ip(request) -> str:
    # REMOTE_ADDR, not X-Forwarded-For: a client can write any X-Forwarded-For and dodge the limit. Behind a
    # proxy, have the proxy set REMOTE_ADDR (e.g. gunicorn's --forwarded-allow-ips with a trusted proxy).
    return request.META.get("REMOTE_ADDR") or "unknown"


def browser_token(request) -> str:
    """This browser's signup token, made on first use and kept in its session."""
    token = request.session.get(BROWSER_KEY)
    if not token:
        token = request.session[BROWSER_KEY] = secrets.token_urlsafe(32)
    return token


def _marketplace_customer(request) -> MarketplaceCustomer | None:
    """The AWS Marketplace customer this browser came with from the landing, while it has no tenant yet."""
    customer_id = request.session.get(MARKETPLACE_KEY)
    if customer_id is None:
        return None
    return MarketplaceCustomer.objects.filter(pk=customer_id, tenant__isnull=True).first()


# AWS Marketplace posts the buyer's browser here from its own site: no CSRF token can come with it, and the
# registration token (resolved with AWS, never trusted as it is) is what the request carries.
@csrf_exempt
@require_http_methods(["POST"])
def marketplace_landing(request):
    if signup_services.signup_rate_limited(ip=client_ip(request)):
        return render(request, "tenants/marketplace_landing.html",
                      {"message": "Too many signups from your network. Try again later."}, status=429)
    try:
        customer = marketplace_services.marketplace_customer_resolve(
            token=request.POST.get("x-amzn-marketplace-token", ""))
    except ApplicationError as exc:
        return render(request, "tenants/marketplace_landing.html", {"message": exc.message}, status=400)
    if customer.tenant_id is not None:
        messages.info(request, "Your AWS Marketplace subscription has an account already: sign in.")
        return redirect("login")
    browser_token(request)
    request.session[MARKETPLACE_KEY] = customer.pk
    return redirect("signup")


@require_http_methods(["GET", "POST"])
def signup(request):
    versions = signup_services.public_plan_versions()
    browser = browser_token(request)
    marketplace_customer = _marketplace_customer(request)
    if request.method == "POST":
        form = SignupForm(request.POST, plan_versions=versions)
        if signup_services.signup_rate_limited(ip=client_ip(request)):
            form.is_valid()
            form.add_error(None, "Too many signups from your network. Try again later.")
            return render(request, "tenants/signup.html", {"form": form, "marketplace_customer": marketplace_customer},
                          status=429)
        if form.is_valid():
            data = form.cleaned_data
            try:
                signup_request = signup_services.signup_request_create(
                    company=data["company"], slug=data["slug"], email=data["email"], plan_version=data["plan"],
                    password=data["password"], browser=browser, ip=client_ip(request),
                    coupon_code=data.get("coupon", ""), time_zone=data["time_zone"],
                    marketplace_customer_id=marketplace_customer.pk if marketplace_customer else None,
                )
            except ApplicationError as exc:
                field = exc.extra.get("field")
                form.add_error(field if field in form.fields else None, exc.message)
            else:
                request.session[SESSION_KEY] = signup_request.pk
                return redirect("signup-verify")
    else:
        form = SignupForm(plan_versions=versions, initial={"plan": versions[0].pk if versions else None})
    return render(request, "tenants/signup.html", {"form": form, "marketplace_customer": marketplace_customer})


@require_http_methods(["GET", "POST"])
def signup_verify(request):
    browser = request.session.get(BROWSER_KEY)
    signup_request = signup_services.signup_for_browser(request_id=request.session.get(SESSION_KEY), browser=browser)
    if signup_request is None:
        return redirect("signup")
    if signup_request.status == SignupStatus.PROVISIONED and request.user.is_authenticated and (
        signup_request.owner and signup_request.owner.user_id == request.user.pk
    ):
        return redirect("tenant-home")
    form = VerifyForm(request.POST or None)
    if request.method == "POST" and request.POST.get("action") == "resend":
        form = VerifyForm()
        # Resends count against the same per-IP limit: each one buys five more guesses at a code.
        if signup_services.signup_rate_limited(ip=client_ip(request)):
            messages.error(request, "Too many attempts from your network. Try again later.")
            return render(request, "tenants/signup_verify.html", {"form": form, "signup_request": signup_request},
                          status=429)
        try:
            signup_services.signup_resend_code(request_id=signup_request.pk, browser=browser)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.info(request, "A new code is on its way.")
    elif request.method == "POST" and form.is_valid():
        try:
            done = signup_services.signup_complete(
                request_id=signup_request.pk, code=form.cleaned_data["code"], browser=browser
            )
        except ApplicationError as exc:
            form.add_error("code", exc.message)
        else:
            if done.owner is not None:
                login(request, done.owner.user, backend=TENANT_BACKEND)
                return redirect("tenant-home")
            if done.signup.status == SignupStatus.PROVISIONED:
                # The code again after the account was made: it signs nobody in; the password does.
                messages.info(request, "Your account is ready: sign in with your email and password.")
                return redirect("login")
            return render(request, "tenants/signup_failed.html", {"signup_request": done.signup}, status=503)
    return render(request, "tenants/signup_verify.html", {"form": form, "signup_request": signup_request})
