"""For a host that runs workers but no web server: serves the samples its processes wrote to
PROMETHEUS_MULTIPROC_DIR on a port of its own, for Prometheus to scrape. The database-backed
gauges (batches_active, batches_stuck) come from the web hosts' /metrics only."""

import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve this host's worker metrics over HTTP (Prometheus text format)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9101)
        parser.add_argument("--bind", default="0.0.0.0")

    def handle(self, *args, port, bind, **options):
        from prometheus_client import start_http_server

        from operating.metrics import registry_of

        start_http_server(port, addr=bind, registry=registry_of(with_database=False))
        self.stdout.write(f"Serving worker metrics on http://{bind}:{port}/metrics")
        while True:
            time.sleep(3600)
