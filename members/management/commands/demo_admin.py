from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

USERNAME = PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create the local demo's superuser (admin / admin) and print the login. SQLite demo databases only."

    def handle(self, *args, **options):
        if connection.vendor != "sqlite":
            raise CommandError(
                "The demo superuser is only for the local SQLite demo; use `manage.py createsuperuser` here."
            )
        User = get_user_model()
        if not User.objects.filter(username=USERNAME).exists():
            User.objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)
        self.stdout.write(self.style.SUCCESS(f"Admin login: {USERNAME} / {PASSWORD}  (local demo only)"))
