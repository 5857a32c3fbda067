"""The process that serves a node's Prometheus metrics over HTTP (node/metrics.py).

`python -m redray.node.metrics_exporter <dir> <host> <port> <ready fd>`: merges the metric
files every process of the node writes into <dir> (prometheus_client's multiprocess mode)
on each scrape of `http://<host>:<port>/metrics`. It writes `ready <port>` (or the error)
to <ready fd>, and ends with its node daemon.
"""

from __future__ import annotations

import os
import signal
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are routine: no line per request."""


def main(argv: list[str]) -> None:
    directory, host, port, ready_fd = argv[0], argv[1], int(argv[2]), int(argv[3])
    _die_with_parent()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    try:
        server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
    except OSError as error:
        os.write(ready_fd, f"error: {error}\n".encode())
        sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.write(ready_fd, f"ready {server.server_port}\n".encode())
    os.close(ready_fd)
    server.serve_forever()


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the daemon still stops it when it shuts down


if __name__ == "__main__":
    main(sys.argv[1:])
