#!/usr/bin/env bash
# Install everything svcpulse needs on a fresh Debian 12 machine (as root), idempotently:
#   - Debian packages: ClickHouse 18.16 server, ZooKeeper 3.8 (the local cluster), bcc/eBPF tooling,
#     HAProxy, nginx, docker-compose (to validate the compose files; no engine), Chromium
#   - a virtualenv at .venv with the pinned Python dependencies and the project itself
#   - the Debian `bcc` module linked into the venv, kernel headers linked for bcc
#   - Node.js (Debian's, when no node is installed) and the npm packages of the OTLP tests' Node service
# Usage: scripts/bootstrap.sh [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { echo "[bootstrap] $*"; }

APT_PACKAGES=(clickhouse-server clickhouse-client zookeeper haproxy nginx chromium chromium-driver
              bpfcc-tools python3-bpfcc libbpf-tools linux-headers-amd64 bpftool kmod iproute2
              nftables        # nftables: faults inside network namespaces (tests/ebpf)
              docker-compose)  # docker-compose: `config -q` checks the compose files offline (no engine)

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "Debian packages present"; return; fi
  if [ "$(id -u)" != 0 ]; then log "not root: cannot install ${missing[*]} (tests needing them will skip)"; return; fi
  log "installing Debian packages: ${missing[*]} (a few minutes the first time)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # clickhouse-server's postinst may try to start a service; policy-rc.d keeps it from doing so.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/svcpulse-apt.log 2>&1 \
    || { tail -30 /tmp/svcpulse-apt.log; rm -f /usr/sbin/policy-rc.d; exit 1; }
  rm -f /usr/sbin/policy-rc.d
}

link_kernel_headers() {
  # bcc compiles against /lib/modules/$(uname -r)/build; Debian ships headers for its own kernel
  # only, so point the running kernel's build/source links at the newest installed headers.
  local mod=/lib/modules/$(uname -r)
  [ -e "$mod/build/include" ] && return
  local hdr common
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1) || true
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1) || true
  [ -n "$hdr" ] && [ -n "$common" ] || return 0
  mkdir -p "$mod"; ln -sfn "$hdr" "$mod/build"; ln -sfn "$common" "$mod/source"
  log "linked $mod/build -> $hdr"
}

mount_tracefs() {
  [ -d /sys/kernel/tracing/events ] && return
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
}

install_venv() {
  local py=${SVCPULSE_PYTHON:-python3.11}
  command -v "$py" >/dev/null || py=python3
  if [ ! -x .venv/bin/python ]; then log "creating .venv with $py"; "$py" -m venv .venv; fi
  local stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
  if [ ! -f "$stamp" ]; then
    log "installing Python dependencies into .venv (chdb is ~500 MB: about a minute)"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[dev]"
    # xds-protos (dev: Envoy's messages, for the EDS checks) ships an old copy of opentelemetry-proto's
    # modules at the same paths; whichever pip installs last wins. Put the pinned opentelemetry-proto back.
    .venv/bin/pip install -q --no-deps --force-reinstall "$(grep -m1 -o 'opentelemetry-proto==[0-9.]*' pyproject.toml)"
    rm -f .venv/.installed-*; touch "$stamp"
  else
    log "Python dependencies present"
  fi
  # The bcc module is Debian's (python3-bpfcc); the PyPI package called bcc is unrelated.
  local site; site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  [ -d /usr/lib/python3/dist-packages/bcc ] && ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
  return 0
}

install_node_service() {
  # The OTLP receiver's tests run a Node.js service instrumented with the OpenTelemetry Node SDK
  # (tests/otlp/node): its pinned packages come from the npm registry (package-lock.json).
  local dir=tests/otlp/node
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" != 0 ] || [ "${1:-}" = "--no-apt" ]; then log "no node/npm: the Node.js OTLP test will skip"; return; fi
    log "installing Node.js and npm from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/tmp/svcpulse-apt.log 2>&1 \
      || { tail -30 /tmp/svcpulse-apt.log; exit 1; }
  fi
  local stamp=$dir/node_modules/.installed-$(sha1sum $dir/package-lock.json | cut -c1-12)
  if [ -f "$stamp" ]; then log "Node.js test packages present"; return; fi
  log "installing the Node.js test service's OpenTelemetry packages (npm ci, ~10 s)"
  (cd $dir && npm ci --no-audit --no-fund --loglevel=error) && touch "$stamp"
}

[ "${1:-}" = "--no-apt" ] || install_apt
if [ "$(id -u)" = 0 ]; then link_kernel_headers; mount_tracefs; fi
install_venv
install_node_service "${1:-}"
log "ready: $ROOT/.venv/bin/svcpulse"
