"""The identity interface: one set of operations on tenant users, implemented by the local and Cognito backends."""

from __future__ import annotations

import secrets
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from portal.kernel import ApplicationError


class IdentityError(ApplicationError):
    """The identity backend refused or failed an operation (message fit to show a provider's staff)."""


class InvalidCredentials(IdentityError):
    """A sign-in with a wrong password, or for a disabled or unknown user (deliberately indistinguishable)."""


@dataclass(frozen=True)
class IdentityUser:
    """A user as the identity backend sees it. `username` is the token's `cognito:username`."""

    username: str
    email: str
    tenant_id: str
    role: str
    enabled: bool = True
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifierConfig:
    """What token verification needs to know about a backend's issuer."""

    issuer: str
    client_id: str
    # Called with no argument, returns a JWKS document ({"keys": [...]}); the verifier caches it.
    fetch_jwks: object


def generate_temporary_password(length: int = 16) -> str:
    """A random password that satisfies the Cognito default policy (upper, lower, digit, symbol)."""
    symbols = "!@#$%^&*-_=+?"
    alphabet = string.ascii_letters + string.digits + symbols
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
            and any(c in symbols for c in candidate)
        ):
            return candidate


class IdentityBackend(ABC):
    """Operations on the identity store. Users are named by `username` (the token's cognito:username).

    Backends do not touch TenantUser rows: the services in tenants/services/identity.py keep the portal's
    mirror and the identity store in step, so both backends are driven by the same code.
    """

    name: str = ""

    @abstractmethod
    def create_user(self, *, tenant_id: str, email: str, role: str, password: str) -> IdentityUser:
        """Create an enabled user in the tenant's group with `custom:tenant_id` and `custom:role`, password set."""

    @abstractmethod
    def set_password(self, *, username: str, password: str) -> None:
        """Set (or reset) a user's password; refused with IdentityError when the policy refuses it."""

    @abstractmethod
    def disable_user(self, *, username: str) -> None:
        """The user can no longer sign in or get tokens (idempotent)."""

    @abstractmethod
    def enable_user(self, *, username: str) -> None:
        """Undo disable_user (idempotent)."""

    @abstractmethod
    def delete_user(self, *, username: str) -> None:
        """Remove the user from the store; deleting a user that is already gone is not an error."""

    @abstractmethod
    def get_user(self, *, username: str) -> IdentityUser | None:
        """The user, or None when the store has no such user."""

    @abstractmethod
    def list_users(self, *, tenant_id: str) -> list[IdentityUser]:
        """The tenant's users (members of its group), sorted by email."""

    @abstractmethod
    def authenticate(self, *, username: str, password: str) -> str:
        """Check a password and return a fresh ID token; InvalidCredentials when refused."""

    @abstractmethod
    def verifier_config(self) -> VerifierConfig:
        """Issuer, client id and JWKS source of the tokens this backend issues."""
