"""Self-service signup through the Django test client: the happy path, retries, refusals, failures, the rate limit."""

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from portal.kernel import ApplicationError
from tenants.identity import IdentityError, get_identity_backend
from tenants.identity.local import LocalIdentityBackend
from tenants.models import Plan, SignupRequest, SignupStatus, Subscription, Tenant, TenantStatus, TenantUser
from tenants.services.signup import signup_provision, signup_resend_code, signup_verify
from tenants.tasks import expire_signups
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

    def test_taken_slug_is_refused_clearly(self, client, plans, mailoutbox):
        code = _sign_up(client, plans, mailoutbox)
        client.post("/signup/verify/", {"code": code})
        client.logout()
        response = client.post("/signup/", _form(plans, email="bob@other.example"))
        assert "The company id &#x27;acme-corp&#x27; is taken" in response.content.decode()
        TenantFactory(slug="taken")
        response = client.post("/signup/", _form(plans, email="carl@x.example", slug="taken"))
        assert "is taken" in response.content.decode()
        assert SignupRequest.objects.count() == 1

    def test_a_taken_email_is_not_revealed_but_its_owner_is_told(self, client, plans, mailoutbox):
        """Signing up with an address that has an account looks the same as with a new one (no account
        enumeration); the mailbox owner gets a notice with no code, and nothing can verify that request."""
        code = _sign_up(client, plans, mailoutbox)
        client.post("/signup/verify/", {"code": code})
        client.logout()

        taken, fresh = Client(), Client()
        response = taken.post("/signup/", _form(plans, slug="other"))
        assert response.status_code == 302 and response["Location"] == "/signup/verify/"
        notice = mailoutbox[-1]
        assert notice.to == ["ann@acme.example"] and "already has an account" in notice.body
        assert "/account/login/" in notice.body and not re.search(r"\b\d{6}\b", notice.body)
        assert fresh.post("/signup/", _form(plans, email="nobody@acme.example", slug="other2")).status_code == 302
        assert "verification code" in mailoutbox[-1].subject
        wrong = f"{(int(_code(mailoutbox)) + 1) % 10**6:06d}"  # wrong for both requests

        def page(browser, *args):
            html = (browser.post("/signup/verify/", *args) if args else browser.get("/signup/verify/")).content.decode()
            return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html).replace("nobody@", "ann@")

        assert page(taken) == page(fresh)
        assert page(taken, {"code": wrong}) == page(fresh, {"code": wrong})  # "not right" for both
        for _ in range(10):
            assert taken.post("/signup/verify/", {"code": wrong}).status_code == 200
        assert page(taken, {"code": wrong}) == page(fresh, {"code": wrong}).replace(
            "That code is not right.", "Too many wrong codes: ask for a new code.")
        assert Tenant.objects.count() == 1 and "_auth_user_id" not in taken.session

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


@pytest.fixture(params=["local", "cognito"])
def identity(request):
    """Each identity backend in turn: the local store, and a Cognito pool under moto."""
    return request.getfixturevalue("local_identity" if request.param == "local" else "cognito_pool")


ATTACKER_PASSWORD = "Att4cker-s3cret"


def _signed_in(browser) -> bool:
    return "_auth_user_id" in browser.session


def _wrong(*codes: str) -> str:
    """A code that is none of `codes`."""
    return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in codes)


def _break_provisioning(monkeypatch):
    def refuse(self, **kwargs):
        raise IdentityError("The identity provider is busy; try again in a minute.")

    monkeypatch.setattr(type(get_identity_backend()), "create_user", refuse)


