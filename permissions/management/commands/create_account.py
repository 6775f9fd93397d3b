import json

from django.core.management.base import BaseCommand

from permissions.services import account_bootstrap


class Command(BaseCommand):
    help = "Creates an account with a full-access role, its first user and that user's secret."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The account's name.")
        parser.add_argument("--user", default="admin", help="The first user's name.")
        parser.add_argument("--json", action="store_true", help='Print {"account", "user", "secret"}.')

    def handle(self, *args, **options):
        created = account_bootstrap(name=options["name"], user_name=options["user"])
        ids = {
            "account": str(created.account.uuid),
            "user": str(created.account_user.uuid),
            "secret": created.secret,
        }
        if options["json"]:
            self.stdout.write(json.dumps(ids))
        else:
            self.stdout.write(
                f"Account {ids['account']}, user {ids['user']}.\nSecret (shown only now): {ids['secret']}"
            )
