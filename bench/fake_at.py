"""A stand-in for the Africa's Talking SMS send API on loopback, for bench/webhooks.py.

    .venv/bin/python bench/fake_at.py [--api-key bench-at-key]

Prints ``port=<n>`` once it listens on 127.0.0.1, then serves until terminated:

- ``POST /version1/messaging`` (PROVIDERS.md §5.2, what the AT SDK posts): 201 with every
  recipient accepted as status 101 (Sent), or 401 when the ``apiKey`` header is wrong;
- ``GET /sent?to=<E.164>``: how many messages that recipient got and the last one (the
  benchmark's probe reads its own worker's replies here);
- ``GET /stats``: messages accepted in all.

What it is sent stays in this process's memory and goes nowhere else: no log line, no file.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MESSAGING_PATH = "/version1/messaging"
SENT = 101  # AT's statusCode for a message handed to the network


class Outbox:
    """What was accepted: a count and the last text per recipient, and the total."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.by_recipient: dict[str, tuple[int, str]] = {}

    def accept(self, recipients: list[str], text: str) -> None:
        with self.lock:
            for recipient in recipients:
                count, _ = self.by_recipient.get(recipient, (0, ""))
                self.by_recipient[recipient] = (count + 1, text)
                self.total += 1

    def sent_to(self, recipient: str) -> dict[str, object]:
        with self.lock:
            count, last = self.by_recipient.get(recipient, (0, ""))
        return {"count": count, "last": last}


def handler(outbox: Outbox, api_key: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if urlsplit(self.path).path != MESSAGING_PATH:
                self.answer(404, {"error": "not found"})
                return
            if self.headers.get("apiKey") != api_key:
                self.answer(401, {"error": "The supplied authentication is invalid"})
                return
            recipients = [r for r in form.get("to", [""])[0].split(",") if r]
            outbox.accept(recipients, form.get("message", [""])[0])
            with outbox.lock:
                serial = outbox.total
            recipients_data = [
                {
                    "statusCode": SENT,
                    "number": recipient,
                    "status": "Success",
                    "cost": "KES 0.8000",
                    "messageId": f"ATXid_bench{serial}_{index}",
                }
                for index, recipient in enumerate(recipients)
            ]
            message = f"Sent to {len(recipients)}/{len(recipients)} Total Cost: KES 0.8000"
            self.answer(
                201, {"SMSMessageData": {"Message": message, "Recipients": recipients_data}}
            )

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = urlsplit(self.path)
            if parts.path == "/sent":
                to = parse_qs(parts.query).get("to", [""])[0]
                self.answer(200, outbox.sent_to(to))
            elif parts.path == "/stats":
                with outbox.lock:
                    total = outbox.total
                self.answer(200, {"messages": total})
            else:
                self.answer(404, {"error": "not found"})

        def answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # the request line would carry a recipient: nothing is logged

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-key", default="bench-at-key")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Outbox(), args.api_key))
    server.daemon_threads = True
    print(f"port={server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
