"""The embedded broker: kombu's filesystem transport, safe for several producers and consumers.

kombu's own transport creates a message file under its final name and only then writes it, and a
consumer takes any file it lists: one that lists the folder between the two reads an empty file,
and the JSONDecodeError ends the worker ("Unrecoverable error"). Its exchange tables are rewritten
in place the same way, so a publisher can read a table half written and drop its message.

Here every file appears whole or not at all:
- a message is written under a name in `.writing/` (beside the queue, never listed as a message)
  and renamed into the queue; a rename within one filesystem is atomic;
- a consumer claims a message by renaming it into `.claimed/` beside the queue, so of several
  consumers exactly one gets it (kombu moves it to the system's temporary folder, which may be
  another filesystem, where a move is a copy), then reads and deletes it;
- an exchange table is changed under a lock file and replaced by a rename, so readers need no lock
  and two processes binding at once both keep their binding.

Chosen over kombu's SQLAlchemy transport on an SQLite file (the other broker that needs no
server): with three producer and two consumer processes it moved 3,000 messages in 27 s where
this one takes 4-6 s, and it would add SQLAlchemy to the requirements.

`settings` registers this Transport as `filesystem://`. Acknowledgements stay kombu's: an
unacknowledged message is held by the consumer's process, so one killed with SIGKILL loses it;
the database is the queue of record and the sweep asks again
(docs/scaling-and-failure-model.md#failure-model).
"""

import fcntl
import os
import shutil
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

WRITING = ".writing"
CLAIMED = ".claimed"
TABLES_LOCK = ".lock"


def write_whole(folder: Path, name: str, data: bytes) -> None:
    """Puts `data` at folder/name so that no reader ever sees part of it."""
    writing = folder / WRITING
    writing.mkdir(exist_ok=True)
    draft = writing / f"{name}.{uuid.uuid4()}"
    try:
        draft.write_bytes(data)
        os.replace(draft, folder / name)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # kombu's name: the milliseconds first, so a consumer takes older messages first.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_whole(Path(self.data_folder_out), name, dumps(payload).encode())
        except OSError as error:
            raise ChannelError(f"Cannot add a message to {self.data_folder_out!r}") from error

    def _get(self, queue):
        folder = Path(self.data_folder_in)
        claimed = folder / CLAIMED
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != f"{queue}.msg":
                continue
            try:
                claimed.mkdir(exist_ok=True)
                os.rename(folder / name, claimed / name)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            except OSError as error:
                raise ChannelError(f"Cannot claim {name!r} in {folder}") from error
            try:
                payload = (claimed / name).read_bytes()
                if self.store_processed:
                    shutil.move(claimed / name, Path(self.processed_folder) / name)
                else:
                    (claimed / name).unlink()
            except OSError as error:
                raise ChannelError(f"Cannot read {name!r} from the queue") from error
            return loads(payload)
        raise Empty()

    def get_table(self, exchange):
        try:
            table = loads(self._exchange_file(exchange).read_bytes())
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ChannelError(f"Cannot read the table of exchange {exchange!r}") from error
        return [filesystem.exchange_queue_t(*binding) for binding in table]

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")

        def bind(table):
            return table if binding in table else [binding, *table]

        self._change_table(exchange, bind)

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        virtual.Channel._delete(self, queue)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._change_table(exchange, lambda table: [kept for kept in table if kept != binding])

    def _change_table(self, exchange, change):
        file = self._exchange_file(exchange)
        try:
            self.control_folder.mkdir(parents=True, exist_ok=True)
            with (self.control_folder / TABLES_LOCK).open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                table = self.get_table(exchange)
                changed = change(table)
                if changed != table:
                    write_whole(self.control_folder, file.name, dumps(changed).encode())
        except OSError as error:
            raise ChannelError(f"Cannot change the table of exchange {exchange!r}") from error


class Transport(filesystem.Transport):
    Channel = Channel
    # kombu's filesystem transport keeps its state in a class attribute; this one keeps its own.
    global_state = virtual.BrokerState()
