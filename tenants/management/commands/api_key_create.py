"""Make an API key for a tenant, or a provider key, and print it (once: only its hash is kept); the key alone is
the last line."""

from django.core.management.base import BaseCommand, CommandError

from portal.kernel import ApplicationError
from tenants.models import ApiKeyScope, Tenant
from tenants.services.api_keys import api_key_create


class Command(BaseCommand):
    help = ("Make an API key for a tenant (default scopes: all), or with --provider a provider key that sends "
            "events for any tenant, and print it; the key alone is the last line "
            "(e.g. KEY=$(manage.py api_key_create --tenant acme --name export | tail -n 1)).")

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--tenant", help="The tenant's slug.")
        who.add_argument("--provider", action="store_true",
                         help="A provider key: no tenant, scope events:write only; each event names its tenant.")
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                            help=f"A scope of the key ({', '.join(ApiKeyScope.values)}); repeat for several. "
                                 "Default: all.")

    def handle(self, *args, tenant=None, provider=False, name, scopes=None, **options):
        found = None
        if not provider:
            found = Tenant.objects.filter(slug=tenant).first()
            if found is None:
                raise CommandError(f"No tenant {tenant!r}.")
        try:
            api_key, raw_key = api_key_create(tenant=found, name=name, scopes=scopes)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        owner = found.slug if found is not None else "the provider (events for any tenant)"
        self.stdout.write(f"API key “{api_key.name}” of {owner} (scopes: {', '.join(api_key.scopes)}); "
                          "it is not shown again:")
        self.stdout.write(raw_key)
