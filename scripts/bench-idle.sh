#!/usr/bin/env bash
# The idle footprint of a unit that does not lead: two agents on a real etcd (Debian's
# etcd-server) on loopback; after 30 s the non-leader's processes (agent and plugins)
# are counted with their RSS and PSS (/proc/PID/smaps_rollup).
#   scripts/bench-idle.sh [PLUGIN_IDLE...]      e.g. scripts/bench-idle.sh 0 5s
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/tlsrelay" ./cmd/tlsrelay
for idle in "${@:-0 5s}"; do
  dir="$work/$idle"; mkdir -p "$dir"
  port=$((24000 + RANDOM % 1000))
  /usr/bin/etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1000))" > "$dir/etcd.log" 2>&1 &
  etcd=$!
  sleep 2
  pids=()
  for u in 0 1; do
    printf 'unit: web/%s\nstate_dir: %s/s%s\nplugin_idle: %s\nrelation: {store: etcd, etcd: {endpoints: ["127.0.0.1:%s"]}}\ncertificate: {output: {dir: %s/o%s}}\n' \
      "$u" "$dir" "$u" "$idle" "$port" "$dir" "$u" > "$dir/c$u.yaml"
    "$work/tlsrelay" agent --config "$dir/c$u.yaml" > "$dir/a$u.log" 2>&1 &
    pids+=($!)
    sleep 1
  done
  sleep 30
  leader=$("$work/tlsrelay" status --config "$dir/c0.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
  for u in 0 1; do
    [ "web/$u" = "$leader" ] && continue
    pid=${pids[$u]}
    kids=$(cat /proc/"$pid"/task/*/children)
    rss=0 pss=0 n=0
    for p in $pid $kids; do
      rss=$((rss + $(awk '/^Rss:/{print $2}' /proc/"$p"/smaps_rollup)))
      pss=$((pss + $(awk '/^Pss:/{print $2}' /proc/"$p"/smaps_rollup)))
      n=$((n + 1))
    done
    echo "plugin_idle=$idle: the non-leader web/$u runs $n processes (agent and plugins): RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB"
  done
  kill "${pids[@]}"
  sleep 2
  kill "$etcd"
  wait 2>/dev/null || true
done
