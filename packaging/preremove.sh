#!/bin/sh
# Stop the agent (it leaves its group, saying it will be back) before its binary goes.
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop tlsrelay-agent >/dev/null 2>&1 || true
  systemctl disable tlsrelay-agent >/dev/null 2>&1 || true
fi
