#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian machine.
# Idempotent: a second run installs nothing.
set -euo pipefail

apt_pkgs=()
command -v gcc >/dev/null 2>&1 || apt_pkgs+=(gcc)
command -v python3 >/dev/null 2>&1 || apt_pkgs+=(python3)
command -v readelf >/dev/null 2>&1 || apt_pkgs+=(binutils)   # platform-freebsd/check-relocs.sh
# The namespace network (ip netns, veth, tuntap), captures of the demo's veths, and the
# unmodified server the relay end-to-end test replicates (redis-server + redis-benchmark).
command -v ip >/dev/null 2>&1 || apt_pkgs+=(iproute2)
command -v tcpdump >/dev/null 2>&1 || apt_pkgs+=(tcpdump)
command -v redis-server >/dev/null 2>&1 || apt_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || apt_pkgs+=(redis-tools)
command -v nc >/dev/null 2>&1 || apt_pkgs+=(netcat-openbsd)
command -v ethtool >/dev/null 2>&1 || apt_pkgs+=(ethtool)   # hydranet bench path: offloads on/off
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    echo "setup: installing ${apt_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}"
fi

# The no_std build of the core is checked for the freestanding target; the FreeBSD backend of
# the syscalls crate is type-checked for FreeBSD.
installed_targets=$(rustup target list --installed)
for t in x86_64-unknown-none x86_64-unknown-freebsd; do
    grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
