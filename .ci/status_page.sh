#!/usr/bin/env bash
# The operators' status page in a real browser: the real scim-relay binary with one webhook
# connector whose target is a closed loopback port (so its deliveries fail), a user created
# through the SCIM API, the page fetched from the admin listener with the admin token
# (HTTP Basic), checked for the connector and its failure, then rendered by headless Debian
# Chromium from a saved file (which also proves it needs nothing from the network) and the
# screenshot checked. Run after `cargo build`; SCIM_RELAY_BIN overrides the binary. The
# screenshot and the HTML stay in target/ci-status-page/ for a person to look at.
set -euo pipefail
cd "$(dirname "$0")/.."

WAIT_SECS=30          # for the server to listen, and for a failed delivery to show
SHOT_TIMEOUT=90       # for Chromium to take the screenshot
WIDTH=1280
HEIGHT=900

passed=0
failed=1
closing() { echo "status page: $passed passed, $failed failed"; }

bin=${SCIM_RELAY_BIN:-target/debug/scim-relay}
if [ ! -x "$bin" ]; then
  echo "status_page: $bin not found; run cargo build first" >&2
  closing
  exit 2
fi

# Debian's Chromium, unless one is already there.
if ! command -v chromium >/dev/null 2>&1; then
  echo "status_page: installing Debian's chromium"
  sudo=
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo -n"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq chromium >/dev/null
fi
chromium --version 2>/dev/null || true

out_dir=target/ci-status-page
mkdir -p "$out_dir"
rm -f "$out_dir/status-page.png" "$out_dir/status-page.html"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "status_page: FAILED: $*" >&2
  echo "--- server log (last 40 lines) ---" >&2
  tail -n 40 "$work/server.log" 2>/dev/null >&2 || true
  closing
  exit 1
}

# Two distinct free loopback ports (both sockets held open while choosing).
read -r scim_port admin_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

CI_PAGE_SECRET=$(python3 -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(32)).decode())')
export CI_PAGE_SECRET

connector=ci-page-hook
cat > "$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$scim_port"
[admin]
listen = "127.0.0.1:$admin_port"
[storage]
path = "relay.db"
[logging]
level = "warn"

# Port 9 (discard) is closed on loopback: every delivery fails with "cannot connect".
[[connectors]]
name = "$connector"
kind = "webhook"
url = "http://127.0.0.1:9/events"
secret_env = "CI_PAGE_SECRET"
[connectors.retry]
initial_ms = 100
max_ms = 500
TOML

scim_token=$("$bin" --config "$work/config.toml" token create --name ci 2>"$work/token.err") \
  || { cat "$work/token.err" >&2; fail "token create --name ci"; }
admin_token=$("$bin" --config "$work/config.toml" token create --name ops --admin 2>"$work/token.err") \
  || { cat "$work/token.err" >&2; fail "token create --name ops --admin"; }

"$bin" --config "$work/config.toml" serve >"$work/server.log" 2>&1 &
server_pid=$!

# Everything over HTTP is done by Python's standard library, bounded in time.
export SCIM_PORT=$scim_port ADMIN_PORT=$admin_port SCIM_TOKEN=$scim_token \
  ADMIN_TOKEN=$admin_token CONNECTOR=$connector WAIT_SECS PAGE_OUT="$out_dir/status-page.html"
python3 - <<'PY' || fail "fetching and checking the page (see above)"
import base64, json, os, socket, sys, time, urllib.error, urllib.parse, urllib.request

scim = f"http://127.0.0.1:{os.environ['SCIM_PORT']}"
admin = f"http://127.0.0.1:{os.environ['ADMIN_PORT']}"
connector = os.environ["CONNECTOR"]
deadline = time.monotonic() + float(os.environ["WAIT_SECS"])
basic = "Basic " + base64.b64encode(f"ops:{os.environ['ADMIN_TOKEN']}".encode()).decode()

def check(cond, what):
    if not cond:
        print(f"status_page: check failed: {what}", file=sys.stderr)
        sys.exit(1)

# Both listeners up.
for port in (os.environ["SCIM_PORT"], os.environ["ADMIN_PORT"]):
    while True:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            break
        except OSError:
            check(time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}")
            time.sleep(0.1)

def get_page(query=None, auth=basic):
    url = admin + "/" + ("?" + urllib.parse.urlencode({"q": query}) if query is not None else "")
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")

