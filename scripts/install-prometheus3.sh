#!/usr/bin/env bash
# Installs the reference Prometheus the tests compare Comet with:
# Prometheus 3.5 LTS, from Debian sid's `prometheus` package (a static
# binary), unpacked into .tools/prometheus-3 (or $COMET_TEST_PROMETHEUS_ROOT)
# and never installed: a private apt state (its own source list, package
# lists and cache under .tools) fetches the .deb, so the system's packages
# and apt state are not touched and no service is started.
#
# Why not Debian bookworm's 2.42 (which scripts/install-peers.sh still
# installs for promtool): Comet follows Prometheus 3's semantics (left-open
# range windows, 3.x rate extrapolation, UTF-8 names), and comparing with
# 2.x flips results whenever a window edge lands on a sample.
# Safe to run again: it does nothing when the binary is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

WANT=3.5.
ROOT=${COMET_TEST_PROMETHEUS_ROOT:-.tools/prometheus-3}
BIN="$ROOT/usr/bin/prometheus"

die() { echo "install-prometheus3: $*" >&2; exit 1; }

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | head -n1 | grep -q "version $WANT"; then
  echo "install-prometheus3: $("$BIN" --version | head -n1) already in $BIN"
  exit 0
fi
started=$(date +%s)
# shellcheck source=scripts/private-apt.sh
. scripts/private-apt.sh
private_apt sid

echo "install-prometheus3: fetching Debian sid's prometheus package from $mirror (private apt state)"
apt-get "${apt_private[@]}" -q update >"$state/update.log" 2>&1 || {
  tail -n 20 "$state/update.log" >&2
  die "apt-get update of sid failed"
}
version=$(apt-cache "${apt_private[@]}" policy prometheus | awk '/Candidate:/ {print $2}')
case "$version" in
  3.5.*) ;;
  *) die "Debian sid's prometheus is $version, not 3.5 LTS; set COMET_TEST_PROMETHEUS to a Prometheus 3.5 binary" ;;
esac
(cd "$state/download" && apt-get "${apt_private[@]}" -q download "prometheus=$version" >"$state/download.log" 2>&1) || {
  tail -n 20 "$state/download.log" >&2
  die "apt-get download prometheus=$version failed"
}
rm -rf "$ROOT"
mkdir -p "$ROOT"
dpkg-deb -x "$state"/download/prometheus_*.deb "$ROOT"
"$BIN" --version 2>/dev/null | head -n1 | grep -q "version $WANT" || die "$BIN does not run or is not $WANT"
echo "install-prometheus3: ready ($("$BIN" --version | head -n1), $BIN, $(($(date +%s) - started)) s)"
