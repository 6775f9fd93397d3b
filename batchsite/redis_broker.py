"""The Redis broker: kombu's Redis transport, with workers that outlive a Redis restart.

On a lost broker connection Celery's consumer first `collect()`s the connection and then
`close()`s it. When the loss comes while the consumer's channel waits in BRPOP, closing the
channel inside `collect()` fails on the dead socket before the channel counts as closed, and
`collect()` then detaches the transport from its connection (`transport.client = None`). The
`close()` that follows closes that channel again; it restores its unacknowledged messages through
a new connection pool whose parameters come from `transport.client.hostname`. The AttributeError
is not a connection error, so Celery does not ignore it and the worker exits: "Restoring 1
unacknowledged message(s)", then "Unrecoverable error: AttributeError(... 'hostname')".
Upstream: celery/kombu#970 (the same restore through a detached transport, at shutdown) and
celery/kombu#582; kombu 5.7.0 with Celery 5.7.0, the newest releases, still do it.

Here a channel whose transport is detached raises redis' ConnectionError instead: what closing a
channel expects from a broker it cannot reach. It is ignored and the worker reconnects. That
channel restores nothing; Redis redelivers the unacknowledged messages after the visibility
timeout if it still has them (a Redis restarted empty has none), and the sweeps ask again for the
work in the database (docs/scaling-and-failure-model.md#failure-model).

`settings` makes this Transport the one for `redis://` and `rediss://` in every process.
"""

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel
