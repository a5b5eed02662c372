#!/usr/bin/env bash
# Prometheus's promtool for the monitoring tests (tests/oms/test_monitoring_files.py): checks
# deploy/monitoring/prometheus/ and runs its alert unit tests. Debian's `prometheus` package
# ships it, but installing that package also installs and starts a Prometheus server; so the
# package is only downloaded and promtool alone unpacked into /usr/local/bin. Idempotent;
# needs root and apt-get. Exit 0 when promtool is there.
set -uo pipefail

command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "monitoring-deps: promtool missing; run this script as root with apt-get" >&2
    exit 1
fi
echo "monitoring-deps: unpacking promtool from Debian's prometheus package" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
cd "$tmp" || exit 1
# apt-get download works on the cached package lists; refresh them if it finds nothing.
apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update -q && apt-get download prometheus; } || exit 1
dpkg-deb -x prometheus_*.deb unpacked || exit 1
install -m 0755 unpacked/usr/bin/promtool /usr/local/bin/promtool || exit 1
promtool --version | head -1
