#!/usr/bin/env bash
# Prepares what Comet needs on a fresh Debian machine: the Python venv with
# chdb (the managed ClickHouse server) and checks for the Rust toolchain.
# Safe to run again: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

CHDB_VERSION=3.7.2
VENV=${COMET_MANAGED_CLICKHOUSE_VENV:-.chdb-venv}

die() { echo "setup: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 ||
  die "cargo is missing; install Rust from https://rustup.rs and run this again"

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 ||
  die "python3 is missing; the managed ClickHouse runs from the chdb Python wheel. Install it (sudo apt-get install -y python3 python3-venv) or run Comet with --clickhouse-url pointing at your own ClickHouse"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' ||
  die "$("$PYTHON" --version 2>&1) is too old; chdb needs Python 3.8 or newer"

lib=$(ls "$VENV"/lib/python3*/site-packages/chdb/_chdb.abi3.so 2>/dev/null | head -n1 || true)
# (sed reads pip's whole output: `grep -q` would stop early, and pipefail
# would count pip's broken pipe as a missing chdb.)
installed=$("$VENV/bin/python" -m pip show chdb 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ -n "$lib" ] && [ "$installed" = "$CHDB_VERSION" ]; then
  echo "setup: chdb $CHDB_VERSION already in $VENV"
else
  echo "setup: creating $VENV with chdb $CHDB_VERSION (downloads about 250 MB)"
  "$PYTHON" -m venv "$VENV" ||
    die "cannot create a venv with $PYTHON; on Debian install python3-venv"
  # Only the wheel's server library is used: skip pandas/pyarrow.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "chdb==$CHDB_VERSION"
  lib=$(ls "$VENV"/lib/python3*/site-packages/chdb/_chdb.abi3.so 2>/dev/null | head -n1 || true)
  [ -n "$lib" ] || die "chdb installed but $VENV has no chdb/_chdb.abi3.so"
fi
echo "setup: ready (managed ClickHouse library: $lib)"
