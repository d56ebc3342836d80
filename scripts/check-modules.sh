#!/usr/bin/env bash
# Module hygiene: both go.mod files are tidy, the sdk module (what a third party's
# plugin depends on) pulls none of the root module's heavy dependencies, the layers hold,
# no file of core/ outgrows what a reader can hold, and the sdk's exported API and wire
# contract are what their recorded baselines say.
#
#   scripts/check-modules.sh               check
#   scripts/check-modules.sh --record-api  record the sdk's API and wire contract as the
#                                          new baselines (an addition, or a deliberate
#                                          break: say so in sdk/CHANGELOG.md)
set -euo pipefail
export LC_ALL=C # comm and sort agree with Go on the order of lines
cd "$(dirname "$0")/.."

# apidiff compares the sdk's exported API (export data) with sdk/api/sdk.export; pinned.
apidiff=golang.org/x/exp/cmd/apidiff@v0.0.0-20261113113407-e3970619a1a4
sdkmod=github.com/tlsrelay/tlsrelay/sdk
if [ "${1:-}" = "--record-api" ]; then
  (cd sdk && go run "$apidiff" -m -w api/sdk.export "$sdkmod")
  (cd sdk && go run ./internal/apitext >api/sdk.txt && go run ./internal/wiretext >api/backend.wire.txt)
  echo "check-modules: recorded the sdk's API in sdk/api/sdk.export and sdk/api/sdk.txt, its wire contract in sdk/api/backend.wire.txt"
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

# Layering (cmd -> application -> core -> sdk): core/ and the built-in plugins import
# nothing of internal/ (the application, test infrastructure and their utilities), and
# the plugins nothing of core/, as a third party's plugin could not. Test files may use
# the test infrastructure.
mod=github.com/tlsrelay/tlsrelay
if bad=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./core/... ./plugins/... |
  awk -v mod="$mod" '{ for (i = 2; i <= NF; i++) if (index($i, mod "/internal/") == 1 || (index($1, mod "/plugins/") == 1 && index($i, mod "/core/") == 1)) print $1 " imports " $i }'); [ -n "$bad" ]; then
  echo "check-modules: an import runs back up the layers:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-modules: core and the built-in plugins import nothing of internal/; the plugins nothing of core/"

# The test rooms (internal/testkit: certificates, servers, network labs, test plugins and
# binaries) serve tests alone: no package's own code imports them, only its tests.
if bad=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./... |
  awk -v kit="$mod/internal/testkit/" '{ if (index($1, kit) == 1) next; for (i = 2; i <= NF; i++) if (index($i, kit) == 1) print $1 " imports " $i }'); [ -n "$bad" ]; then
  echo "check-modules: code outside the tests uses the test rooms (internal/testkit):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "check-modules: internal/testkit is imported by tests alone"

# A file a reader can hold: no non-test file of core/ over 400 lines.
if long=$(find core -name '*.go' ! -name '*_test.go' -exec wc -l {} + | awk '$2 != "total" && $1 > 400'); [ -n "$long" ]; then
  echo "check-modules: files of core/ over 400 lines (split them by what they do):" >&2
  echo "$long" >&2
  exit 1
fi
echo "check-modules: no file of core/ is over 400 lines"

# The wire contract every plugin speaks, in any language: a line of the baseline gone or
# changed is a break (a field renumbered, retyped or removed, a method dropped), which
# no release may make; a new line is an addition, to record deliberately.
wire=$(cd sdk && go run ./internal/wiretext)
if broken=$(comm -23 sdk/api/backend.wire.txt <(echo "$wire")); [ -n "$broken" ]; then
  echo "check-modules: the wire contract (sdk/proto/backend.proto) breaks what sdk/api/backend.wire.txt records; plugins built against it would fail:" >&2
  echo "$broken" | sed 's/^/  gone or changed: /' >&2
  exit 1
fi
if added=$(comm -13 sdk/api/backend.wire.txt <(echo "$wire")); [ -n "$added" ]; then
  echo "check-modules: the wire contract grew; record it (scripts/check-modules.sh --record-api) and say so in sdk/CHANGELOG.md:" >&2
  echo "$added" | sed 's/^/  added: /' >&2
  exit 1
fi
echo "check-modules: the wire contract is the one recorded ($(wc -l <sdk/api/backend.wire.txt) facts)"

# The sdk's API as text: every addition, change and removal shows here, and in review.
apidelta=$(diff <(cd sdk && go run ./internal/apitext) sdk/api/sdk.txt | grep '^[<>]' || true)
if [ -n "$apidelta" ]; then
  echo "check-modules: the sdk's exported API differs from sdk/api/sdk.txt (< now, > recorded); record it (scripts/check-modules.sh --record-api) and say so in sdk/CHANGELOG.md:" >&2
  echo "$apidelta" >&2
  exit 1
fi

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
echo "check-modules: the sdk's API is compatible with its recorded baseline, and its text (sdk/api/sdk.txt) is the one recorded"
