"""The tenant area: a signed-in tenant user's plan, users and API keys (the owner manages them) and API token.

Every view goes through `tenant_view`, which resolves the caller's TenantUser and scopes everything to its
tenant, so no view can reach another tenant's users.
"""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from portal.kernel import ApplicationError, pipeline_setting
from tenants.forms import ApiKeyForm, ChangePasswordForm, InviteForm, TokenForm
from tenants.identity import InvalidCredentials, get_identity_backend
from tenants.identity.lockout import guarded_password_check
from tenants.models import USABLE_TENANT_STATUSES, ApiKey, TenantRole, TenantUser
from tenants.selectors import (
    tenant_active_subscription,
    tenant_api_keys,
    tenant_user_of_login,
    tenant_users_listed,
)
from tenants.services import identity as svc
from tenants.services.api_keys import api_key_create, api_key_revoke


def tenant_view(view=None, *, password_page=False):
    """Require a signed-in, enabled user of a usable tenant; until a temporary password is replaced, only
    the password page (password_page=True) is served."""
    if view is None:
        return lambda v: tenant_view(v, password_page=password_page)

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        tenant_user = tenant_user_of_login(user=request.user)
        if tenant_user is None:
            # Still a 403 (no tenant's data is served), but a provider's staff get told why and where to look instead.
            return render(request, "tenants/area_denied.html",
                          {"reason": "This sign-in belongs to no tenant.", "staff": request.user.is_staff}, status=403)
        if not tenant_user.is_active or tenant_user.tenant.status not in USABLE_TENANT_STATUSES:
            return render(request, "tenants/area_denied.html",
                          {"reason": "This account is suspended. Contact us to restore it."}, status=403)
        if tenant_user.password_change_required and not password_page:
            messages.info(request, "Choose your own password to continue.")
            return redirect("tenant-password")
        request.tenant_user = tenant_user
        return view(request, *args, **kwargs)

    return wrapper


def _curl(token: str) -> str:
    base_url = pipeline_setting("METERED_API_BASE_URL")  # the deployed API's endpoint once there is one
    return f'curl "{base_url.rstrip("/")}/random/strings?len=7" -H "Authorization: {token}"'


@tenant_view
def tenant_home(request):
    tenant = request.tenant_user.tenant
    subscription = tenant_active_subscription(tenant=tenant)
    return render(request, "tenants/area_home.html", {"tenant": tenant, "subscription": subscription,
                                                       "tenant_user": request.tenant_user})


@tenant_view
@require_http_methods(["GET", "POST"])
def tenant_users(request):
    me = request.tenant_user
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        if me.role != TenantRole.OWNER:
            return render(request, "tenants/area_denied.html", {"reason": "Only the owner invites users."}, status=403)
        if form.is_valid():
            try:
                invited = svc.tenant_user_invite(tenant=me.tenant, email=form.cleaned_data["email"], invited_by=me)
            except ApplicationError as exc:
                form.add_error("email", exc.message)
            else:
                messages.success(request, f"{invited.email} is invited: a temporary password is on its way.")
                return redirect("tenant-users")
    users = tenant_users_listed(tenant=me.tenant)
    return render(request, "tenants/area_users.html", {"users": users, "form": form, "me": me})


@tenant_view
@require_POST
def tenant_user_action(request, pk: int, action: str):
    me = request.tenant_user
    if me.role != TenantRole.OWNER:
        return render(request, "tenants/area_denied.html", {"reason": "Only the owner manages users."}, status=403)
    # Scoped to the caller's tenant: another tenant's user id is a 404.
    target = get_object_or_404(TenantUser.objects.select_related("user", "tenant"), pk=pk, tenant=me.tenant)
    if target.pk == me.pk:
        messages.error(request, "You cannot change your own account here.")
        return redirect("tenant-users")
    services = {"disable": svc.tenant_user_disable, "enable": svc.tenant_user_enable, "remove": svc.tenant_user_remove}
    if action not in services:
        return redirect("tenant-users")
    try:
        services[action](tenant_user=target)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.email}: {action}d.")
    return redirect("tenant-users")


