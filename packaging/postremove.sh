#!/bin/sh
# On purge, the user goes; /var/lib/tlsrelay stays: it may hold a CA key and the unit's
# key, which an operator removes knowingly.
set -e
if [ "$1" = purge ] && getent passwd tlsrelay >/dev/null; then
  deluser --system --quiet tlsrelay >/dev/null 2>&1 || true
  echo "tlsrelay: /var/lib/tlsrelay is kept (keys); remove it by hand when no longer needed"
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
