"""Print the configuration the active pipeline environment's deployed outputs give the portal."""

from django.core.management.base import BaseCommand, CommandError

from portal.deployments.models import PipelineEnvironment
from portal.kernel import pipeline_setting


class Command(BaseCommand):
    help = ("Print the active pipeline environment's settings as NAME=value lines, or the values of the given "
            "settings one per line (e.g. METERED_API_BASE_URL COGNITO_CLIENT_ID), as the portal resolves them.")

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="settings to print (values only)")

    def handle(self, *args, names, **options):
        if names:
            for name in names:
                try:
                    self.stdout.write(str(pipeline_setting(name)))
                except AttributeError:
                    raise CommandError(f"No such setting: {name}") from None
            return
        environment = PipelineEnvironment.objects.filter(is_active=True).first()
        if environment is None:
            raise CommandError("No active pipeline environment: deploy one from the admin first.")
        for name, value in sorted(environment.config.items()):
            self.stdout.write(f"{name}={value}")
