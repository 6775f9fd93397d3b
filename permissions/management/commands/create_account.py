import json

from django.core.management.base import BaseCommand

from permissions.services import account_bootstrap, staff_grant


class Command(BaseCommand):
    help = "Creates an account with a full-access role, its first user and that user's secret."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The account's name.")
        parser.add_argument("--user", default="admin", help="The first user's name.")
        parser.add_argument("--json", action="store_true", help='Print {"account", "user", "secret"}.')
        parser.add_argument(
            "--staff",
            action="store_true",
            help="Also make the user staff (a superuser of /admin/) with a password, printed once; "
            "the user name for signing in is the user's id.",
        )

    def handle(self, *args, **options):
        created = account_bootstrap(name=options["name"], user_name=options["user"])
        ids = {
            "account": str(created.account.uuid),
            "user": str(created.account_user.uuid),
            "secret": created.secret,
        }
        if options["staff"]:
            ids["password"] = staff_grant(account_user=created.account_user)
        if options["json"]:
            self.stdout.write(json.dumps(ids))
            return
        self.stdout.write(
            f"Account {ids['account']}, user {ids['user']}.\nSecret (shown only now): {ids['secret']}"
        )
        if options["staff"]:
            self.stdout.write(
                f"Staff sign-in at /admin/ and /ui/login: user {ids['user']}, "
                f"password (shown only now): {ids['password']}"
            )
