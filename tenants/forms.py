"""Forms of the signup pages, the tenant area and the admin: input validation only, the work is in services."""

import secrets

from django import forms
from django.contrib.auth.password_validation import get_default_password_validators, validate_password
from django.core.exceptions import ValidationError
from django.utils.text import slugify

from metering.pricing.documents import DocumentError, json_loads_bounded, loads_document
from tenants.identity.passwords import CognitoPasswordPolicyValidator
from tenants.models import ApiKeyScope, PlanVersion, time_zone_names
from tenants.models.api_keys import API_KEY_NAME_MAX_LENGTH
from tenants.models.commercial import slug_validator

# Bounds of the fields, checked on the form so that the database never sees a longer value: an email
# column is 254 characters (Django's EmailField form field alone would take 320), and Cognito takes
# passwords up to 256 characters.
EMAIL_MAX_LENGTH = 254
PASSWORD_MAX_LENGTH = 256


def _check_password(password: str) -> None:
    # Django's own checks (common, numeric, ...) and the pool's policy, so the pool never refuses it later.
    validate_password(password, password_validators=[*get_default_password_validators(), CognitoPasswordPolicyValidator()])


class PlanChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version):
        trial = f", {version.trial_days}-day trial" if version.trial_days else ""
        return f"{version.name} ({version.currency} {version.base_fee:.2f} / {version.interval}{trial})"


class SignupForm(forms.Form):
    company = forms.CharField(max_length=200, label="Company name")
    slug = forms.CharField(
        max_length=63, required=False, label="Company id",
        help_text="Lowercase letters, digits and hyphens; it names your tenant in usage data. "
                  "Leave empty to derive it from the company name.",
    )
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH)
    password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=PASSWORD_MAX_LENGTH,
                               help_text=CognitoPasswordPolicyValidator().get_help_text())
    plan = PlanChoiceField(queryset=PlanVersion.objects.none(), empty_label=None)
    time_zone = forms.ChoiceField(
        required=False, label="Time zone",
        help_text="Your billing periods start at midnight on the 1st of the month here, and your invoices show "
                  "its times. Default: UTC.",
    )
    coupon = forms.CharField(max_length=40, required=False, label="Coupon code",
                             help_text="If you have one (e.g. LAUNCH10).")

    def __init__(self, *args, plan_versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = PlanVersion.objects.filter(pk__in=[v.pk for v in plan_versions]).select_related("plan")
        self.fields["time_zone"].choices = [("", "UTC (default)"), *((name, name) for name in sorted(time_zone_names()))]

    def clean_time_zone(self):
        return self.cleaned_data.get("time_zone") or "UTC"

    def clean_slug(self):
        slug = self.cleaned_data.get("slug", "").strip().lower()
        if not slug:
            slug = slugify(self.data.get("company", ""))[:63].strip("-")
        slug_validator(slug)
        return slug

    def clean_coupon(self):
        return self.cleaned_data.get("coupon", "").strip().upper()

    def clean_password(self):
        password = self.cleaned_data["password"]
        _check_password(password)
        return password


class VerifyForm(forms.Form):
    code = forms.CharField(max_length=6, min_length=6, label="Verification code",
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH)


class ApiKeyForm(forms.Form):
    """A new API key: what it is for, and what it may do (both scopes unless unticked)."""

    name = forms.CharField(max_length=API_KEY_NAME_MAX_LENGTH, help_text="What the key is for, e.g. “billing export”.")
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=ApiKeyScope.values)
    # A fresh value per rendered form: the same form sent twice (a reload of the answer) makes one key only.
    once = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["once"] = secrets.token_urlsafe(16)


class TokenForm(forms.Form):
    """Cognito issues tokens only against the user's password, which the portal does not keep."""

    password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=PASSWORD_MAX_LENGTH)


class ChangePasswordForm(forms.Form):
    current_password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=PASSWORD_MAX_LENGTH)
    new_password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=PASSWORD_MAX_LENGTH,
                                   help_text=CognitoPasswordPolicyValidator().get_help_text())
    confirm_password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=PASSWORD_MAX_LENGTH)

    def clean_new_password(self):
        password = self.cleaned_data["new_password"]
        _check_password(password)
        return password

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("new_password") and cleaned.get("new_password") != cleaned.get("confirm_password"):
            self.add_error("confirm_password", "The two passwords differ.")
        return cleaned


def loads_json_object(text: str, not_object: str) -> dict:
    """A JSON object typed into a form (a plan document, a custom rule's params), numbers with a fraction read
    exactly (loads_document); ValidationError for text that is not JSON, or `not_object` for other JSON."""
    try:
        value = loads_document(text)
    except DocumentError as exc:
        raise ValidationError(f"Not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationError(not_object)
    return value


class JSONFormField(forms.JSONField):
    """A model's JSONField in a form (the admin): JSON nested too deep, or with a number of thousands of
    digits (which Python refuses to convert), is a form error like any invalid JSON."""

    def to_python(self, value):
        if isinstance(value, str) and not self.disabled and value not in self.empty_values:
            try:
                json_loads_bounded(value, cls=self.decoder)
            except ValueError as exc:
                raise ValidationError(f"Enter a valid JSON: {exc}.", code="invalid") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except (RecursionError, ValueError):  # redisplaying the refused input must not crash either
            return forms.fields.InvalidJSONInput(data)


class WebhookEndpointForm(forms.Form):
    """A tenant's webhook endpoint: where to send, and which events (the provider-only types are not offered)."""

    url = forms.URLField(max_length=2000, label="URL", assume_scheme="https",
                         help_text="Where the events are POSTed (https://…).")
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Events")

    def __init__(self, *args, **kwargs):
        from tenants.webhooks.registry import event_type_names

        super().__init__(*args, **kwargs)
        self.fields["event_types"].choices = [(name, name) for name in event_type_names(provider=False)]
