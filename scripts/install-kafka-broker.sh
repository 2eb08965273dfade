#!/usr/bin/env bash
# Installs the Kafka-protocol broker the Kafka tests run against: tansu
# 0.6.0 from crates.io, built with its SQLite storage engine (`libsql`), the
# only engine of 0.6.0 that keeps messages across a restart and resumes
# consumers mid-batch correctly. A debug build (about 8 minutes on 2 cores;
# release takes about 20) into .tools/tansu-0.6.0, or $COMET_TEST_TANSU_ROOT.
# Safe to run again: it does nothing when the binary is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.6.0
ROOT=${COMET_TEST_TANSU_ROOT:-.tools/tansu-$VERSION}
BIN="$ROOT/bin/tansu"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "install-kafka-broker: tansu $VERSION already in $BIN"
  exit 0
fi
echo "install-kafka-broker: building tansu $VERSION with the SQLite engine into $ROOT (several minutes)"
started=$(date +%s)
# Its own target directory, so the project's builds are not invalidated.
CARGO_TARGET_DIR="$ROOT/build" cargo install tansu --version "$VERSION" --locked \
  --features libsql --debug --root "$ROOT" --quiet
rm -rf "$ROOT/build"
"$BIN" --version >/dev/null 2>&1 || { echo "install-kafka-broker: $BIN does not run" >&2; exit 1; }
echo "install-kafka-broker: ready ($BIN, $(( $(date +%s) - started )) s)"
