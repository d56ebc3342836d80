#!/usr/bin/env bash
# Module hygiene: both go.mod files are tidy, the sdk module (what a third party's
# plugin depends on) pulls none of the root module's heavy dependencies, and the sdk's
# exported API has not changed incompatibly against its recorded baseline.
#
#   scripts/check-modules.sh               check
#   scripts/check-modules.sh --record-api  record the sdk's API as the new baseline (a
#                                          deliberate break: say so in sdk/CHANGELOG.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# apidiff compares the sdk's exported API (export data) with sdk/api/sdk.export; pinned.
apidiff=golang.org/x/exp/cmd/apidiff@v0.0.0-20261113113407-e3970619a1a4
sdkmod=github.com/tlsrelay/tlsrelay/sdk
if [ "${1:-}" = "--record-api" ]; then
  (cd sdk && go run "$apidiff" -m -w api/sdk.export "$sdkmod")
  echo "check-modules: recorded the sdk's API in sdk/api/sdk.export"
  exit 0
fi

for mod in . sdk; do
  if ! diff=$(cd "$mod" && go mod tidy -diff 2>&1); then
    echo "check-modules: go mod tidy would change $mod/go.mod or go.sum:" >&2
    echo "$diff" >&2
    exit 1
  fi
done

heavy='github.com/cloudflare/cfssl|github.com/gophercloud|github.com/spf13/viper|github.com/spf13/cobra|go.etcd.io/'
if found=$(cd sdk && go list -m all | grep -E "$heavy"); then
  echo "check-modules: the sdk module's graph holds what a plugin must not pull:" >&2
  echo "$found" >&2
  exit 1
fi
echo "check-modules: both modules tidy; the sdk graph holds $(cd sdk && go list -m all | wc -l) modules, none of cfssl, gophercloud, viper, cobra, etcd"

# Internal packages (the generated gRPC code) are not the sdk's API, and apidiff says it
# skips them; go run says what it downloads on a fresh machine. Anything else it prints
# is an incompatible change (or a package that did not load).
if ! report=$(cd sdk && go run "$apidiff" -m -incompatible api/sdk.export "$sdkmod" 2>&1); then
  echo "check-modules: apidiff failed:" >&2
  echo "$report" >&2
  exit 1
fi
if incompatible=$(grep -v -e '^Ignoring internal package' -e '^go: downloading ' <<<"$report"); then
  echo "check-modules: the sdk's exported API changed incompatibly against sdk/api/sdk.export:" >&2
  echo "$incompatible" >&2
  echo "(a deliberate break: scripts/check-modules.sh --record-api, and a line in sdk/CHANGELOG.md)" >&2
  exit 1
fi
echo "check-modules: the sdk's API is compatible with its recorded baseline"
