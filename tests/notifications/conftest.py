import pytest

from tests.support.webhook_receivers import Receiver, StallingReceiver


@pytest.fixture
def receivers():
    """Makes receivers on 127.0.0.1 and shuts them down after the test."""
    made = []

    def make(**options) -> Receiver:
        receiver = Receiver(**options)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def private_hosts(settings):
    """Callbacks on 127.0.0.1 allowed, and retries a fraction of a second apart."""
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    settings.WEBHOOK_RETRY_FIRST_DELAY_SECONDS = 0.1
    settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS = 0.3
    return settings


@pytest.fixture
def stalling_receivers():
    """Makes trickling or black-hole receivers and closes them after the test."""
    made = []

    def make(**options) -> StallingReceiver:
        receiver = StallingReceiver(**options)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()
