"""Self-service signup: a request, its email verification, then provisioning of tenant, subscription and owner.

The password is needed once more after verification (Cognito sets it; the portal cannot derive it from a
hash), so it is kept Fernet-encrypted with a key derived from SECRET_KEY for the verification window and
wiped as soon as the owner exists or the request expires. The 6-digit code is stored as a salted HMAC.

A request belongs to the browser that made it (a token in its session): no other browser can verify it,
resend its code or change it, and only the call that verifies a pending request with its fresh code signs
its owner in.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from portal.kernel import ApplicationError
from tenants.identity import IdentityError
from tenants.models import (
    CouponVia,
    PlanVersion,
    SignupRequest,
    SignupStatus,
    Tenant,
    TenantRole,
    TenantStatus,
    TenantUser,
    time_zone_names,
)
from tenants.models.email import EmailKind
from tenants.models.signup import OPEN_STATUSES
from tenants.services.coupons import coupon_apply, coupon_for_code
from tenants.services.email import email_queue
from tenants.services.identity import tenant_user_create
from tenants.services.lifecycle import tenant_create
from tenants.services.marketplace import marketplace_customer_attach
from tenants.services.subscriptions import subscription_create

logger = logging.getLogger(__name__)

MAX_VERIFY_ATTEMPTS = 5
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


# --- secrets kept for the verification window -------------------------------------------------------

def _fernet() -> Fernet:
    key = salted_hmac("tenants.signup.password", "fernet-key", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _encrypt_password(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode()


def _decrypt_password(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed, or the value was wiped
        raise ApplicationError("The signup's password is no longer available: sign up again.") from exc


def _hash_code(code: str, salt: str) -> str:
    return salted_hmac("tenants.signup.code", f"{salt}:{code}", algorithm="sha256").hexdigest()


def _new_code(signup: SignupRequest) -> str:
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(8)
    signup.code_hash = f"{salt}${_hash_code(code, salt)}"
    signup.code_expires_at = timezone.now() + timedelta(minutes=settings.SIGNUP_CODE_TTL_MINUTES)
    signup.verify_attempts = 0
    return code


def _code_matches(signup: SignupRequest, code: str) -> bool:
    salt, _, digest = signup.code_hash.partition("$")
    return bool(digest) and constant_time_compare(digest, _hash_code(code.strip(), salt))


# --- rate limit ----------------------------------------------------------------------------------------

def parse_rate(rate: str) -> tuple[int, int]:
    """'5/hour' -> (5, 3600)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", rate.lower())
    if not match or match.group(3) not in _PERIODS:
        raise ValueError(f"A rate looks like '5/hour', not {rate!r}.")
    return int(match.group(1)), int(match.group(2) or 1) * _PERIODS[match.group(3)]


def signup_rate_limited(*, ip: str) -> bool:
    """Count one signup attempt from `ip`; True when it is over SIGNUP_RATE_LIMIT (shared cache in production)."""
    limit, window = parse_rate(settings.SIGNUP_RATE_LIMIT)
    key = f"signup-rate:{ip}"
    cache.add(key, 0, timeout=window)  # the window starts with the first attempt
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        count = 1
    return count > limit


# --- the flow --------------------------------------------------------------------------------------------

def public_plan_versions():
    """The plans offered at signup: public plans, each at its newest version."""
    versions = []
    from tenants.models import Plan

    for plan in Plan.objects.filter(is_public=True).order_by("code"):
        current = plan.current_version
        if current is not None:
            versions.append(current)
    return versions


def _send_code(signup: SignupRequest, code: str) -> None:
    """Record the code's email in the caller's transaction (encrypted, useless after the code expires)."""
    others_open = (
        SignupRequest.objects.filter(email=signup.email, status__in=OPEN_STATUSES).exclude(pk=signup.pk).exists()
    )
    notice = (
        "\nAnother signup with this address is waiting for its code too. Each signup can only be finished in the"
        " browser where it was started, with its own code: if you did not start this one, ignore this email and"
        " nobody can finish it.\n"
        if others_open else ""
    )
    email_queue(
        kind=EmailKind.SIGNUP_CODE,
        recipient=signup.email,
        subject=f"{settings.PROVIDER_NAME}: your verification code",
        body=(
            f"Your verification code for {signup.company} is:\n\n    {code}\n\n"
            f"It expires in {settings.SIGNUP_CODE_TTL_MINUTES} minutes. If you did not sign up, ignore this email.\n"
            f"{notice}"
        ),
        about=signup,
        expires_at=signup.code_expires_at,
    )


