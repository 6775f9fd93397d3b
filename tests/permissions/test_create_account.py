import json
from io import StringIO

from django.core.management import call_command
from rest_framework.test import APIClient

from permissions.actions import ACTIONS
from permissions.models import AccountUser


def create_account(*args) -> str:
    out = StringIO()
    call_command("create_account", *args, stdout=out)
    return out.getvalue()


def test_json_output_names_a_secret_that_works_on_whoami(db):
    printed = json.loads(create_account("Acme", "--json"))
    assert set(printed) == {"account", "user", "secret"}

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=printed["secret"])
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.json()["account"] == printed["account"]
    assert response.json()["user"] == printed["user"]


def test_the_first_users_role_has_full_access(db):
    printed = json.loads(create_account("Acme", "--json", "--user", "founder"))
    account_user = AccountUser.objects.select_related("role", "account", "user").get(uuid=printed["user"])
    assert account_user.name == "founder"
    assert account_user.account.name == "Acme"
    assert account_user.role.statement is None
    assert all(account_user.user.has_perm(action, account_user.account) for action in ACTIONS)


def test_plain_output_ends_with_a_working_secret(db):
    printed = create_account("Acme")
    account_user = AccountUser.objects.get()
    assert str(account_user.uuid) in printed

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=printed.split()[-1])
    assert client.get("/whoami").json()["user"] == str(account_user.uuid)