def _owner_only(request, reason: str):
    return render(request, "tenants/area_denied.html", {"reason": reason}, status=403)


SENT_KEY_FORMS = "api_key_forms_sent"  # the session's list of the key forms already answered (their `once`)


@tenant_view
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_api_keys_page(request):
    """The owner's API keys: make one (the key is on this answer only, never again), list them, revoke them."""
    me = request.tenant_user
    if me.role != TenantRole.OWNER:
        return _owner_only(request, "Only the owner manages API keys.")
    form = ApiKeyForm(request.POST or None)
    raw_key = None
    sent = request.session.get(SENT_KEY_FORMS, [])
    if request.method == "POST" and form.is_valid() and form.cleaned_data["once"] in sent:
        messages.error(request, "This form was already sent, and its key made and shown once on that answer. If "
                                "you did not copy the key, revoke it below and make another.")
        form = ApiKeyForm()
    elif request.method == "POST" and form.is_valid():
        request.session[SENT_KEY_FORMS] = [*sent, form.cleaned_data["once"]][-20:]
        try:
            api_key, raw_key = api_key_create(tenant=me.tenant, name=form.cleaned_data["name"],
                                              scopes=form.cleaned_data["scopes"], created_by=request.user)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Key “{api_key.name}” is made: copy it now, it is not shown again.")
            form = ApiKeyForm()
    return render(request, "tenants/area_api_keys.html", {
        "form": form, "keys": tenant_api_keys(tenant=me.tenant), "raw_key": raw_key,
        "curl": _api_curl(raw_key) if raw_key else "",
    })


def _api_curl(raw_key: str) -> str:
    return f'curl -H "Authorization: Bearer {raw_key}" "{settings.PORTAL_BASE_URL.rstrip("/")}/api/v1/usage/current/"'


@tenant_view
@require_POST
def tenant_api_key_revoke(request, pk: int):
    me = request.tenant_user
    if me.role != TenantRole.OWNER:
        return _owner_only(request, "Only the owner manages API keys.")
    # Scoped to the caller's tenant: another tenant's key id is a 404.
    api_key = get_object_or_404(ApiKey, pk=pk, tenant=me.tenant)
    api_key_revoke(api_key=api_key, by=request.user)
    messages.success(request, f"Key “{api_key.name}” (mk_{api_key.prefix}_…) is revoked.")
    return redirect("tenant-api-keys")


@tenant_view
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_token(request):
    needs_password = get_identity_backend().name != "local"
    form = TokenForm(request.POST or None) if needs_password else None
    token = None
    if request.method == "POST" and (form is None or form.is_valid()):
        try:
            if form is None:
                token = svc.tenant_user_issue_token(tenant_user=request.tenant_user)
            else:
                token = guarded_password_check(request, request.tenant_user.email, lambda: svc.tenant_user_issue_token(
                    tenant_user=request.tenant_user, password=form.cleaned_data["password"]
                ))
        except InvalidCredentials:
            form.add_error("password", "That password is not right.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return render(request, "tenants/area_token.html", {
        "form": form, "token": token, "curl": _curl(token) if token else "",
        "lifetime_minutes": settings.IDENTITY_TOKEN_LIFETIME_SECONDS // 60,
    })


@tenant_view(password_page=True)
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_password(request):
    form = ChangePasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        me = request.tenant_user
        try:
            guarded_password_check(request, me.email, lambda: get_identity_backend().authenticate(
                username=me.username, password=form.cleaned_data["current_password"]
            ))
        except InvalidCredentials:
            form.add_error("current_password", "That password is not right.")
        else:
            try:
                svc.tenant_user_set_password(tenant_user=me, password=form.cleaned_data["new_password"])
            except ApplicationError as exc:
                form.add_error("new_password", exc.message)
            else:
                request.user.refresh_from_db()
                update_session_auth_hash(request, request.user)  # stay signed in after the change
                messages.success(request, "Your password is changed.")
                return redirect("tenant-home")
    return render(request, "tenants/area_password.html", {"form": form})
