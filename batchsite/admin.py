"""Admin pieces every app's admin uses: UUID search by index, read-only pages for rows only
services write, and the glue between an admin form and a service."""

import uuid

from django.core.exceptions import ValidationError
from django.db.models import Q

from batchsite.errors import ApplicationError


class UuidSearch:
    """A search term that is a UUID finds the rows with that id in `uuid_search_fields`, by
    index; any other term searches `search_fields` as usual (the admin's own `=uuid` would
    compare the UUID cast to text, which no index serves)."""

    uuid_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        try:
            wanted = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(
            Q.create([(field, wanted) for field in self.uuid_search_fields], connector=Q.OR)
        ), False


class ReadOnly:
    """Shown to staff, written only by the service's own paths."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def adopt(target, source) -> None:
    """Makes the admin's unsaved instance the row a service saved, so the admin's
    redirects and log entries point at it."""
    for field in type(source)._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def refusal(error: ApplicationError) -> ValidationError:
    """A service's refusal as the admin form's error."""
    return ValidationError(error.description, code=error.subcode)
