#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: setup, formatting, lints,
# then every test against one real ClickHouse server started for the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/install-peers.sh
scripts/install-prometheus3.sh
scripts/install-test-clients.sh
scripts/install-kafka-broker.sh
scripts/install-zookeeper.sh

echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test: building"
cargo build --workspace --all-targets --locked

# One real ClickHouse for the whole run; each test makes its own database.
run_dir=$(mktemp -d -t comet-test-XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
target/debug/comet clickhouse \
  --data-dir "$run_dir" \
  --managed-clickhouse-http-port "$(free_port)" \
  --managed-clickhouse-tcp-port "$(free_port)" \
  --log-level warn >"$run_dir/url" 2>"$run_dir/clickhouse.log" &
ch_pid=$!
cleanup() {
  kill -TERM "$ch_pid" 2>/dev/null || true
  wait "$ch_pid" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  [ -s "$run_dir/url" ] && break
  kill -0 "$ch_pid" 2>/dev/null || { cat "$run_dir/clickhouse.log" >&2; echo "test: the test ClickHouse did not start" >&2; exit 1; }
  sleep 0.2
done
COMET_TEST_CLICKHOUSE_URL=$(head -n1 "$run_dir/url")
export COMET_TEST_CLICKHOUSE_URL
echo "test: ClickHouse for this run at $COMET_TEST_CLICKHOUSE_URL"

cargo test --workspace --all-targets --locked "$@"

# The upstream PromQL test suite, when its scripts are present: every file
# through the real ingest path and engine, held to a baseline that only
# ever rises (query/promqltest.baseline).
promqltest_dir=${COMET_PROMQLTEST_DIR:-../shared/promqltest}
if compgen -G "$promqltest_dir/*.test" >/dev/null; then
  echo "test: comet promqltest $promqltest_dir"
  target/debug/comet promqltest --log-level warn \
    --clickhouse-url "$COMET_TEST_CLICKHOUSE_URL" \
    --baseline query/promqltest.baseline \
    "$promqltest_dir"/*.test
else
  echo "test: no PromQL test scripts in $promqltest_dir; comet promqltest skipped"
fi

# Every decoder of outside input under coverage-guided fuzzing, 30 s per
# target; a crash, a slow input or a memory blow-up fails the run. The
# seed is fixed, so this run's inputs are ones a developer can run first.
echo "test: FUZZ_SEED=1 scripts/fuzz.sh 30"
FUZZ_SEED=1 scripts/fuzz.sh 30
