"""Self-service signup through the Django test client: the happy path, retries, refusals, failures, the rate limit."""

import re

import pytest
from django.core.cache import cache

from tenants.identity import IdentityError
from tenants.identity.local import LocalIdentityBackend
from tenants.models import Plan, SignupRequest, SignupStatus, Subscription, Tenant, TenantStatus, TenantUser
from tenants.services.signup import signup_provision
from tenants.tests.factories import TenantFactory, import_sample_plans

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def plans(db):
    cache.clear()
    versions = import_sample_plans()
    yield versions
    cache.clear()


def _form(plans, **overrides):
    data = {"company": "Acme Corp", "slug": "", "email": "ann@acme.example", "password": PASSWORD,
            "plan": plans["pro"].pk}
    data.update(overrides)
    return data


def _code(mailoutbox) -> str:
    return re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)


def _sign_up(client, plans, mailoutbox, **overrides):
    response = client.post("/signup/", _form(plans, **overrides))
    assert response.status_code == 302 and response["Location"] == "/signup/verify/", response.content
    return _code(mailoutbox)


@pytest.fixture
def on_commit():
    """Run on_commit callbacks (the code email) at once, as a real commit would."""
    from django.db import connection

    original = connection.on_commit

    def run_now(func, *args, **kwargs):
        func()

    connection.on_commit = run_now
    yield
    connection.on_commit = original


@pytest.mark.usefixtures("local_identity", "on_commit")
class TestSignup:
    def test_signup_page_offers_public_plans_only(self, client, plans):
        Plan.objects.filter(code="starter").update(is_public=False)
        page = client.get("/signup/").content.decode()
        assert "Pro" in page and "Starter" not in page

    def test_signup_verify_and_land_in_the_tenant_area(self, client, plans, mailoutbox):
        code = _sign_up(client, plans, mailoutbox)
        signup = SignupRequest.objects.get()
        assert signup.status == SignupStatus.PENDING and PASSWORD not in signup.password_encrypted
        assert code not in signup.code_hash

        response = client.post("/signup/verify/", {"code": code})
        assert response.status_code == 302 and response["Location"] == "/tenant/"
        tenant = Tenant.objects.get(slug="acme-corp")
        assert tenant.status == TenantStatus.TRIALING  # the pro plan has a 14-day trial
        subscription = Subscription.objects.get(tenant=tenant)
        assert subscription.plan_version == plans["pro"] and subscription.trial_ends_at is not None
        owner = TenantUser.objects.get(tenant=tenant)
        assert (owner.email, owner.role, owner.is_active) == ("ann@acme.example", "owner", True)
        signup.refresh_from_db()
        assert signup.status == SignupStatus.PROVISIONED and signup.password_encrypted == ""
        # Signed in to the tenant area.
        page = client.get("/tenant/")
        assert page.status_code == 200 and "Acme Corp" in page.content.decode()

    def test_plan_without_trial_starts_active(self, client, plans, mailoutbox):
        code = _sign_up(client, plans, mailoutbox, plan=plans["starter"].pk, slug="acme")
        client.post("/signup/verify/", {"code": code})
        assert Tenant.objects.get(slug="acme").status == TenantStatus.ACTIVE

    def test_double_submit_makes_one_tenant(self, client, plans, mailoutbox):
        _sign_up(client, plans, mailoutbox)
        code = _sign_up(client, plans, mailoutbox)  # the form sent twice: the same request, a new code
        assert SignupRequest.objects.count() == 1
        first = client.post("/signup/verify/", {"code": code})
        second = client.post("/signup/verify/", {"code": code})
        assert first.status_code == second.status_code == 302
        assert second["Location"] == "/tenant/"
        assert Tenant.objects.count() == 1 and TenantUser.objects.count() == 1
        assert signup_provision(request_id=SignupRequest.objects.get().pk).status == SignupStatus.PROVISIONED
        assert Tenant.objects.count() == 1

    def test_taken_email_and_slug_are_refused_clearly(self, client, plans, mailoutbox):
        code = _sign_up(client, plans, mailoutbox)
        client.post("/signup/verify/", {"code": code})
        client.logout()
        response = client.post("/signup/", _form(plans, slug="other"))
        assert response.status_code == 200
        assert "An account with this email already exists" in response.content.decode()
        response = client.post("/signup/", _form(plans, email="bob@other.example"))
        assert "The company id &#x27;acme-corp&#x27; is taken" in response.content.decode()
        TenantFactory(slug="taken")
        response = client.post("/signup/", _form(plans, email="carl@x.example", slug="taken"))
        assert "is taken" in response.content.decode()
        assert SignupRequest.objects.count() == 1

    def test_a_pending_signup_reserves_its_slug(self, client, plans, mailoutbox):
        _sign_up(client, plans, mailoutbox)
        response = client.post("/signup/", _form(plans, email="eve@evil.example"))
        assert "is taken" in response.content.decode()

    def test_weak_password_is_refused_with_the_pool_rules(self, client, plans):
        response = client.post("/signup/", _form(plans, password="alllowercase1"))
        page = response.content.decode()
        assert response.status_code == 200 and "uppercase letter" in page and "symbol" in page
        assert not SignupRequest.objects.exists()

    def test_wrong_codes_are_counted_and_then_refused(self, client, plans, mailoutbox):
        code = _sign_up(client, plans, mailoutbox)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(5):
            assert "not right" in client.post("/signup/verify/", {"code": wrong}).content.decode()
        assert "Too many wrong codes" in client.post("/signup/verify/", {"code": code}).content.decode()
        assert not Tenant.objects.exists()
        client.post("/signup/verify/", {"action": "resend"})
        assert client.post("/signup/verify/", {"code": _code(mailoutbox)}).status_code == 302
        assert Tenant.objects.filter(slug="acme-corp").exists()

    def test_failed_provisioning_leaves_nothing_and_can_be_retried(self, client, plans, mailoutbox, monkeypatch):
        def refuse(self, **kwargs):
            raise IdentityError("The identity provider is busy; try again in a minute.")

        monkeypatch.setattr(LocalIdentityBackend, "create_user", refuse)
        code = _sign_up(client, plans, mailoutbox)
        response = client.post("/signup/verify/", {"code": code})
        assert response.status_code == 503
        assert not Tenant.objects.exists() and not Subscription.objects.exists() and not TenantUser.objects.exists()
        signup = SignupRequest.objects.get()
        assert signup.status == SignupStatus.FAILED and "busy" in signup.error and signup.provision_attempts == 1

        monkeypatch.undo()
        signup = signup_provision(request_id=signup.pk)  # what the admin's "retry provisioning" runs
        assert signup.status == SignupStatus.PROVISIONED and signup.provision_attempts == 2
        assert Tenant.objects.get().slug == "acme-corp" and TenantUser.objects.get().role == "owner"

    def test_signup_is_rate_limited_per_ip(self, client, plans, mailoutbox, settings):
        settings.SIGNUP_RATE_LIMIT = "2/hour"
        for n in range(2):
            assert client.post("/signup/", _form(plans, email=f"u{n}@x.example", slug=f"s{n}")).status_code == 302
        response = client.post("/signup/", _form(plans, email="u3@x.example", slug="s3"))
        assert response.status_code == 429 and "Too many signups" in response.content.decode()
        other_ip = client.post("/signup/", _form(plans, email="u4@x.example", slug="s4"), REMOTE_ADDR="10.1.2.3")
        assert other_ip.status_code == 302
        # Asking for new codes (five more guesses each) counts against the same limit.
        assert client.post("/signup/verify/", {"action": "resend"}, REMOTE_ADDR="10.1.2.3").status_code == 200
        assert client.post("/signup/verify/", {"action": "resend"}, REMOTE_ADDR="10.1.2.3").status_code == 429


