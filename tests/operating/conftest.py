import pytest

from operating.services import _Pending


@pytest.fixture(autouse=True)
def no_pending_counts():
    """Counts other tests left in this process's memory stay out of these tests' numbers."""
    with _Pending.lock:
        _Pending.api_calls.clear()
        _Pending.refusals.clear()
    yield
