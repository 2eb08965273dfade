#!/usr/bin/env bash
# Installs the real client libraries the integration tests drive, from PyPI,
# into a venv of the project's own (.otel-venv, or $COMET_TEST_OTEL_VENV):
# the official OpenTelemetry Python SDK with its OTLP gRPC and HTTP metric
# exporters. Safe to run again: it does nothing when the pinned versions are
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."

OTEL_VERSION=1.45.2
VENV=${COMET_TEST_OTEL_VENV:-.otel-venv}
PACKAGES=(
  "opentelemetry-sdk==$OTEL_VERSION"
  "opentelemetry-exporter-otlp-proto-grpc==$OTEL_VERSION"
  "opentelemetry-exporter-otlp-proto-http==$OTEL_VERSION"
)

die() { echo "install-test-clients: $*" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || die "python3 is missing (sudo apt-get install -y python3 python3-venv)"

if "$VENV/bin/python" -m pip show opentelemetry-sdk 2>/dev/null | grep -qx "Version: $OTEL_VERSION" &&
  "$VENV/bin/python" -c 'import opentelemetry.exporter.otlp.proto.grpc.metric_exporter, opentelemetry.exporter.otlp.proto.http.metric_exporter' 2>/dev/null; then
  echo "install-test-clients: OpenTelemetry SDK $OTEL_VERSION already in $VENV"
  exit 0
fi
echo "install-test-clients: creating $VENV with the OpenTelemetry SDK $OTEL_VERSION and its OTLP exporters"
"$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON; on Debian install python3-venv"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" ||
  die "pip could not install ${PACKAGES[*]} (is PyPI reachable?)"
echo "install-test-clients: ready ($VENV/bin/python)"
