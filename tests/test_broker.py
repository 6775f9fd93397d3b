"""The embedded broker (`filesystem://`, batchsite/broker.py) under several producer and consumer
processes at once, as `make run` has them (the web processes, the worker, its beat): every message
is delivered whole, exactly once, and no consumer fails; processes that bind queues at once all
keep their bindings.

kombu's own filesystem transport fails this within a second or two: a consumer claims a message
file its producer has created and not yet written, and reads no JSON at all."""

import multiprocessing
import queue
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

# The transport under test is the same in every pass of the suite: it runs in the embedded one.
pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("filesystem://"),
    reason="the embedded broker is tested in the embedded pass",
)

PRODUCERS = 3
CONSUMERS = 2
LINES = [{"line": number} for number in range(5000)]


def broker_options(folder: Path) -> dict:
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
        # Consumers look as often as they can, so that they meet the producers mid-write.
        "polling_interval": 0,
    }


def produce(folder: Path, producer: int, messages: int) -> None:
    with Connection("filesystem://", transport_options=broker_options(folder)) as connection:
        # Each producer declares the queue, as every process does on its first publish: the
        # declarations race on the exchange table too.
        outbox = connection.SimpleQueue("race")
        for number in range(messages):
            # A body that takes a while to serialize: kombu's transport serializes it between
            # creating the message file and writing it, when a consumer may already take it.
            outbox.put({"producer": producer, "number": number, "lines": LINES})
        outbox.close()


def consume(folder: Path, producing_done, received, failures) -> None:
    try:
        with Connection("filesystem://", transport_options=broker_options(folder)) as connection:
            inbox = connection.SimpleQueue("race")
            while True:
                try:
                    message = inbox.get(block=True, timeout=0.5)
                except queue.Empty:
                    if producing_done.is_set():
                        break
                    continue
                received.put((message.payload["producer"], message.payload["number"]))
                message.ack()
            inbox.close()
    except Exception as error:  # noqa: BLE001 - the test reports whatever ended a consumer
        failures.put(repr(error))


def run_race(folder: Path, messages_each: int) -> tuple[list, list]:
    (folder / "queue").mkdir(parents=True)
    processes = multiprocessing.get_context("fork")
    producing_done, received, failures = processes.Event(), processes.Queue(), processes.Queue()
    consumers = [
        processes.Process(target=consume, args=(folder, producing_done, received, failures))
        for _ in range(CONSUMERS)
    ]
    producers = [
        processes.Process(target=produce, args=(folder, producer, messages_each))
        for producer in range(PRODUCERS)
    ]
    for process in consumers + producers:
        process.start()
    for producer in producers:
        producer.join(timeout=300)
        assert producer.exitcode == 0, f"a producer ended with {producer.exitcode}"
    producing_done.set()
    deliveries, errors = [], []
    # Drained while the consumers run: a child blocks on exit until its queue is read.
    while any(consumer.is_alive() for consumer in consumers) or not received.empty():
        try:
            deliveries.append(received.get(timeout=0.2))
        except queue.Empty:
            continue
    for consumer in consumers:
        consumer.join(timeout=30)
    while not failures.empty():
        errors.append(failures.get())
    return deliveries, errors


def check_every_message_once(folder: Path, messages_each: int):
    deliveries, errors = run_race(folder, messages_each)
    assert errors == []
    expected = {(producer, number) for producer in range(PRODUCERS) for number in range(messages_each)}
    assert len(deliveries) == len(expected) and set(deliveries) == expected
    assert list((folder / "queue").glob("*.msg")) == []


def test_concurrent_producers_and_consumers_get_every_message_once(tmp_path):
    check_every_message_once(tmp_path, messages_each=100)


@pytest.mark.soak
def test_concurrent_producers_and_consumers_soak(tmp_path):
    check_every_message_once(tmp_path, messages_each=20_000)


def bind_at_once(folder: Path, queue_name: str, start) -> None:
    with Connection("filesystem://", transport_options=broker_options(folder)) as connection:
        start.wait()
        Queue(queue_name, Exchange("broadcast", type="fanout"))(connection.default_channel).declare()


def test_processes_binding_at_once_all_keep_their_bindings(tmp_path):
    """As workers starting together do with their control queues (`celery.pidbox`): a lost
    binding is a worker that no longer hears a command, a table read half written a publish
    that fails or goes nowhere."""
    processes = multiprocessing.get_context("fork")
    names = [f"worker{number}" for number in range(8)]
    # Each round is a fresh broker: the race is on creating the table.
    for round_number in range(10):
        folder = tmp_path / f"round{round_number}"
        (folder / "queue").mkdir(parents=True)
        start = processes.Event()
        binders = [processes.Process(target=bind_at_once, args=(folder, name, start)) for name in names]
        for binder in binders:
            binder.start()
        start.set()
        for binder in binders:
            binder.join(timeout=60)
        assert [binder.exitcode for binder in binders] == [0] * len(names)
        with Connection("filesystem://", transport_options=broker_options(folder)) as connection:
            table = connection.default_channel.get_table("broadcast")
        assert sorted(binding.queue for binding in table) == names
