#!/usr/bin/env bash
# Installs the programs tlsrelay's tests run for real (Debian packages), when missing:
# openssl, easy-rsa, an OpenStack Barbican and Keystone (run by scripts/*-server.sh), and
# etcd-server (the external etcd cluster of the relation tests), iproute2 and iptables
# (the network namespaces and packet loss of the partition tests), and gcc (go test
# -race needs cgo), SoftHSM2 (the token of the pkcs11 signer's tests), and the consumers
# that read a unit's files: haproxy, nginx, GnuTLS's client, a JDK (keytool, and a Java service's
# handshake run from source) and OpenStack Octavia (its amphora agent, controller
# client and Barbican cert manager, run by cmd/tlsrelay/testdata/octavia_harness.py),
# promtool (Debian's prometheus) for the alert rules and dashboard in configs/, and
# adduser (the Debian package the release builds, installed by packaging/'s test), and
# the Python modules those servers and harnesses import. Waits for another apt to finish.
# Needs root (or sudo) to install; does nothing when everything is present.
set -euo pipefail

# command-that-must-exist  debian-package
needs=(
  "openssl openssl"
  "/usr/share/easy-rsa/easyrsa easy-rsa"
  "curl curl"
  "gnutls-cli gnutls-bin"
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

# python-module-the-tests-import  debian-package: checked by importing them with Debian's
# python (a pyenv shim on PATH lacks them), as the test servers and the Octavia harness do.
python_needs=(
  "barbican python3-barbican"
  "keystonemiddleware.auth_token python3-keystonemiddleware"
  "paste.deploy python3-pastedeploy"
  "octavia.common.config python3-octavia"
  "oslo_config python3-oslo.config"
)

missing=()
for pair in "${needs[@]}"; do
  read -r cmd pkg <<<"$pair"
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
    missing+=("$pkg")
  fi
done
for pair in "${python_needs[@]}"; do
  read -r module pkg <<<"$pair"
  if ! /usr/bin/python3 -c "import $module" >/dev/null 2>&1 && [[ ! " ${missing[*]} " =~ " $pkg " ]]; then
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

# Another apt (unattended-upgrades on a fresh machine, a second test run) may hold the
# dpkg and lists locks for minutes: wait for it, saying so, up to ten minutes, rather
# than fail; apt itself waits on the dpkg lock as long (DPkg::Lock::Timeout).
wait_for_apt() {
  local waited=0 pid comm busy
  while :; do
    busy=""
    for pid in /proc/[0-9]*; do
      comm=$(cat "$pid/comm" 2>/dev/null) || continue
      case "$comm" in apt|apt-get|aptitude|dpkg|unattended-upgr) busy="$comm (pid ${pid#/proc/})"; break ;; esac
    done
    [ -z "$busy" ] && return 0
    if [ "$waited" -ge 600 ]; then
      echo "install-deps: $busy still holds apt after ${waited}s; trying anyway" >&2
      return 0
    fi
    [ $((waited % 30)) -eq 0 ] && echo "install-deps: waiting for $busy to finish (${waited}s so far)" >&2
    sleep 5
    waited=$((waited + 5))
  done
}
apt_opts=(-o DPkg::Lock::Timeout=600)

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
wait_for_apt
with_retries "${sudo[@]}" apt-get "${apt_opts[@]}" update -qq
wait_for_apt
with_retries "${sudo[@]}" apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
