import pytest


@pytest.fixture
def make_twin(caller):
    """Creates a twin through the API as `caller` (or another caller) and returns its uuid."""

    def make(owner=None, **body) -> str:
        response = (owner or caller).client.post("/twins", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()["creation_certificate"]["uuid"]

    return make
