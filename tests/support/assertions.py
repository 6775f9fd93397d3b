"""Assertions shared by the API tests."""


def assert_error(response, status_code: int, subcode: str | None = None) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"subcode", "description", "trace"}, body
    assert body["description"] and body["trace"]
    if subcode is not None:
        assert body["subcode"] == subcode, body
    return body
