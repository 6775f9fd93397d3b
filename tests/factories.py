import factory

from permissions import services
from permissions.models import Account


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"account {n}")


class RoleFactory(factory.Factory):
    """Roles are made by the service, so their guardian permissions are materialised."""

    class Meta:
        model = dict

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"role {n}")
    statement = None
    rules = None

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.role_create(**kwargs)


class AccountUserFactory(factory.Factory):
    class Meta:
        model = dict

    account = factory.SubFactory(AccountFactory)
    role = factory.LazyAttribute(lambda o: RoleFactory(account=o.account))
    name = factory.Sequence(lambda n: f"user {n}")

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.user_create(**kwargs)
