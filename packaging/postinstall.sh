#!/bin/sh
# The system user the agent runs as (configs/tlsrelay-agent.service: User=tlsrelay), its
# state directory (made here, not shipped: dpkg would remove it on purge, keys and all,
# were it empty of files dpkg knows), and the config readable by it.
set -e
if ! getent passwd tlsrelay >/dev/null; then
  adduser --system --group --home /var/lib/tlsrelay --no-create-home --quiet tlsrelay
fi
install -d -o tlsrelay -g tlsrelay -m 0750 /var/lib/tlsrelay
chgrp tlsrelay /etc/tlsrelay/tlsrelay.yaml
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
echo "tlsrelay: edit /etc/tlsrelay/tlsrelay.yaml, then: systemctl enable --now tlsrelay-agent"
