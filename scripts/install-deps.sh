#!/usr/bin/env bash
# Installs the programs tlsrelay's tests run for real (Debian packages), when missing:
# openssl, easy-rsa, an OpenStack Barbican and Keystone (run by scripts/*-server.sh), and
# etcd-server (the external etcd cluster of the relation tests), iproute2 and iptables
# (the network namespaces and packet loss of the partition tests), and gcc (go test
# -race needs cgo), SoftHSM2 (the token of the pkcs11 signer's tests), and the consumers
# that read a unit's files: haproxy, nginx, a JDK (keytool, and a Java service's
# handshake run from source) and OpenStack Octavia (its amphora agent, controller
# client and Barbican cert manager, run by cmd/tlsrelay/testdata/octavia_harness.py),
# promtool (Debian's prometheus) for the alert rules and dashboard in configs/, and
# adduser (the Debian package the release builds, installed by packaging/'s test).
# Needs root (or sudo) to install; does nothing when everything is present.
set -euo pipefail

# command-that-must-exist  debian-package
needs=(
  "openssl openssl"
  "/usr/share/easy-rsa/easyrsa easy-rsa"
  "curl curl"
  "/usr/lib/python3/dist-packages/barbican python3-barbican"
  "keystone-wsgi-public keystone"
  "/usr/bin/etcd etcd-server"
  "ip iproute2"
  "iptables iptables"
  "gcc gcc"
  "/usr/bin/softhsm2-util softhsm2"
  "/usr/sbin/haproxy haproxy"
  "/usr/sbin/nginx nginx-light"
  "javac default-jdk-headless"
  "/usr/lib/python3/dist-packages/octavia python3-octavia"
  "promtool prometheus"
  "adduser adduser"
)

missing=()
for pair in "${needs[@]}"; do
  read -r cmd pkg <<<"$pair"
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi
# A mirror that hiccups once should not fail a test run: each step gets three tries.
with_retries() {
  local try
  for try in 1 2 3; do
    "$@" && return 0
    echo "install-deps: '$*' failed (try $try of 3)" >&2
    sleep $((try * 5))
  done
  return 1
}

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
with_retries "${sudo[@]}" apt-get update -qq
with_retries "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
