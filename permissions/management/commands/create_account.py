import json

from django.core.management.base import BaseCommand

from permissions.services import account_bootstrap, staff_grant, user_password_reset


class Command(BaseCommand):
    help = "Creates an account with a full-access role, its first user and that user's secret."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The account's name.")
        parser.add_argument("--user", default="admin", help="The first user's name.")
        parser.add_argument("--json", action="store_true", help='Print {"account", "user", "secret"}.')
        parser.add_argument(
            "--password",
            action="store_true",
            help="Also give the user a password for the pages (/ui/login), printed once; the user "
            "name for signing in is the user's id.",
        )
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
        elif options["password"]:
            ids["password"] = user_password_reset(account_user=created.account_user)
        if options["json"]:
            self.stdout.write(json.dumps(ids))
            return
        self.stdout.write(
            f"Account {ids['account']}, user {ids['user']}.\nSecret (shown only now): {ids['secret']}"
        )
        if "password" in ids:
            where = "/admin/ and /ui/login" if options["staff"] else "/ui/login"
            self.stdout.write(
                f"Sign-in at {where}: user {ids['user']}, password (shown only now): {ids['password']}"
            )
