"""Password strength as a Cognito user pool checks it (its default policy), as a Django password validator."""

from django.core.exceptions import ValidationError

# The special characters Cognito accepts as "symbols" in its password policy.
COGNITO_SYMBOLS = set("^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ")


class CognitoPasswordPolicyValidator:
    """Minimum length 8 with a lowercase, an uppercase letter, a digit and a symbol (Cognito's default).

    Checked in the portal first so that signup shows every unmet rule on the form, rather than the pool
    refusing the password after the tenant was verified.
    """

    def __init__(self, min_length: int = 8, require_lowercase: bool = True, require_uppercase: bool = True,
                 require_digits: bool = True, require_symbols: bool = True):
        self.min_length = min_length
        self.rules = [
            (require_lowercase, lambda p: any(c.islower() for c in p), "a lowercase letter"),
            (require_uppercase, lambda p: any(c.isupper() for c in p), "an uppercase letter"),
            (require_digits, lambda p: any(c.isdigit() for c in p), "a digit"),
            (require_symbols, lambda p: any(c in COGNITO_SYMBOLS for c in p.strip()), "a symbol (such as ! @ # $ %)"),
        ]

    def validate(self, password, user=None):
        missing = []
        if len(password) < self.min_length:
            missing.append(f"at least {self.min_length} characters")
        missing += [label for enabled, check, label in self.rules if enabled and not check(password)]
        if password != password.strip():
            raise ValidationError("The password cannot start or end with a space.", code="password_policy")
        if missing:
            raise ValidationError("The password needs " + ", ".join(missing) + ".", code="password_policy")

    def get_help_text(self):
        return (
            f"At least {self.min_length} characters, with a lowercase and an uppercase letter, a digit and a symbol."
        )
