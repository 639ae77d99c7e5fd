"""Reads about tenants, their users, the catalog and subscriptions: one query per question, asked here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import F, OuterRef, QuerySet, Subquery

from tenants import raw
from tenants.models import (
    ApiKey,
    Metric,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionRequest,
    SubscriptionStatus,
    Tenant,
    TenantStatus,
    TenantUser,
)


def subscriptions_active(
    *, tenant: Tenant | None = None, plan: Plan | None = None, plan_version: PlanVersion | None = None
) -> QuerySet[Subscription]:
    """The active subscriptions, optionally of one tenant, plan or plan version (a tenant has at most one)."""
    queryset = Subscription.objects.filter(status=SubscriptionStatus.ACTIVE)
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    if plan is not None:
        queryset = queryset.filter(plan_version__plan=plan)
    if plan_version is not None:
        queryset = queryset.filter(plan_version=plan_version)
    return queryset


def tenant_active_subscription(*, tenant: Tenant) -> Subscription | None:
    """The tenant's active subscription with its plan version and plan, or None."""
    return subscriptions_active(tenant=tenant).select_related("tenant", "plan_version__plan").first()


def tenant_has_active_subscription(*, tenant: Tenant) -> bool:
    return subscriptions_active(tenant=tenant).exists()


def tenants_with_trial_over(*, now: datetime) -> QuerySet[Tenant]:
    """Trialing tenants whose active subscription's trial ended by `now`."""
    return Tenant.objects.filter(
        status=TenantStatus.TRIALING,
        subscriptions__status=SubscriptionStatus.ACTIVE,
        subscriptions__trial_ends_at__lte=now,
    ).distinct()


def tenant_user_of_login(*, user) -> TenantUser | None:
    """The tenant user a portal login belongs to (with its tenant), or None for a login of no tenant."""
    return TenantUser.objects.select_related("tenant").filter(user=user).first()


_tenant_user_query: tuple | None = None


def _tenant_user_sql() -> tuple:
    """(SQL, row readers) of tenant_user_with_login, written once per process from the models' metadata."""
    global _tenant_user_query
    if _tenant_user_query is None:
        q = raw.quote
        tenant_users, tenants, users = raw.ModelRows(TenantUser), raw.ModelRows(Tenant), raw.ModelRows(get_user_model())
        meta, tenant_field, user_field = TenantUser._meta, TenantUser._meta.get_field("tenant"), TenantUser._meta.get_field("user")
        sql = (f"SELECT {tenant_users.columns('tu')}, {tenants.columns('t')}, {users.columns('u')} "
               f"FROM {q(meta.db_table)} tu "
               f"INNER JOIN {q(Tenant._meta.db_table)} t ON t.{q(Tenant._meta.pk.column)} = tu.{q(tenant_field.column)} "
               f"LEFT OUTER JOIN {q(users.model._meta.db_table)} u "
               f"ON u.{q(users.model._meta.pk.column)} = tu.{q(user_field.column)} "
               f"WHERE tu.{q(meta.get_field('username').column)} = %s LIMIT 1")
        _tenant_user_query = (sql, tenant_users, tenants, users, tenant_field, user_field)
    return _tenant_user_query


def tenant_user_with_login(*, username: str) -> TenantUser | None:
    """The tenant user a token names (its ``cognito:username``, unique), with its tenant and its portal login (None
    when it has none) loaded, or None. Every request with an ID token asks it, so it is one raw query (tenants.raw)
    for the rows of ``TenantUser.objects.select_related("tenant", "user").filter(username=username).first()``."""
    sql, tenant_users, tenants, users, tenant_field, user_field = _tenant_user_sql()
    with raw.cursor() as cursor:  # the claim as the ORM would compare it (a CharField's: a string)
        cursor.execute(sql, [raw.adapt(username, TenantUser._meta.get_field("username"))])
        row = cursor.fetchone()
    if row is None:
        return None
    tenant_user = tenant_users.build(row)
    tenant_field.set_cached_value(tenant_user, tenants.build(row, len(tenant_users)))
    login_at = len(tenant_users) + len(tenants)
    if row[login_at] is None:  # no portal login: the LEFT JOIN's NULLs
        user_field.set_cached_value(tenant_user, None)
    else:
        user = users.build(row, login_at)
        user_field.set_cached_value(tenant_user, user)
        user_field.remote_field.set_cached_value(user, tenant_user)  # user.tenant_user, as select_related sets it
    return tenant_user


def tenant_users_listed(*, tenant: Tenant) -> QuerySet[TenantUser]:
    """The tenant's users as its owner sees them: those still in the identity store, by email."""
    return TenantUser.objects.filter(tenant=tenant, identity_deleted_at__isnull=True).order_by("email")


def metrics_by_code(*, codes: Iterable[str] | None = None) -> dict[str, Metric]:
    """Metrics by code, in code order: those of `codes` (unknown codes are left out), or all of them."""
    # One raw query (tenants.raw): every usage API request asks it. The rows of
    # Metric.objects.order_by("code")[.filter(code__in=codes)].
    global _metric_rows
    if _metric_rows is None:
        rows = raw.ModelRows(Metric)
        _metric_rows = (rows, f"SELECT {rows.columns('m')} FROM {raw.quote(Metric._meta.db_table)} m",
                        f"m.{raw.quote(Metric._meta.get_field('code').column)}")
    rows, select, code = _metric_rows
    params: list[str] = []
    if codes is not None:
        params = list(dict.fromkeys(codes))
        if not params:
            return {}
        select = f"{select} WHERE {code} IN ({', '.join(['%s'] * len(params))})"
    with raw.cursor() as cursor:
        cursor.execute(f"{select} ORDER BY {code}", params)
        return {metric.code: metric for metric in rows.build_all(cursor.fetchall())}


_metric_rows: tuple | None = None


def tenant_api_keys(*, tenant: Tenant) -> QuerySet[ApiKey]:
    """The tenant's API keys, live ones first, newest first."""
    return ApiKey.objects.filter(tenant=tenant).order_by(F("revoked_at").desc(nulls_first=True), "-created_at")


def plans_on_offer(*, subscription: Subscription) -> QuerySet[PlanVersion]:
    """What the tenant of `subscription` may move to by itself: the public plans (`Plan.is_public`, those of the
    signup page) at their newest version, in its plan's currency and interval, its own plan left out; by base fee."""
    current = subscription.plan_version
    newest = PlanVersion.objects.filter(plan=OuterRef("plan")).order_by("-version").values("pk")[:1]
    return (PlanVersion.objects.filter(pk=Subquery(newest), plan__is_public=True, currency=current.currency,
                                       interval=current.interval)
            .exclude(plan_id=current.plan_id).select_related("plan").order_by("base_fee", "plan__code"))


def subscription_requests_of(*, subscription: Subscription) -> QuerySet[SubscriptionRequest]:
    """The subscription's self-service requests, newest first (its history as the tenant sees it)."""
    return subscription.requests.select_related("from_version", "to_version", "requested_by", "decided_by")
