#!/usr/bin/env bash
# A real OpenStack Barbican (Debian python3-barbican) on 127.0.0.1, for tests and for
# trying tlsrelay's barbican backend by hand. SQLite, simple_crypto, single-threaded.
#
#   scripts/barbican-server.sh start WORKDIR PORT [keystone-url]
#   scripts/barbican-server.sh stop WORKDIR
#
# Without a Keystone URL the API is unauthenticated: the X-Project-Id header names the
# project (tlsrelay's barbican backend: auth.type noauth). With one, Keystone tokens are
# required (keystonemiddleware authtoken; see scripts/keystone-server.sh). Restarting
# with the same WORKDIR keeps the database and its encryption key.
set -euo pipefail
PY=/usr/bin/python3   # Debian's python: a pyenv shim on PATH lacks the barbican modules

usage() { echo "usage: $0 start WORKDIR PORT [KEYSTONE_URL] | stop WORKDIR" >&2; exit 2; }

write_config() {
  local w=$1 port=$2 keystone=${3:-}
  mkdir -p "$w/home/.barbican"
  # oslo.config reads ~/.barbican/barbican.conf before /etc/barbican: HOME selects ours.
  local conf="$w/home/.barbican/barbican.conf"
  if [ ! -f "$w/kek" ]; then
    $PY -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())' > "$w/kek"
  fi
  cat > "$conf" <<CONF
[DEFAULT]
host_href = http://127.0.0.1:$port
sql_connection = sqlite:///$w/barbican.sqlite
db_auto_create = True
log_file = $w/barbican-api.log

[secretstore]
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = $(cat "$w/kek")

[queue]
enable = False
CONF
  local pipeline="unauthenticated-context microversion apiapp"
  if [ -n "$keystone" ]; then
    pipeline="authtoken context microversion apiapp"
    cat >> "$conf" <<CONF

[keystone_authtoken]
www_authenticate_uri = $keystone
auth_url = $keystone
auth_type = password
project_name = admin
project_domain_name = Default
username = admin
user_domain_name = Default
password = ${KEYSTONE_ADMIN_PASSWORD:-adminpw}
region_name = RegionOne
CONF
  fi
  cat > "$w/barbican-api-paste.ini" <<PASTE
[composite:main]
use = egg:Paste#urlmap
/: barbican_version
/v1: barbican_api

[pipeline:barbican_version]
pipeline = microversion versionapp

[pipeline:barbican_api]
pipeline = $pipeline

[app:apiapp]
paste.app_factory = barbican.api.app:create_main_app

[app:versionapp]
paste.app_factory = barbican.api.app:create_version_app

[filter:unauthenticated-context]
paste.filter_factory = barbican.api.middleware.context:UnauthenticatedContextMiddleware.factory

[filter:context]
paste.filter_factory = barbican.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:microversion]
paste.filter_factory = barbican.api.middleware.microversion:MicroversionMiddleware.factory
PASTE
  # Single-threaded wsgiref: threaded servers on SQLite answer 500 "database is locked".
  cat > "$w/serve.py" <<'SERVE'
import sys
from wsgiref.simple_server import make_server, WSGIRequestHandler
from paste import deploy

class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass

host, port, ini = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = deploy.loadapp('config:' + ini)
print('serving on http://%s:%d' % (host, port), flush=True)
make_server(host, port, app, handler_class=QuietHandler).serve_forever()
SERVE
}

start() {
  local w=$1 port=$2 keystone=${3:-}
  mkdir -p "$w"
  w=$(cd "$w" && pwd)
  write_config "$w" "$port" "$keystone"
  HOME="$w/home" setsid $PY "$w/serve.py" 127.0.0.1 "$port" "$w/barbican-api-paste.ini" \
    >> "$w/barbican.out" 2>&1 < /dev/null &
  echo $! > "$w/barbican.pid"
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/"; then
      echo "barbican pid $(cat "$w/barbican.pid") on http://127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$(cat "$w/barbican.pid")" 2>/dev/null; then
      echo "barbican exited while starting:" >&2
      tail -20 "$w/barbican.out" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "barbican did not answer on 127.0.0.1:$port within 30 s" >&2
  tail -20 "$w/barbican.out" >&2
  return 1
}

stop() {
  local w=$1
  [ -f "$w/barbican.pid" ] || return 0
  local pid
  pid=$(cat "$w/barbican.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$w/barbican.pid"
}

case "${1:-}" in
  start) [ $# -ge 3 ] || usage; start "$2" "$3" "${4:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
