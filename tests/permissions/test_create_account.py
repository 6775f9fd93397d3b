import json
from io import StringIO

from django.core.management import call_command
from django.test import Client
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


def test_staff_option_prints_a_password_that_signs_in_to_the_admin(db):
    printed = json.loads(create_account("Operators", "--json", "--staff"))
    assert set(printed) == {"account", "user", "secret", "password"}

    client = Client()
    assert client.get("/admin/").status_code == 302
    assert client.login(username=printed["user"], password=printed["password"])
    admin_index = client.get("/admin/")
    assert admin_index.status_code == 200
    assert b"Batches" in admin_index.content


def test_without_staff_the_user_has_no_admin(db):
    printed = json.loads(create_account("Acme", "--json"))
    account_user = AccountUser.objects.select_related("user").get(uuid=printed["user"])
    assert not account_user.user.is_staff
    assert not account_user.user.has_usable_password()