def _send_account_exists(signup: SignupRequest) -> None:
    """Record, in the caller's transaction, the notice to an address that has an account already."""
    email_queue(
        kind=EmailKind.SIGNUP_NOTICE,
        recipient=signup.email,
        subject=f"{settings.PROVIDER_NAME}: someone tried to sign up with your address",
        body=(
            f"Someone, perhaps you, tried to sign up for {settings.PROVIDER_NAME} with this email address, which"
            f" already has an account. To use it, sign in at {settings.PORTAL_BASE_URL.rstrip('/')}/account/login/.\n\n"
            "If it was not you, ignore this email: nothing was changed and no account was made.\n"
        ),
        about=signup,
    )


def _browser_key(browser: str) -> str:
    """What a request keeps of the token in its browser's session (the token itself stays in the session)."""
    if not browser:
        raise ValueError("A signup needs the token of the browser session that makes it.")
    return salted_hmac("tenants.signup.browser", browser, algorithm="sha256").hexdigest()


def _issue_code(signup: SignupRequest) -> Callable[[], None]:
    """Give the request a new code and return the email to record once it is saved: the code, or, when the
    address has an account already, a notice instead. Such a request looks the same to its browser but
    nothing can ever verify it, so the signup page never tells anyone which addresses have an account."""
    if TenantUser.objects.filter(email__iexact=signup.email).exists():
        _new_code(signup)  # a fresh expiry and attempt count, as for a real code
        signup.code_hash = ""  # no code matches an empty hash
        signup.password_encrypted = ""
        signup.error = "This email has an account already: no code was sent, its owner was told."
        return lambda: _send_account_exists(signup)
    code = _new_code(signup)
    signup.error = ""
    return lambda: _send_code(signup, code)


def signup_for_browser(*, request_id: int | None, browser: str | None) -> SignupRequest | None:
    """The signup `request_id` if the browser holding `browser` started it, else None."""
    if not request_id or not browser:
        return None
    return SignupRequest.objects.filter(pk=request_id, browser_key=_browser_key(browser)).first()


def signup_request_create(
    *, company: str, slug: str, email: str, plan_version: PlanVersion, password: str, browser: str,
    ip: str | None = None, coupon_code: str = "", marketplace_customer_id: int | None = None,
    time_zone: str = "UTC",
) -> SignupRequest:
    """Start a signup in one browser (`browser`: the token kept in its session) and email its code.

    A second submit from the same browser for the same email updates that browser's open request (a double
    submit ends in one tenant); a submit from another browser is a request of its own and changes nothing
    of this one. For an email that already has an account the page answers as for any other, and the
    mailbox owner gets a notice instead of a code."""
    email = email.strip().lower()
    if not plan_version.plan.is_public:
        raise ApplicationError("This plan is not offered.", {"field": "plan"})
    # A coupon code is checked now (the form says what is wrong with it) and applied when the account is made.
    coupon = coupon_for_code(code=coupon_code, currency=plan_version.currency) if coupon_code.strip() else None
    if Tenant.objects.filter(slug=slug).exists():
        raise ApplicationError(f"The company id {slug!r} is taken: choose another.", {"field": "slug"})
    if time_zone not in time_zone_names():
        raise ApplicationError(f"{time_zone[:80]!r} is not an IANA time zone name.", {"field": "time_zone"})
    now = timezone.now()
    if SignupRequest.objects.filter(slug=slug, status=SignupStatus.PENDING, code_expires_at__gt=now).exclude(
        email=email
    ).exists() or SignupRequest.objects.filter(slug=slug, status__in=(SignupStatus.VERIFIED, SignupStatus.FAILED)).exclude(
        email=email
    ).exists():
        raise ApplicationError(f"The company id {slug!r} is taken: choose another.", {"field": "slug"})
    browser_key = _browser_key(browser)
    with transaction.atomic():
        signup = (
            SignupRequest.objects.select_for_update()
            .filter(email=email, browser_key=browser_key, status__in=OPEN_STATUSES)
            .first()
        )
        if signup is not None and signup.status == SignupStatus.VERIFIED:
            raise ApplicationError("This signup is being set up already: wait a moment, then sign in.")
        if signup is None:
            signup = SignupRequest(email=email, browser_key=browser_key)
        signup.company, signup.slug, signup.plan_version, signup.ip = company.strip(), slug, plan_version, ip
        signup.time_zone = time_zone
        signup.coupon = coupon
        signup.marketplace_customer_id = marketplace_customer_id
        signup.password_encrypted = _encrypt_password(password)
        signup.status = SignupStatus.PENDING
        send = _issue_code(signup)
        try:
            with transaction.atomic():
                signup.save()
        except IntegrityError:
            # A concurrent submit from the same browser won the race: its request (and its code) stands.
            winner = SignupRequest.objects.filter(
                email=email, browser_key=browser_key, status__in=OPEN_STATUSES
            ).first()
            if winner is None:
                raise
            return winner
        send()
    return signup


