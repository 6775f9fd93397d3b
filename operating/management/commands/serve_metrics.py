"""For a host that runs workers but no web server: serves the samples its processes wrote to
PROMETHEUS_MULTIPROC_DIR on a port of its own, for Prometheus to scrape. The installation's
gauges (batches_active, batches_stalled, workers_alive, broker_queue_depth, …) come from the web
hosts' /metrics only.

It binds 127.0.0.1 unless told otherwise, and refuses whom /metrics refuses
(operating.metrics.scrape_refusal): to serve another host, set METRICS_TOKEN."""

import json
import socket
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.core.management.base import BaseCommand

from batchsite.errors import error_body


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Prometheus scrapes every few seconds: no line per scrape."""


def refused(start_response, status_code: int, subcode: str, description: str, headers=()):
    body = error_body(status_code=status_code, subcode=subcode, description=description)
    reason = {401: "Unauthorized", 403: "Forbidden", 405: "Method Not Allowed"}[status_code]
    start_response(f"{status_code} {reason}", [("Content-Type", "application/json"), *headers])
    return [json.dumps(body).encode()]


def metrics_app(registry):
    from prometheus_client import make_wsgi_app

    from operating.metrics import scrape_refusal

    exposition = make_wsgi_app(registry)

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD"):
            description = f'Method "{method}" not allowed.'
            return refused(start_response, 405, "method_not_allowed", description, [("Allow", "GET, HEAD")])
        refusal = scrape_refusal(environ)
        if refusal is not None:
            challenge = [("WWW-Authenticate", "Bearer")] if refusal.status_code == 401 else []
            return refused(
                start_response, refusal.status_code, refusal.subcode, refusal.description, challenge
            )
        return exposition(environ, start_response)

    return app


class Command(BaseCommand):
    help = "Serve this host's worker metrics over HTTP (Prometheus text format)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9101)
        parser.add_argument(
            "--bind", default="127.0.0.1", help="Another address (0.0.0.0) needs METRICS_TOKEN to serve."
        )

    def handle(self, *args, port, bind, **options):
        from prometheus_client.exposition import ThreadingWSGIServer

        from operating.metrics import registry_of

        class MetricsServer(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET

        app = metrics_app(registry_of(with_database=False))
        server = make_server(bind, port, app, server_class=MetricsServer, handler_class=QuietHandler)
        self.stdout.write(f"Serving worker metrics on http://{bind}:{port}/metrics")
        server.serve_forever()
