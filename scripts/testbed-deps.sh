#!/usr/bin/env bash
# Debian packages of the multi-site testbed and the XRootD tests: the XRootD server and client
# tools (xrootd-server, xrootd-client), nftables (the WAN delay redirect) and iproute2 (ip, tc).
# Idempotent: installs only what is missing; needs root and apt-get. Exit 0 when all is there.
set -uo pipefail

need=()
command -v xrootd >/dev/null 2>&1 || need+=(xrootd-server)
command -v xrdcp >/dev/null 2>&1 || need+=(xrootd-client)
command -v nft >/dev/null 2>&1 || need+=(nftables)
{ command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; } || need+=(iproute2)
[ "${#need[@]}" = 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "testbed-deps: missing ${need[*]}; install them as root with apt-get" >&2
    exit 1
fi
echo "testbed-deps: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