def _locked_for_browser(request_id: int, browser: str) -> SignupRequest:
    signup = (
        SignupRequest.objects.select_for_update().filter(pk=request_id, browser_key=_browser_key(browser)).first()
    )
    if signup is None:
        # Another browser's request, or none: nothing about it is told or changed (no attempt is counted).
        raise ApplicationError("There is no signup to verify in this browser: sign up again.")
    return signup


def signup_resend_code(*, request_id: int, browser: str) -> SignupRequest:
    with transaction.atomic():
        signup = _locked_for_browser(request_id, browser)
        if signup.status != SignupStatus.PENDING:
            raise ApplicationError("This signup is not waiting for a code.")
        send = _issue_code(signup)
        signup.save(update_fields=["code_hash", "code_expires_at", "verify_attempts", "password_encrypted", "error",
                                   "updated_at"])
        send()
    return signup


@dataclass(frozen=True)
class SignupCompletion:
    """What a verification came to: the request, and the owner to sign in, set only when this very call
    verified the pending request with its code and provisioning succeeded."""

    signup: SignupRequest
    owner: TenantUser | None


def _check_code(*, request_id: int, code: str, browser: str) -> tuple[SignupRequest, bool]:
    """(the request, whether this call moved it from pending to verified). In every state the request must
    be this browser's, its code unexpired and its wrong attempts under MAX_VERIFY_ATTEMPTS; a wrong code
    counts in every state."""
    with transaction.atomic():
        signup = _locked_for_browser(request_id, browser)
        error, fresh = None, False
        if signup.status == SignupStatus.EXPIRED:
            error = ApplicationError("This signup has expired: sign up again.")
        elif signup.verify_attempts >= MAX_VERIFY_ATTEMPTS:
            error = ApplicationError("Too many wrong codes: ask for a new code." if signup.status == SignupStatus.PENDING
                                     else "Too many wrong codes.")
        elif signup.code_expires_at is None or signup.code_expires_at < timezone.now():
            error = ApplicationError("The code has expired: ask for a new code." if signup.status == SignupStatus.PENDING
                                     else "The code has expired.")
        elif not _code_matches(signup, code):
            signup.verify_attempts += 1
            signup.save(update_fields=["verify_attempts", "updated_at"])
            error = ApplicationError("That code is not right.")
        elif signup.status == SignupStatus.PENDING:
            if TenantUser.objects.filter(email__iexact=signup.email).exists():
                # Another of this mailbox's signups (another browser) made the account meanwhile. Only the
                # holder of this code reads this, so it tells nobody else which addresses have accounts.
                signup.status, signup.password_encrypted = SignupStatus.EXPIRED, ""
                signup.save(update_fields=["status", "password_encrypted", "updated_at"])
                error = ApplicationError("An account with this email exists already: sign in instead.")
            else:
                signup.status = SignupStatus.VERIFIED
                signup.verified_at = timezone.now()
                signup.save(update_fields=["status", "verified_at", "updated_at"])
                fresh = True
        # else: the right code again for a verified request (a double submit): nothing changes.
    if error is not None:
        raise error  # raised after the atomic block so the attempt count is kept
    return signup, fresh


