#!/usr/bin/env bash
# The scale benchmark: a real etcd, real leader-eligible agents with their plugins, and
# many simulated units (cmd/tlsrelay-scale --help). Builds both binaries, runs on tmpfs
# (/dev/shm), and passes its arguments on:
#   scripts/bench-scale.sh --units 10000 --scenarios failover,rotate,revoke --waves 1000
#   scripts/bench-scale.sh --units 100000 --lease-ttl 60s
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /dev/shm/tlsrelay-scale.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/bin/" ./cmd/tlsrelay ./cmd/tlsrelay-scale
"$work/bin/tlsrelay-scale" --dir "$work/run" "$@"
