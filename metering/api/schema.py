"""OpenAPI details drf-spectacular cannot infer: the ID-token and API-key schemes, and only /api/v1/ in the schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class IdTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.identity.authentication.TokenAuthentication"
    name = "idToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A tenant user's ID token (Cognito, or the portal's local identity): "
                           "`Authorization: Bearer <token>` or the raw token as the AWS sample sends it.",
        }


def only_api_v1(endpoints, **kwargs):
    """Preprocessing hook: the schema describes the REST API, not the metered demo API or other pages."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.identity.api_keys.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "mk_<prefix>_<secret>",
            "description": "A tenant's API key (made in the tenant area, the admin or `manage.py api_key_create`): "
                           "`Authorization: Bearer mk_…`. It acts for its tenant and needs the endpoint's scope "
                           "(`usage:read` for usage, invoices, the projected bill, the plan and metrics; "
                           "`events:write` to send events).",
        }