def signup_complete(*, request_id: int, code: str, browser: str) -> SignupCompletion:
    """Check the code, then provision. Verifying an already verified request again with its code (a double
    submit) changes nothing, retries a failed provisioning, and signs nobody in."""
    signup, fresh = _check_code(request_id=request_id, code=code, browser=browser)
    if signup.status != SignupStatus.PROVISIONED:
        signup = signup_provision(request_id=signup.pk)
    owner = signup.owner if fresh and signup.status == SignupStatus.PROVISIONED else None
    return SignupCompletion(signup=signup, owner=owner)


def signup_verify(*, request_id: int, code: str, browser: str) -> SignupRequest:
    """`signup_complete`'s request: verified and provisioned, or failed with the reason."""
    return signup_complete(request_id=request_id, code=code, browser=browser).signup


def signup_provision(*, request_id: int) -> SignupRequest:
    """Create the tenant, its subscription and its owner (through the identity backend), all or nothing.

    The request row is locked, so concurrent calls provision once; a provisioned request is returned as
    is. On failure the database work is rolled back, an identity user already made is deleted again, and
    the request is marked failed with the reason (the admin's "retry provisioning" calls this again).
    """
    with transaction.atomic():
        signup = SignupRequest.objects.select_for_update().select_related("plan_version__plan").get(pk=request_id)
        if signup.status == SignupStatus.PROVISIONED:
            return signup
        if signup.status not in (SignupStatus.VERIFIED, SignupStatus.FAILED):
            raise ApplicationError(f"A {signup.get_status_display().lower()} signup cannot be provisioned.")
        signup.provision_attempts += 1
        try:
            with transaction.atomic():
                plan_version = signup.plan_version.plan.current_version or signup.plan_version
                tenant = tenant_create(
                    slug=signup.slug,
                    name=signup.company,
                    contact_email=signup.email,
                    status=TenantStatus.TRIALING if plan_version.trial_days else TenantStatus.ACTIVE,
                    time_zone=signup.time_zone,
                )
                if signup.marketplace_customer_id is not None:
                    marketplace_customer_attach(customer_id=signup.marketplace_customer_id, tenant=tenant)
                subscription = subscription_create(tenant=tenant, plan_version=plan_version)
                if signup.coupon_id:
                    _apply_signup_coupon(signup, subscription)
                owner, _ = tenant_user_create(
                    tenant=tenant, email=signup.email, role=TenantRole.OWNER,
                    password=_decrypt_password(signup.password_encrypted),
                )
        except Exception as exc:
            signup.status = SignupStatus.FAILED
            signup.error = _describe(exc)
            signup.save(update_fields=["status", "error", "provision_attempts", "updated_at"])
            logger.warning("signup %s (%s) failed to provision: %s", signup.pk, signup.slug, signup.error)
            return signup
        signup.status = SignupStatus.PROVISIONED
        signup.error = ""
        signup.tenant, signup.owner = tenant, owner
        signup.password_encrypted = ""  # not needed any more
        signup.provisioned_at = timezone.now()
        signup.save()
    return signup


def _apply_signup_coupon(signup: SignupRequest, subscription) -> None:
    """The code entered at signup, applied to the new subscription; a coupon used up or expired since the form
    was sent is left out (the account is made all the same) and logged."""
    try:
        with transaction.atomic():
            coupon_apply(subscription=subscription, coupon=signup.coupon, via=CouponVia.SIGNUP)
    except ApplicationError as exc:
        logger.warning("signup %s (%s): coupon %s not applied: %s", signup.pk, signup.slug, signup.coupon.code,
                       exc.message)


def _describe(exc: Exception) -> str:
    if isinstance(exc, IdentityError):
        return f"Identity provider: {exc.message}"
    if isinstance(exc, ApplicationError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    logger.exception("unexpected provisioning failure")
    return f"Unexpected error: {type(exc).__name__}: {exc}"


def signup_requests_expire(*, now=None) -> int:
    """Pending requests past their code's expiry become expired and lose their encrypted password."""
    now = now or timezone.now()
    return SignupRequest.objects.filter(status=SignupStatus.PENDING, code_expires_at__lt=now).update(
        status=SignupStatus.EXPIRED, password_encrypted="", updated_at=now
    )

