#!/usr/bin/env bash
# Builds a release: static tlsrelay binaries for linux/amd64 and linux/arm64 with their
# version, revision and build time (tlsrelay version), SHA256SUMS, and a Debian package
# per architecture (nfpm, installed with `go install` when missing) holding the binary,
# the systemd unit, an example config in /etc/tlsrelay, the alert rules and dashboard,
# and a system user made on install.
#
#   scripts/release.sh [--version v1.2.3] [--arch amd64,arm64] [--out dist]
#
# The version defaults to the checkout's (git describe), v0.0.0-<commit time>-<rev>
# without a tag.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.48.0
version="" archs="amd64,arm64" out="dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --arch) archs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "release: unknown argument $1 (--version V, --arch A[,B], --out DIR)" >&2; exit 2 ;;
  esac
done
if [ -z "$version" ]; then
  version="$(git describe --tags --exact-match 2>/dev/null || true)"
  if [ -z "$version" ]; then
    version="v0.0.0-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)-$(git rev-parse --short=12 HEAD)"
  fi
fi
case "$version" in
  v[0-9]*) ;;
  *) echo "release: --version $version must look like v1.2.3" >&2; exit 2 ;;
esac
built="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
pkg=github.com/tlsrelay/tlsrelay/internal/buildinfo
mkdir -p "$out"
out="$(cd "$out" && pwd)"

nfpm="$(command -v nfpm || true)"
if [ -z "$nfpm" ]; then
  echo "release: installing nfpm $NFPM_VERSION with go install" >&2
  GOFLAGS= go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
  nfpm="$(go env GOPATH)/bin/nfpm"
fi

IFS=, read -r -a arch_list <<<"$archs"
for arch in "${arch_list[@]}"; do
  bin="$out/tlsrelay-linux-$arch"
  echo "release: building $bin ($version)" >&2
  CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -buildvcs=true \
    -ldflags "-s -w -X $pkg.version=$version -X $pkg.buildTime=$built" -o "$bin" ./cmd/tlsrelay
  # Debian versions begin with a digit; a pre-release sorts before its release (~).
  debversion="${version#v}"
  debversion="${debversion/-/\~}"
  conf="$out/nfpm-$arch.yaml"
  sed -e "s|\${TLSRELAY_VERSION}|$debversion|" -e "s|\${TLSRELAY_ARCH}|$arch|" -e "s|\${TLSRELAY_BINARY}|$bin|" packaging/nfpm.yaml > "$conf"
  "$nfpm" package --config "$conf" --packager deb --target "$out/tlsrelay_${debversion}_${arch}.deb" >&2
  rm -f "$conf"
done
(cd "$out" && sha256sum tlsrelay-linux-* tlsrelay_*.deb > SHA256SUMS)
echo "release: $version in $out:" >&2
(cd "$out" && ls -1 tlsrelay-linux-* tlsrelay_*.deb SHA256SUMS)