@pytest.mark.django_db
@pytest.mark.usefixtures("identity", "on_commit")
class TestSignupCannotBeHijacked:
    """Two browsers are two test clients; everything goes through the signup pages."""

    def test_a_second_browser_never_changes_an_open_signup(self, plans, mailoutbox):
        owner, attacker = Client(), Client()
        owner_code = _sign_up(owner, plans, mailoutbox)
        ours = SignupRequest.objects.get()
        before = (ours.company, ours.slug, ours.plan_version_id, ours.password_encrypted, ours.code_hash,
                  ours.code_expires_at, ours.verify_attempts)

        # The same email from another browser: its own request, the owner's left alone, the mailbox told.
        attacker_code = _sign_up(attacker, plans, mailoutbox, company="Evil Corp", slug="evil",
                                 plan=plans["starter"].pk, password=ATTACKER_PASSWORD)
        assert mailoutbox[-1].to == ["ann@acme.example"]
        assert "Another signup with this address is waiting for its code too" in mailoutbox[-1].body
        assert SignupRequest.objects.count() == 2
        ours.refresh_from_db()
        assert (ours.company, ours.slug, ours.plan_version_id, ours.password_encrypted, ours.code_hash,
                ours.code_expires_at, ours.verify_attempts) == before

        # The owner types the newest code of the mailbox (the attacker's) in their own browser: refused.
        assert "not right" in owner.post("/signup/verify/", {"code": attacker_code}).content.decode()
        # The attacker's browser cannot use the owner's code.
        assert "not right" in attacker.post("/signup/verify/", {"code": owner_code}).content.decode()
        assert not Tenant.objects.exists()

        response = owner.post("/signup/verify/", {"code": owner_code})
        assert response.status_code == 302 and response["Location"] == "/tenant/" and _signed_in(owner)
        tenant = Tenant.objects.get()
        assert (tenant.slug, tenant.name) == ("acme-corp", "Acme Corp")
        assert Subscription.objects.get(tenant=tenant).plan_version == plans["pro"]
        # The account has the owner's password, not the attacker's.
        for password, accepted in ((ATTACKER_PASSWORD, False), (PASSWORD, True)):
            response = Client().post("/account/login/", {"username": "ann@acme.example", "password": password})
            assert (response.status_code == 302) is accepted

        # After provisioning, 50 guesses from the attacker's browser: none signs it in.
        wrong = _wrong(owner_code, attacker_code)
        pages = [attacker.post("/signup/verify/", {"code": wrong}) for _ in range(50)]
        assert {page.status_code for page in pages} == {200}
        assert "Too many wrong codes" in pages[-1].content.decode()
        # Not even its own code (which only the mailbox has) now: the attempts are used up.
        assert "Too many wrong codes" in attacker.post("/signup/verify/", {"code": attacker_code}).content.decode()
        assert not _signed_in(attacker) and attacker.get("/tenant/").status_code == 302
        assert Tenant.objects.count() == 1 and TenantUser.objects.count() == 1

    def test_the_verify_page_of_another_session_finds_nothing(self, plans, mailoutbox):
        owner, stranger = Client(), Client()
        code = _sign_up(owner, plans, mailoutbox)
        stranger.get("/signup/")  # a session with a signup token of its own, but no signup
        for browser in (stranger, Client()):
            for data in ({"code": code}, {"action": "resend"}):
                response = browser.post("/signup/verify/", data)
                assert response.status_code == 302 and response["Location"] == "/signup/"
        assert SignupRequest.objects.get().verify_attempts == 0 and len(mailoutbox) == 1
        # The service refuses another browser's token too, without counting an attempt.
        signup = SignupRequest.objects.get()
        for call in (lambda: signup_verify(request_id=signup.pk, code=code, browser="another-browser"),
                     lambda: signup_resend_code(request_id=signup.pk, browser="another-browser")):
            with pytest.raises(ApplicationError, match="no signup to verify in this browser"):
                call()
        assert SignupRequest.objects.get().verify_attempts == 0 and not Tenant.objects.exists()
        assert owner.post("/signup/verify/", {"code": code})["Location"] == "/tenant/"

    def test_after_provisioning_no_code_signs_anyone_in(self, plans, mailoutbox, monkeypatch):
        browser = Client()
        code = _sign_up(browser, plans, mailoutbox)
        _break_provisioning(monkeypatch)
        assert browser.post("/signup/verify/", {"code": code}).status_code == 503
        monkeypatch.undo()
        assert signup_provision(request_id=SignupRequest.objects.get().pk).status == SignupStatus.PROVISIONED

        # The right code again, in the browser that started the signup: the account is ready, the password
        # signs in, the code does not.
        response = browser.post("/signup/verify/", {"code": code})
        assert response.status_code == 302 and response["Location"] == "/account/login/"
        assert not _signed_in(browser)
        wrong = _wrong(code)
        pages = [browser.post("/signup/verify/", {"code": wrong}) for _ in range(50)]
        assert {page.status_code for page in pages} == {200} and not _signed_in(browser)
        assert SignupRequest.objects.get().verify_attempts == 5
        assert "Too many wrong codes." in pages[-1].content.decode()
        assert "Too many wrong codes." in browser.post("/signup/verify/", {"code": code}).content.decode()
        assert not _signed_in(browser) and browser.get("/tenant/").status_code == 302

    def test_an_expired_code_is_refused_in_every_state(self, plans, mailoutbox, monkeypatch):
        browser = Client()
        code = _sign_up(browser, plans, mailoutbox)
        SignupRequest.objects.update(code_expires_at=timezone.now() - timedelta(seconds=1))
        assert "The code has expired" in browser.post("/signup/verify/", {"code": code}).content.decode()

        browser.post("/signup/verify/", {"action": "resend"})
        code = _code(mailoutbox)
        _break_provisioning(monkeypatch)
        assert browser.post("/signup/verify/", {"code": code}).status_code == 503
        monkeypatch.undo()
        SignupRequest.objects.update(code_expires_at=timezone.now() - timedelta(seconds=1))
        # A failed signup past its code's expiry: the code no longer retries it (staff still can).
        assert "The code has expired." in browser.post("/signup/verify/", {"code": code}).content.decode()
        assert SignupRequest.objects.get().status == SignupStatus.FAILED and not Tenant.objects.exists()

        # A pending signup closed by the expiry task.
        other = Client()
        code = _sign_up(other, plans, mailoutbox, email="bob@bob.example", slug="bob")
        SignupRequest.objects.filter(email="bob@bob.example").update(code_expires_at=timezone.now() - timedelta(seconds=1))
        assert expire_signups() == 1
        assert "This signup has expired" in other.post("/signup/verify/", {"code": code}).content.decode()
        assert not _signed_in(other) and not Tenant.objects.exists()


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
                                     plan_version=versions["pro"], password=PASSWORD, browser="ann-browser")

    threads = [threading.Thread(target=run, args=(submit,)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and SignupRequest.objects.count() == 1
    signup = SignupRequest.objects.get()
    # The second submit may have replaced the code (both emails sent): use the one that is current.
    codes = [re.search(r"\b(\d{6})\b", m.body).group(1) for m in mailoutbox]
    code = next(c for c in codes if signup_services._code_matches(signup, c))

    results.clear()
    threads = [threading.Thread(target=run, args=(lambda: signup_verify(request_id=signup.pk, code=code, browser="ann-browser"),))
               for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert {r.status for r in results} == {SignupStatus.PROVISIONED}
    assert Tenant.objects.count() == 1 and TenantUser.objects.count() == 1
