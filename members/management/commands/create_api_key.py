from django.core.management.base import BaseCommand, CommandError

from members.models import ApiKey, ApiScope


class Command(BaseCommand):
    help = "Create a storefront API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'web storefront'.")
        parser.add_argument(
            "--scopes",
            nargs="+",
            choices=ApiScope.values,
            default=ApiScope.values,
            help="What the key may do (default: every scope): " + ", ".join(ApiScope.values),
        )

    def handle(self, *args, name, scopes, **options):
        if not name.strip():
            raise CommandError("The key needs a name.")
        api_key, key = ApiKey.objects.create_key(name=name[:50], scopes=sorted(set(scopes)))
        self.stdout.write(f"API key '{api_key.name}' with scopes: {', '.join(api_key.scopes)}")
        self.stdout.write("Store it now; it cannot be shown again:")
        self.stdout.write(key)
