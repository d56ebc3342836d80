#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then vet, format check, and every
# test (end-to-end ones run real plugin child processes). Usage: scripts/test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
go test -count=1 -timeout 15m "$@" ./...
