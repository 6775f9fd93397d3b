"""The tenant admin: roles edited as a checklist and saved by the service (so guardian holds
the statement), the escalation rule for staff, users, a secret shown once, and an account's
guardian permissions on its page."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from permissions.models import Account, AccountUser, Role
from permissions.services import user_create

pytestmark = pytest.mark.django_db


def role_form(account, *, name="readers", effect="allow", actions=()) -> dict:
    return {"account": str(account.pk), "name": name, "effect": effect, "actions": list(actions), "rules": ""}


def test_a_role_saved_from_the_checklist_holds_its_actions_through_guardian(admin_client, caller):
    response = admin_client.post(
        reverse("admin:permissions_role_add"),
        role_form(caller.account, actions=["get_batch", "get_batches"]),
    )
    assert response.status_code == 302, response.content[:2000]
    role = Role.objects.get(account=caller.account, name="readers")
    assert role.statement == {"effect": "allow", "actions": ["get_batch", "get_batches"]}
    reader = user_create(account=caller.account, role=role, name="reader").user
    assert reader.has_perm("get_batches", caller.account)
    assert not reader.has_perm("create_batch", caller.account)

    response = admin_client.post(
        reverse("admin:permissions_role_change", args=[role.pk]),
        {"name": "no deleting", "effect": "deny", "actions": ["delete_batch"], "rules": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    reader = AccountUser.objects.get(pk=reader.account_user.pk).user
    assert reader.has_perm("create_batch", caller.account)
    assert not reader.has_perm("delete_batch", caller.account)
    page = admin_client.get(reverse("admin:permissions_role_change", args=[role.pk]))
    form = page.context["adminform"].form
    assert (form["effect"].value(), form["actions"].value()) == ("deny", ["delete_batch"])


def test_staff_cannot_grant_more_than_their_own_role(client, make_caller):
    limited = make_caller(statement={"effect": "allow", "actions": ["get_batches", "create_user_role"]})
    staff = limited.user
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_role", "view_role"]))
    client.force_login(staff)

    response = client.post(
        reverse("admin:permissions_role_add"), role_form(limited.account, name="everything", effect="deny")
    )
    assert response.status_code == 200
    assert "The role would grant actions your own role does not have" in response.content.decode()
    assert not Role.objects.filter(name="everything").exists()

    response = client.post(
        reverse("admin:permissions_role_add"),
        role_form(limited.account, name="listing", actions=["get_batches"]),
    )
    assert response.status_code == 302
    assert Role.objects.filter(name="listing").exists()


def test_a_user_added_in_the_admin_gets_the_role_and_a_sign_in_link(admin_client, caller):
    response = admin_client.post(
        reverse("admin:permissions_accountuser_add"),
        {
            "account": str(caller.account.pk),
            "role": str(caller.role.pk),
            "name": "operator",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    operator = AccountUser.objects.get(name="operator")
    assert operator.user.has_perm("create_batch", caller.account)
    page = admin_client.get(
        reverse("admin:permissions_accountuser_change", args=[operator.pk])
    ).content.decode()
    assert str(operator.pk) in page
    assert reverse("admin:auth_user_password_change", args=[operator.user_id]) in page


def test_a_new_secret_is_shown_once_and_works(admin_client, caller):
    response = admin_client.post(
        reverse("admin:permissions_usersecret_add"),
        {"account_user": str(caller.account_user.pk), "validity_at_0": "", "validity_at_1": ""},
        follow=True,
    )
    shown = " ".join(str(message) for message in response.context["messages"])
    secret = re.search(r"is (\S{64}) — copy it now", shown)[1]

    api = APIClient()
    assert api.get("/whoami", headers={"Authorization": secret}).status_code == 200
    assert api.get("/whoami", headers={"Authorization": caller.secret}).status_code == 401
    again = admin_client.get(reverse("admin:permissions_usersecret_changelist")).content.decode()
    assert secret not in again


def test_an_account_page_shows_its_guardian_permissions(admin_client, make_caller):
    caller = make_caller(statement={"effect": "allow", "actions": ["get_batch", "who_am_i"]})
    page = admin_client.get(
        reverse("admin:permissions_account_change", args=[caller.account.pk])
    ).content.decode()
    assert "Object permissions (django-guardian)" in page
    assert f"role {caller.role.name}" in page
    assert "get_batch, who_am_i" in page


def test_an_account_added_in_the_admin_is_created_by_the_service(admin_client):
    response = admin_client.post(reverse("admin:permissions_account_add"), {"name": "Initech"})
    assert response.status_code == 302
    assert Account.objects.filter(name="Initech").exists()
