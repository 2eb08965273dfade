#!/usr/bin/env bash
# Fuzzes every decoder of outside input (issue 21) with cargo-fuzz
# (libFuzzer, coverage-guided) for a bounded time per target: remote-write
# 1.0/2.0 bodies, OTLP protobuf and JSON, the Prometheus text format,
# PromQL (parse and plan, label-matcher regexes included) and rule files
# (YAML, PromQL, templates). Starts from the seed corpora in fuzz/corpus
# (every crash found so far is a seed there, so it is replayed each run),
# writes what it learns to a scratch directory, and fails on a panic, an
# input slower than 30 s, or more than 2 GiB of memory; the failing input is
# left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30, all)
#
# With FUZZ_SEED set, each target's run is nearly the same sequence of
# inputs every time (libFuzzer's -seed, one process, the committed corpus;
# only corpus files of equal size may load in another order), cut by the
# time budget: a slower machine runs about a prefix of what a faster one
# runs. `make test` (and so CI) fuzzes that way, so a gate never fails on
# what nobody could reproduce; run `FUZZ_SEED=1 scripts/fuzz.sh 60` before
# landing to cover CI's inputs twice over. Without FUZZ_SEED every run
# explores anew: use that for long hunts (`scripts/fuzz.sh 600 promql`),
# and add what it finds to the corpus.
#
# cargo-fuzz 0.13.2 goes into .tools/cargo-fuzz. The targets are built
# with the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# flags) and no sanitizer: Rust's own checks catch what matters here, and
# the release build (about 9 minutes on 2 cores the first time) fuzzes
# about 50x faster than a debug one.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-30}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(remote_write otlp prometheus_text promql rule_file)
fi

VERSION=0.13.2
ROOT=.tools/cargo-fuzz
if ! "$ROOT/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "fuzz: installing cargo-fuzz $VERSION into $ROOT"
  CARGO_TARGET_DIR="$ROOT/build" cargo install cargo-fuzz --version "$VERSION" --locked \
    --root "$ROOT" --quiet
  rm -rf "$ROOT/build"
fi
export PATH="$PWD/$ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1

cd fuzz
started=$(date +%s)
echo "fuzz: building the targets"
cargo fuzz build --sanitizer none -O
echo "fuzz: built in $(( $(date +%s) - started )) s"

scratch=$(mktemp -d -t comet-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
seed=()
if [ -n "${FUZZ_SEED:-}" ]; then
  seed=(-seed="$FUZZ_SEED")
fi
failed=()
for target in "${TARGETS[@]}"; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${SECONDS_PER_TARGET} s"
  if cargo fuzz run --sanitizer none -O "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 "${seed[@]}" >"$scratch/$target.log" 2>&1; then
    { grep -E "^(Done|stat::peak_rss_mb)" "$scratch/$target.log" || true; } | tr '\n' ' '
    echo
  else
    tail -n 60 "$scratch/$target.log"
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets clean in $(( $(date +%s) - started )) s"
