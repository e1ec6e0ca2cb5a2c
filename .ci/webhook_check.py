#!/usr/bin/env python3
"""An independent Standard Webhooks receiver for CI (.ci/webhook_check.sh).

It verifies every POST it gets with the `standardwebhooks` package from PyPI
(`Webhook(secret).verify(body, headers)`), not with scim-relay's own code, so a signing bug
cannot hide behind a matching verification bug. Exit status:

* 0 once at least --expect distinct events (by `webhook-id`; retries count once) have been
  verified and every type in --types has been seen;
* 1 at the first request that fails verification (bad or missing headers, stale timestamp,
  no matching signature, a body that is not a JSON event envelope, a content type other than
  JSON), or when --timeout seconds pass first.

The secret is read from the environment (--secret-env, default CI_WEBHOOK_SECRET) so that it
does not appear in the process list; several secrets separated by commas or spaces are tried in
turn (rotation). --counts FILE receives "<passed> <failed>" when the checker ends.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

MAX_BODY = 4 * 1024 * 1024


class Checker:
    def __init__(self, webhooks, expect, types):
        self.webhooks = webhooks
        self.expect = expect
        self.types = types
        self.lock = threading.Lock()
        self.events = {}  # webhook-id -> event envelope
        self.failures = []
        self.done = threading.Event()

    def verify(self, body, headers):
        """Returns the parsed envelope, or raises with the reason."""
        errors = []
        for wh in self.webhooks:
            try:
                return wh.verify(body, headers)
            except Exception as e:  # the package also raises ValueError on malformed headers
                errors.append(f"{type(e).__name__}: {e}")
        raise ValueError("; ".join(errors))

    def record(self, msg_id, event):
        with self.lock:
            first = msg_id not in self.events
            self.events[msg_id] = event
            self.check_done()
            return first

    def fail(self, message):
        with self.lock:
            self.failures.append(message)
        print(f"webhook_check: FAILED: {message}", file=sys.stderr, flush=True)
        self.done.set()

    def seen_types(self):
        return {e.get("type") for e in self.events.values()}

    def check_done(self):
        if len(self.events) >= self.expect and self.types <= self.seen_types():
            self.done.set()


def envelope_problem(event):
    if not isinstance(event, dict):
        return "the body is not a JSON object"
    if not isinstance(event.get("type"), str):
        return "the envelope has no string `type`"
    data = event.get("data")
    if not isinstance(data, dict):
        return "the envelope has no object `data`"
    for key in ("resourceType", "id"):
        if not isinstance(data.get(key), str):
            return f"the envelope has no string `data.{key}`"
    return None


def make_handler(checker, path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "webhook_check"

        def log_message(self, format, *args):
            pass

        def answer(self, status, text=""):
            body = text.encode()
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 204:
                self.wfile.write(body)
            self.wfile.flush()

        def read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY:
                        raise ValueError("body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length", "0"))
            if length > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length)

        def do_POST(self):
            try:
                body = self.read_body()
            except Exception as e:
                self.answer(400, "unreadable body\n")
                checker.fail(f"POST {self.path}: unreadable body: {e}")
                return
            msg_id = self.headers.get("webhook-id", "-")
            if self.path != path:
                self.answer(404, "wrong path\n")
                checker.fail(f"{msg_id}: POST to {self.path}, expected {path}")
                return
            headers = {k: v for k, v in self.headers.items()}
            try:
                event = checker.verify(body, headers)
            except Exception as e:
                self.answer(401, "verification failed\n")
                checker.fail(f"{msg_id}: standardwebhooks rejected the request: {e}")
                return
            content_type = self.headers.get("Content-Type", "")
            if not content_type.lower().startswith("application/json"):
                self.answer(400, "not JSON\n")
                checker.fail(f"{msg_id}: Content-Type is {content_type!r}, expected application/json")
                return
            problem = envelope_problem(event)
            if problem:
                self.answer(400, problem + "\n")
                checker.fail(f"{msg_id}: {problem}")
                return
            self.answer(204)
            first = checker.record(msg_id, event)
            data = event["data"]
            note = "" if first else " (retry of an id already verified)"
            print(
                f"webhook_check: verified {msg_id} {event['type']} "
                f"{data['resourceType']}/{data['id']}{note}",
                flush=True,
            )

        def do_GET(self):
            self.answer(405, "POST only\n")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/events")
    ap.add_argument("--secret-env", default="CI_WEBHOOK_SECRET")
    ap.add_argument("--expect", type=int, default=1, help="distinct events to verify")
    ap.add_argument("--types", default="", help="comma-separated event types that must all be seen")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--ready-file", help="created once the port is listening")
    ap.add_argument("--counts", help='file that receives "<passed> <failed>" at the end')
    args = ap.parse_args()

    text = os.environ.get(args.secret_env, "")
    secrets = [s for s in text.replace(",", " ").split() if s]
    if not secrets:
        sys.exit(f"webhook_check: environment variable {args.secret_env} holds no secret")
    try:
        webhooks = [Webhook(s) for s in secrets]
    except Exception as e:
        sys.exit(f"webhook_check: {args.secret_env} is not a valid whsec_ secret ({type(e).__name__})")
    types = {t.strip() for t in args.types.split(",") if t.strip()}
    checker = Checker(webhooks, args.expect, types)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(checker, args.path))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{args.port}\n")
    print(f"webhook_check: listening on http://127.0.0.1:{args.port}{args.path}", flush=True)

    finished = checker.done.wait(args.timeout)
    # Let a handler that has just answered finish printing before the report.
    time.sleep(0.05)
    server.shutdown()
    with checker.lock:
        passed = len(checker.events)
        failures = list(checker.failures)
        seen = checker.seen_types()
    missing_types = sorted(types - seen)
    failed = len(failures)
    if not finished:
        # Count what never arrived: missing events, or missing types if that is more.
        failed += max(args.expect - passed, len(missing_types), 1)
    if args.counts:
        with open(args.counts, "w") as f:
            f.write(f"{passed} {failed}\n")

    if failures:
        print(f"webhook_check: {len(failures)} request(s) failed verification", file=sys.stderr)
        return 1
    if not finished:
        print(
            f"webhook_check: timed out after {args.timeout:g} s: verified {passed} of "
            f"{args.expect} events; types seen {sorted(t for t in seen if t)}; "
            f"missing {missing_types}",
            file=sys.stderr,
        )
        return 1
    print(f"webhook_check: verified {passed} events; types {sorted(seen)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
