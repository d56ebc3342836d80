#!/usr/bin/env bash
# Module hygiene: both go.mod files are tidy, and the sdk module (what a third party's
# plugin depends on) pulls none of the root module's heavy dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

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
