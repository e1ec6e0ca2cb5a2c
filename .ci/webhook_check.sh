#!/usr/bin/env bash
# End-to-end webhook check: the real scim-relay binary delivers to an independent receiver
# (.ci/webhook_check.py, built on the `standardwebhooks` package from PyPI) that verifies every
# signature. Run from anywhere after `cargo build`; SCIM_RELAY_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# The PyPI package that verifies independently of our own signing code.
STANDARDWEBHOOKS_VERSION=1.1.0
EXPECT_TYPES=user.created,user.updated,group.created,user.deleted
EXPECT_COUNT=4
CHECK_TIMEOUT=60

bin=${SCIM_RELAY_BIN:-target/debug/scim-relay}
if [ ! -x "$bin" ]; then
  echo "webhook_check: $bin not found; run cargo build first" >&2
  exit 2
fi

venv=target/ci-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"

work=$(mktemp -d)
server_pid=
checker_pid=
cleanup() {
  for pid in $server_pid $checker_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Two distinct free ports (both sockets are held open while choosing).
read -r relay_port hook_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

CI_WEBHOOK_SECRET=$(python3 -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(32)).decode())')
export CI_WEBHOOK_SECRET

cat > "$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$relay_port"
[storage]
path = "relay.db"
[logging]
level = "warn"

[[connectors]]
name = "ci-webhook"
kind = "webhook"
url = "http://127.0.0.1:$hook_port/events"
secret_env = "CI_WEBHOOK_SECRET"
events = ["user.*", "group.*"]
TOML

closing() {
  local passed=0 failed=1
  if [ -s "$work/counts" ]; then read -r passed failed < "$work/counts"; fi
  echo "standardwebhooks: $passed passed, $failed failed"
}
show_logs() {
  echo "--- webhook checker ---"; cat "$work/checker.log" 2>/dev/null || true
  echo "--- server log ---"; tail -n 50 "$work/server.log" 2>/dev/null || true
}

if ! token=$("$bin" --config "$work/config.toml" token create --name ci 2>"$work/token.err"); then
  cat "$work/token.err" >&2; closing; exit 1
fi

"$venv/bin/python" .ci/webhook_check.py --port "$hook_port" --path /events \
  --secret-env CI_WEBHOOK_SECRET --expect "$EXPECT_COUNT" --types "$EXPECT_TYPES" \
  --timeout "$CHECK_TIMEOUT" --ready-file "$work/checker.ready" --counts "$work/counts" \
  >"$work/checker.log" 2>&1 &
checker_pid=$!

"$bin" --config "$work/config.toml" serve >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (at most 10 s each) for the checker's port and the server's health check.
if ! python3 - "$relay_port" "$work/checker.ready" <<'PY'
import os, sys, time, urllib.request
port, ready = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 10
while not os.path.exists(ready):
    if time.monotonic() > deadline:
        sys.exit("webhook checker did not start within 10 s")
    time.sleep(0.1)
deadline = time.monotonic() + 10
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("scim-relay did not become healthy within 10 s")
        time.sleep(0.1)
PY
then
  show_logs; closing; exit 1
fi

# Drive four changes through the SCIM API: user created, updated, group created, user deleted.
if ! python3 - "$relay_port" "$token" <<'PY'
import json, sys, urllib.error, urllib.request
port, token = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/scim/v2"

def call(method, path, body, expect):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/scim+json",
        "Accept": "application/scim+json",
    })
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    if status not in expect:
        sys.exit(f"{method} {path}: expected {expect}, got {status}: {text[:500]}")
    return json.loads(text) if text.strip() else None

user = call("POST", "/Users", {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "ci.webhook@example.com",
    "name": {"givenName": "Ci", "familyName": "Webhook"},
    "emails": [{"value": "ci.webhook@example.com", "type": "work", "primary": True}],
    "active": True,
}, (201,))
call("PATCH", f"/Users/{user['id']}", {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "path": "title", "value": "x"}],
}, (200, 204))
call("POST", "/Groups", {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    "displayName": "CI Webhook Group",
}, (201,))
call("DELETE", f"/Users/{user['id']}", None, (204,))
PY
then
  show_logs; closing; exit 1
fi

status=0
wait "$checker_pid" || status=$?
checker_pid=
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=

if [ "$status" != 0 ]; then
  show_logs
else
  cat "$work/checker.log"
fi
closing
exit "$status"
