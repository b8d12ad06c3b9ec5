"""A webhook receiver for the tests, run as a process of its own: records every request it gets (headers
and body, one JSON line each) in a file, and answers with the given status after the given delay."""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--status", type=int, default=204)
    parser.add_argument("--delay", type=float, default=0.0)
    options = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(options.delay)
            record = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode(),
                      "received_at": time.time()}
            with lock, open(options.log, "a") as log:
                log.write(json.dumps(record) + "\n")
            self.send_response(options.status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", options.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