# No token, no page.
status, _, _ = get_page(auth=None)
check(status == 401, f"GET / without a token answered {status}, not 401")

# One user through the SCIM API: its user.created delivery goes to the closed port.
user_name = "ci.page@example.com"
body = json.dumps({
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": user_name, "externalId": "ci-page-1", "active": True,
    "name": {"givenName": "Page", "familyName": "Check"},
}).encode()
req = urllib.request.Request(scim + "/scim/v2/Users", data=body, method="POST", headers={
    "Authorization": "Bearer " + os.environ["SCIM_TOKEN"],
    "Content-Type": "application/scim+json",
})
with urllib.request.urlopen(req, timeout=10) as r:
    check(r.status == 201, f"POST /Users answered {r.status}")

# Wait (bounded) until the page shows the failed delivery.
while True:
    status, ctype, html = get_page()
    if status == 200 and connector in html and "cannot connect" in html:
        break
    if time.monotonic() >= deadline:
        print(html[:2000], file=sys.stderr)
        check(False, f"within {os.environ['WAIT_SECS']} s the page (HTTP {status}) did not show "
                     f"connector {connector!r} with a 'cannot connect' failure")
    time.sleep(0.5)

# Let a few retries pass so the page settles (card and table both show the failure), then
# check and keep that fetch.
time.sleep(2)
status, ctype, html = get_page()
check(status == 200, f"GET / answered {status}")
check(connector in html and "cannot connect" in html, "the failure vanished from the page")
check(ctype.startswith("text/html"), f"Content-Type {ctype!r}")
check(html.lstrip().lower().startswith("<!doctype html>"), "not an HTML document")
check("Recent failures" in html, "no 'Recent failures' section")
check('http-equiv="refresh"' in html, "no auto-refresh on the plain page")
check("<polyline" in html or "no data" in html, "no depth chart")
check("<script" not in html.lower(), "the page carries a script")
with open(os.environ["PAGE_OUT"], "w", encoding="utf-8") as f:
    f.write(html)

# The search form: a GET with q; the query echoed (escaped) and auto-refresh off.
probe = user_name + ' <b>"x"'
status, _, found = get_page(probe)
check(status == 200, f"GET /?q=… answered {status}")
check('http-equiv="refresh"' not in found, "auto-refresh still on while showing a search")
check("ci.page@example.com &lt;b&gt;&quot;x&quot;" in found, "the query is not echoed escaped")
check("<b>\"x\"" not in found, "the query is echoed unescaped")
print(f"status_page: page fetched ({len(html)} bytes): {connector} shown with its failure")
PY

# Render the saved page offline in headless Chromium (flags per the machine notes: no
# background networking on this closed network, a fresh profile each time).
profile=$(mktemp -d -p "$work")
png="$out_dir/status-page.png"
timeout "$SHOT_TIMEOUT" chromium --headless --no-sandbox --disable-gpu --disable-quic \
  --no-first-run --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size="$WIDTH,$HEIGHT" \
  --screenshot="$png" "file://$(realpath "$out_dir/status-page.html")" \
  >"$work/chromium.log" 2>&1 || { cat "$work/chromium.log" >&2; fail "chromium screenshot"; }

# The PNG: there, the right size, and not blank.
PNG="$png" WIDTH=$WIDTH HEIGHT=$HEIGHT python3 - <<'PY' || fail "screenshot check (see above)"
import os, struct, sys, zlib

path = os.environ["PNG"]
data = open(path, "rb").read()
def check(cond, what):
    if not cond:
        print(f"status_page: screenshot check failed: {what}", file=sys.stderr)
        sys.exit(1)
check(data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG")
width, height = struct.unpack(">II", data[16:24])
want = (int(os.environ["WIDTH"]), int(os.environ["HEIGHT"]))
check((width, height) == want, f"{width}x{height}, expected {want[0]}x{want[1]}")
idat, pos = b"", 8
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + length]
    pos += 12 + length
raw = zlib.decompress(idat)
distinct = len(set(raw))
# A blank page's filtered scanlines are almost all 0s and 255s; text, badges and a chart
# give a spread of values and a file of tens of KB.
check(len(data) > 20_000, f"only {len(data)} bytes: blank?")
check(distinct > 64, f"only {distinct} distinct byte values: blank?")
print(f"status_page: screenshot {path}: {width}x{height}, {len(data)} bytes, "
      f"{distinct} distinct byte values")
PY

passed=1
failed=0
closing
