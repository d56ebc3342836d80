#!/usr/bin/env bash
# A real OpenStack Keystone (Debian keystone) on 127.0.0.1 with SQLite and fernet tokens,
# for tests of tlsrelay's barbican backend through Keystone auth.
#
#   scripts/keystone-server.sh start WORKDIR PORT          # bootstrap (first time) and serve
#   scripts/keystone-server.sh catalog WORKDIR PORT URL    # register URL as the key-manager endpoint
#   scripts/keystone-server.sh stop WORKDIR
#
# The bootstrap admin is user "admin", password $KEYSTONE_ADMIN_PASSWORD (default
# adminpw), project "admin", domain Default, region RegionOne.
set -euo pipefail
PY=/usr/bin/python3
PASSWORD=${KEYSTONE_ADMIN_PASSWORD:-adminpw}

usage() { echo "usage: $0 start WORKDIR PORT | catalog WORKDIR PORT URL | stop WORKDIR" >&2; exit 2; }

bootstrap() {
  local w=$1 port=$2
  mkdir -p "$w/fernet-keys" "$w/credential-keys"
  cat > "$w/keystone.conf" <<CONF
[DEFAULT]
log_file = $w/keystone.log
[database]
connection = sqlite:///$w/keystone.sqlite
[token]
provider = fernet
[fernet_tokens]
key_repository = $w/fernet-keys
[fernet_receipts]
key_repository = $w/fernet-keys
[credential]
key_repository = $w/credential-keys
CONF
  local km="keystone-manage --config-file $w/keystone.conf"
  # keystone-manage prints a harmless eventlet warning at exit; its output goes to a log.
  $km db_sync >> "$w/manage.log" 2>&1
  $km fernet_setup --keystone-user root --keystone-group root >> "$w/manage.log" 2>&1
  $km credential_setup --keystone-user root --keystone-group root >> "$w/manage.log" 2>&1
  $km bootstrap --bootstrap-password "$PASSWORD" --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "http://127.0.0.1:$port/v3/" \
    --bootstrap-public-url "http://127.0.0.1:$port/v3/" \
    --bootstrap-internal-url "http://127.0.0.1:$port/v3/" >> "$w/manage.log" 2>&1
  # Without WAL, consecutive writes fail with "database is locked" (HTTP 500).
  $PY -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$w/keystone.sqlite"
  touch "$w/bootstrapped"
}

start() {
  local w=$1 port=$2
  mkdir -p "$w"
  w=$(cd "$w" && pwd)
  [ -f "$w/bootstrapped" ] || bootstrap "$w" "$port"
  OS_KEYSTONE_CONFIG_DIR="$w" setsid keystone-wsgi-public --host 127.0.0.1 --port "$port" \
    >> "$w/keystone.out" 2>&1 < /dev/null &
  echo $! > "$w/keystone.pid"
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/v3"; then
      echo "keystone pid $(cat "$w/keystone.pid") on http://127.0.0.1:$port/v3"
      return 0
    fi
    kill -0 "$(cat "$w/keystone.pid")" 2>/dev/null || { tail -20 "$w/keystone.out" >&2; return 1; }
    sleep 0.1
  done
  echo "keystone did not answer within 30 s" >&2
  return 1
}

# catalog registers a key-manager service and its public, internal and admin endpoints.
catalog() {
  local port=$2 url=$3
  $PY - "http://127.0.0.1:$port/v3" "$PASSWORD" "$url" <<'PYCODE'
import json, sys, urllib.request
base, password, url = sys.argv[1:4]
def call(method, path, body, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req) as resp:
        return resp.headers.get("X-Subject-Token"), json.loads(resp.read() or b"{}")
token, _ = call("POST", "/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"name": "Default"}, "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
_, svc = call("POST", "/services", {"service": {"type": "key-manager", "name": "barbican"}}, token)
for iface in ("public", "internal", "admin"):
    call("POST", "/endpoints", {"endpoint": {"service_id": svc["service"]["id"], "interface": iface,
        "url": url, "region_id": "RegionOne"}}, token)
print("key-manager endpoint %s registered" % url)
PYCODE
}

stop() {
  local w=$1
  [ -f "$w/keystone.pid" ] || return 0
  local pid
  pid=$(cat "$w/keystone.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$w/keystone.pid"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  catalog) [ $# -eq 4 ] || usage; catalog "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
