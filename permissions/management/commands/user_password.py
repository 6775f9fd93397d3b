import json
import uuid

from django.core.management.base import BaseCommand, CommandError

from permissions.models import AccountUser
from permissions.services import user_password_reset


class Command(BaseCommand):
    help = "Gives an existing user a new password for the pages (/ui/login), printed once."

    def add_arguments(self, parser):
        parser.add_argument("user", help="The user's id (a UUID, as GET /whoami answers it).")
        parser.add_argument("--json", action="store_true", help='Print {"user", "password"}.')

    def handle(self, *args, **options):
        try:
            user_id = uuid.UUID(options["user"])
        except ValueError:
            raise CommandError(f"{options['user']!r} is not a user id (a UUID).") from None
        account_user = AccountUser.objects.select_related("user").filter(uuid=user_id).first()
        if account_user is None:
            raise CommandError(f"No user with the id {options['user']}.")
        password = user_password_reset(account_user=account_user)
        if options["json"]:
            self.stdout.write(json.dumps({"user": str(account_user.uuid), "password": password}))
            return
        self.stdout.write(
            f"Sign-in at /ui/login: user {account_user.uuid}, password (shown only now): {password}"
        )