@pytest.mark.django_db
def test_cognito_refusal_after_the_user_exists_leaves_nothing(client, plans, mailoutbox, cognito_pool, settings,
                                                               monkeypatch, on_commit):
    """The database fails after Cognito made the owner: the Cognito user is deleted, the tenant rolled back."""
    code = _sign_up(client, plans, mailoutbox)

    def broken_create(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(TenantUser.objects, "create", broken_create)
    assert client.post("/signup/verify/", {"code": code}).status_code == 503
    assert cognito_pool.list_users(UserPoolId=settings.COGNITO_USER_POOL_ID)["Users"] == []
    assert not Tenant.objects.exists()
    assert "database went away" in SignupRequest.objects.get().error

    monkeypatch.undo()
    signup = signup_provision(request_id=SignupRequest.objects.get().pk)
    assert signup.status == SignupStatus.PROVISIONED
    users = cognito_pool.list_users(UserPoolId=settings.COGNITO_USER_POOL_ID)["Users"]
    assert [u["Username"] for u in users] == [signup.owner.username]
    # The owner signs in to the tenant area with the password chosen at signup, checked by Cognito.
    client.logout()
    response = client.post("/account/login/?next=/tenant/", {"username": "ann@acme.example", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/tenant/"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submits_make_one_request_and_one_tenant(local_identity, mailoutbox):
    """Two submits and two verifications racing each other (row locks on PostgreSQL)."""
    import threading

    from django.db import connection

    from tenants.services import signup as signup_services
    from tenants.services.signup import signup_request_create, signup_verify

    cache.clear()
    versions = import_sample_plans()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run(func):
        try:
            barrier.wait()
            results.append(func())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    def submit():
        return signup_request_create(company="Acme", slug="acme", email="ann@acme.example",
                                     plan_version=versions["pro"], password=PASSWORD)

    threads = [threading.Thread(target=run, args=(submit,)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and SignupRequest.objects.count() == 1
    signup = SignupRequest.objects.get()
    # The second submit may have replaced the code (both emails sent): use the one that is current.
    codes = [re.search(r"\b(\d{6})\b", m.body).group(1) for m in mailoutbox]
    code = next(c for c in codes if signup_services._code_matches(signup, c))

    results.clear()
    threads = [threading.Thread(target=run, args=(lambda: signup_verify(request_id=signup.pk, code=code),))
               for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert {r.status for r in results} == {SignupStatus.PROVISIONED}
    assert Tenant.objects.count() == 1 and TenantUser.objects.count() == 1
