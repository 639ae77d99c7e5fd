"""Make an API key for a tenant and print it (once: only its hash is kept); the key alone is the last line."""

from django.core.management.base import BaseCommand, CommandError

from portal.kernel import ApplicationError
from tenants.models import ApiKeyScope, Tenant
from tenants.services.api_keys import api_key_create


class Command(BaseCommand):
    help = ("Make an API key for a tenant (default scopes: all) and print it; the key alone is the last line "
            "(e.g. KEY=$(manage.py api_key_create --tenant acme --name export | tail -n 1)).")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                            help=f"A scope of the key ({', '.join(ApiKeyScope.values)}); repeat for several. "
                                 "Default: all.")

    def handle(self, *args, tenant, name, scopes=None, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant {tenant!r}.")
        try:
            api_key, raw_key = api_key_create(tenant=found, name=name, scopes=scopes)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"API key “{api_key.name}” of {found.slug} (scopes: {', '.join(api_key.scopes)}); "
                          "it is not shown again:")
        self.stdout.write(raw_key)
