#!/usr/bin/env bash
# Side by side, in one run, on the same CA and CSRs: cfssl's signer in-process, the
# cfssl plugin (SignCSR, and SignCSRs in batches of 64) and `cfssl serve` v1.6.5 over
# HTTP on 127.0.0.1, each at concurrency 1, 2 and 8; prints the median csr/s of COUNT
# runs (default 5) and each signer's ratio to in-process and to cfssl serve.
# Usage: scripts/bench-signers.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-5}"
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
echo "installing cfssl v1.6.5 into $gobin ..." >&2
GOBIN="$gobin" go install github.com/cloudflare/cfssl/cmd/cfssl@v1.6.5
TLSRELAY_BENCH_CFSSL="$gobin/cfssl" go test -run '^$' -bench '^BenchmarkSigners$' -count "$count" ./core/backend |
  tee /dev/stderr |
  awk '/^BenchmarkSigners\// {
         name = $1; sub(/^BenchmarkSigners\//, "", name); sub(/-[0-9]+$/, "", name)
         for (i = 1; i <= NF; i++) if ($(i+1) == "csr/s") v[name] = v[name] " " $i
       }
       END {
         for (name in v) {
           n = split(substr(v[name], 2), xs, " ")
           for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (xs[j] < xs[i]) { t = xs[i]; xs[i] = xs[j]; xs[j] = t }
           med[name] = xs[int((n + 1) / 2)]
         }
         printf "\n%-18s %10s %12s %12s\n", "signer", "csr/s", "/in-process", "/cfssl-serve"
         split("in-process plugin plugin-batch cfssl-serve", order, " ")
         for (k = 1; k <= 4; k++) for (c = 1; c <= 8; c *= 2) {
           if (c == 4) continue
           name = order[k] "/c" c; base = "in-process/c" c; serve = "cfssl-serve/c" c
           if (!(name in med)) continue
           printf "%-18s %10.0f %12.2f %12.2f\n", name, med[name], med[name] / med[base], (serve in med) ? med[name] / med[serve] : 0
         }
       }'
