"""The demo data: three tenants on the demo plans, a sign-in for each, and an admin login, created once."""

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model

from tenants.identity.base import generate_temporary_password
from tenants.models import (
    BillingCycle,
    Plan,
    Tenant,
    TenantRole,
    TenantStatus,
    TenantUser,
)
from tenants.selectors import tenant_has_active_subscription
from tenants.services.identity import tenant_user_create
from tenants.services.lifecycle import tenant_create
from tenants.services.subscriptions import subscription_create

DEMO_TENANTS = [
    # slug, name, plan, billing cycle
    ("acme", "Acme Corp", "pro", BillingCycle.CALENDAR),
    ("globex", "Globex", "starter", BillingCycle.CALENDAR),
    ("initech", "Initech", "enterprise", BillingCycle.ANNIVERSARY),
]


@dataclass
class DemoResult:
    lines: list[str] = field(default_factory=list)  # what was created
    logins: list[str] = field(default_factory=list)  # the admin's and each demo tenant's sign-in


def _demo_start() -> datetime:
    """The demo subscriptions start at the beginning of last month, so last month can be billed."""
    now = datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return datetime(year, month, 1, tzinfo=UTC)


def _write_private(path, text: str) -> None:
    """Write a secret readable by its owner only (0600), also when the file existed with wider rights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # os.open's mode applies only to a new file (and the umask narrows it)
        fh.write(text)


def demo_load(*, admin_username: str = "admin", admin_password: str | None = None) -> DemoResult:
    result = DemoResult()
    start = _demo_start()
    for slug, name, plan_code, cycle in DEMO_TENANTS:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(slug=slug, name=name, contact_email=f"billing@{slug}.example", status=TenantStatus.ACTIVE)
            result.lines.append(f"tenant {slug}: created")
        if not tenant_has_active_subscription(tenant=tenant):
            version = Plan.objects.get(code=plan_code).current_version
            # No trial for the demo: its point is to show a billed month on the first start.
            subscription_create(tenant=tenant, plan_version=version, started_at=start, billing_cycle=cycle, with_trial=False)
            result.lines.append(f"tenant {slug}: subscribed to {plan_code}")

    User = get_user_model()
    password_file = settings.VAR_DIR / "admin-password.txt"
    admin = User.objects.filter(username=admin_username).first()
    if admin is None:
        password = admin_password or secrets.token_urlsafe(12)
        User.objects.create_superuser(admin_username, f"{admin_username}@localhost", password)
        _write_private(password_file, password + "\n")
        result.logins.append(f"admin login created: {admin_username} / {password}")
    elif admin_password:
        admin.set_password(admin_password)
        admin.save(update_fields=["password"])
        _write_private(password_file, admin_password + "\n")
        result.logins.append(f"admin login: {admin_username} / {admin_password}")
    elif password_file.exists():
        result.logins.append(f"admin login: {admin_username} / {password_file.read_text().strip()}")
    else:
        result.logins.append(f"admin login: {admin_username} (password set earlier; change it with manage.py changepassword)")
    demo_tenant_logins(result)
    return result


def demo_tenant_email(slug: str) -> str:
    return f"demo@{slug}.example"


def demo_tenant_logins(result: DemoResult) -> None:
    """A tenant-area sign-in (an owner) per demo tenant, its password kept in var/demo-tenant-logins.txt (0600)
    so a second run prints the same logins. Local identities only: the demo makes no users in a Cognito pool."""
    if settings.IDENTITY_BACKEND != "local":
        result.logins.append(f"tenant logins: none made (IDENTITY_BACKEND={settings.IDENTITY_BACKEND}; "
                             "add users in Admin -> Tenant users)")
        return
    path = settings.VAR_DIR / "demo-tenant-logins.txt"
    known = dict(line.split(" ", 1) for line in (path.read_text().splitlines() if path.exists() else []) if " " in line)
    changed = False
    for slug, *_ in DEMO_TENANTS:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            continue
        email = demo_tenant_email(slug)
        if not TenantUser.objects.filter(email__iexact=email).exists():
            password = generate_temporary_password()
            tenant_user_create(tenant=tenant, email=email, role=TenantRole.OWNER, password=password)
            known[email], changed = password, True
            result.logins.append(f"tenant login created ({slug}): {email} / {password}")
        elif email in known:
            result.logins.append(f"tenant login ({slug}): {email} / {known[email]}")
        else:
            result.logins.append(f"tenant login ({slug}): {email} (password set earlier; Admin -> Tenant users -> Reset the password)")
    if changed:
        _write_private(path, "".join(f"{email} {password}\n" for email, password in known.items()))
