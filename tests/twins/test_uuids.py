"""New twins' ids (twins.services.uuids_v4): what uuid.uuid4() makes, made faster."""

import pickle
import uuid

from twins.services import uuids_v4


def test_each_is_a_random_version_4_uuid_like_uuid4s():
    made = uuids_v4(5000)
    assert len(set(made)) == 5000
    for value in made:
        assert isinstance(value, uuid.UUID)
        assert (value.version, value.variant) == (4, uuid.RFC_4122)
        assert uuid.UUID(str(value)) == value
        assert uuid.UUID(bytes=value.bytes, version=4) == value
        assert value.is_safe == uuid.uuid4().is_safe
        assert pickle.loads(pickle.dumps(value)) == value
    assert {str(value)[14] for value in made} == {"4"}
    assert {str(value)[19] for value in made} == set("89ab")
    # Random bits everywhere else: every hex digit of the other positions occurs.
    assert {str(value)[0] for value in made} == set("0123456789abcdef")


def test_none_asked_none_made():
    assert uuids_v4(0) == []
