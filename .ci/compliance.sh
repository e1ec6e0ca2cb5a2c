#!/usr/bin/env bash
# Runs scim2-tester (PyPI) against the real scim-relay binary on a loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/ci-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r .ci/requirements.txt

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
path = "relay.db"
[logging]
level = "warn"
TOML

bin=target/debug/scim-relay
token=$("$bin" --config "$work/config.toml" token create --name scim2-tester 2>/dev/null)
"$bin" --config "$work/config.toml" serve >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (at most 10 s) until the server answers its health check.
python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1).read()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("scim-relay did not become healthy within 10 s")
PY

status=0
"$venv/bin/python" .ci/scim2_tester_run.py --url "http://127.0.0.1:$port/scim/v2" --token "$token" || status=$?
if [ "$status" != 0 ]; then
  echo "--- server log ---"; tail -n 50 "$work/server.log"
fi
exit "$status"
