#!/usr/bin/env bash
# Bytes per native histogram sample after merges, for candidate layouts of
# the `histograms` table, beside the same data as classic `le` buckets in
# `samples`. 100 series x 1000 samples (15 s apart), schema 3, 20 populated
# positive buckets with counts growing by a jittered bell shape each scrape.
#   scripts/measure_native_histograms.sh [http://127.0.0.1:8123]
set -euo pipefail
URL=${1:-${COMET_TEST_CLICKHOUSE_URL:-http://127.0.0.1:8123}}
DB=nh_measure_$$
q() { curl -sS --fail-with-body "$URL" --data-binary "$1"; }
q "CREATE DATABASE $DB"
trap 'q "DROP DATABASE IF EXISTS $DB"' EXIT

q "CREATE TABLE $DB.cells ENGINE = Memory AS
SELECT s, t, j, sum(inc) OVER (PARTITION BY s, j ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c,
       inc
FROM (SELECT s, t, j, cityHash64(s, t, j) % (1 + 2 * greatest(1, 40 - 4 * abs(toInt64(j) - 10))) AS inc
      FROM (SELECT number % 100 AS s, intDiv(number, 100) % 1000 AS t, intDiv(number, 100000) AS j
            FROM numbers(2000000)))"

# One row per histogram sample: absolute indexes and counts, count, sum.
q "CREATE TABLE $DB.h ENGINE = Memory AS
SELECT s, t,
  toInt64(1700000000000 + s * 37 + t * 15000 + cityHash64(s, t) % 5) AS ts,
  arrayMap(x -> toInt32(x.1 - 35 + s % 5), arraySort(groupArray((j, c)))) AS idx,
  arrayMap(x -> x.2, arraySort(groupArray((j, c)))) AS counts,
  sum(c) AS cnt,
  sum(c * pow(2, (toInt64(j) - 35 + s % 5) / 8) * (0.9 + (cityHash64(s, j) % 1000) / 10000)) AS total
FROM $DB.cells GROUP BY s, t"

common="metric_name LowCardinality(String), fingerprint UInt64,
  timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)), start_timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)),
  float_histogram Bool, schema Int8, reset_hint Enum8('unknown' = 0, 'reset' = 1, 'not_reset' = 2, 'gauge' = 3),
  zero_threshold Float64 CODEC(Gorilla, ZSTD(1)), sum Float64 CODEC(Gorilla, ZSTD(1)), custom_values Array(Float64) CODEC(ZSTD(1))"
tail="ENGINE = MergeTree PARTITION BY toDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')) ORDER BY (metric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms)"
declare -A layouts=(
  [f64_gorilla]="zero_count Float64 CODEC(Gorilla, ZSTD(1)), count Float64 CODEC(Gorilla, ZSTD(1)),
    positive_index Array(Int32) CODEC(Delta, ZSTD(1)), positive_count Array(Float64) CODEC(Gorilla, ZSTD(1)),
    negative_index Array(Int32) CODEC(Delta, ZSTD(1)), negative_count Array(Float64) CODEC(Gorilla, ZSTD(1))"
  [f64_zstd]="zero_count Float64 CODEC(ZSTD(1)), count Float64 CODEC(ZSTD(1)),
    positive_index Array(Int32) CODEC(ZSTD(1)), positive_count Array(Float64) CODEC(ZSTD(1)),
    negative_index Array(Int32) CODEC(ZSTD(1)), negative_count Array(Float64) CODEC(ZSTD(1))"
  [u64_delta]="zero_count UInt64 CODEC(Delta, ZSTD(1)), count UInt64 CODEC(Delta, ZSTD(1)),
    positive_index Array(Int32) CODEC(Delta, ZSTD(1)), positive_count Array(UInt64) CODEC(Delta, ZSTD(1)),
    negative_index Array(Int32) CODEC(Delta, ZSTD(1)), negative_count Array(UInt64) CODEC(Delta, ZSTD(1))"
  [u64_t64]="zero_count UInt64 CODEC(T64, ZSTD(1)), count UInt64 CODEC(T64, ZSTD(1)),
    positive_index Array(Int32) CODEC(Delta, ZSTD(1)), positive_count Array(UInt64) CODEC(T64, ZSTD(1)),
    negative_index Array(Int32) CODEC(Delta, ZSTD(1)), negative_count Array(UInt64) CODEC(T64, ZSTD(1))"
)
for name in "${!layouts[@]}"; do
  q "CREATE TABLE $DB.$name ($common, ${layouts[$name]}) $tail"
  q "INSERT INTO $DB.$name SELECT 'http_request_duration_seconds', cityHash64('h', s), ts, 0, false, 3, 'not_reset',
     pow(2, -128), total, [], 0, cnt, idx, counts, [], [] FROM $DB.h"
  q "OPTIMIZE TABLE $DB.$name FINAL"
done

# The layout of schema/src/ddl.rs HISTOGRAMS: integer and float columns.
q "CREATE TABLE $DB.chosen (metric_name LowCardinality(String), fingerprint UInt64,
  timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)), start_timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)),
  float_histogram Bool, schema Int8, reset_hint Enum8('unknown' = 0, 'reset' = 1, 'not_reset' = 2, 'gauge' = 3),
  zero_threshold Float64 CODEC(Gorilla, ZSTD(1)), zero_count UInt64 CODEC(Delta, ZSTD(1)), count UInt64 CODEC(Delta, ZSTD(1)),
  zero_count_float Float64 CODEC(ZSTD(1)), count_float Float64 CODEC(ZSTD(1)), sum Float64 CODEC(Gorilla, ZSTD(1)),
  positive_index Array(Int32) CODEC(Delta, ZSTD(1)), positive_counts Array(UInt64) CODEC(Delta, ZSTD(1)),
  positive_counts_float Array(Float64) CODEC(ZSTD(1)), negative_index Array(Int32) CODEC(Delta, ZSTD(1)),
  negative_counts Array(UInt64) CODEC(Delta, ZSTD(1)), negative_counts_float Array(Float64) CODEC(ZSTD(1)),
  custom_values Array(Float64) CODEC(ZSTD(1))) $tail"
q "INSERT INTO $DB.chosen SELECT 'http_request_duration_seconds', cityHash64('h', s), ts, 0, false, 3, 'not_reset',
   pow(2, -128), 0, cnt, 0, 0, total, idx, counts, [], [], [], [], [] FROM $DB.h"
q "OPTIMIZE TABLE $DB.chosen FINAL"

# Classic: 20 cumulative le buckets + +Inf, _count, _sum: 23 float series.
q "CREATE TABLE $DB.classic (metric_name LowCardinality(String), fingerprint UInt64,
  timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)), value Float64 CODEC(Gorilla, ZSTD(1))) $tail"
q "INSERT INTO $DB.classic
SELECT name, fp, ts, v FROM (
  SELECT ts, s, arrayJoin(arrayConcat(
      arrayMap(k -> ('http_request_duration_seconds_bucket', cityHash64('c', s, k), toFloat64(arraySum(arraySlice(counts, 1, k)))), range(1, 21)),
      [('http_request_duration_seconds_bucket', cityHash64('c', s, 99), toFloat64(cnt)),
       ('http_request_duration_seconds_count', cityHash64('n', s), toFloat64(cnt)),
       ('http_request_duration_seconds_sum', cityHash64('s', s), total)])) AS r,
    r.1 AS name, r.2 AS fp, r.3 AS v FROM $DB.h)"
q "OPTIMIZE TABLE $DB.classic FINAL"

echo "table	rows	histogram_samples	bytes_on_disk	bytes_per_histogram_sample"
q "SELECT table, sum(rows), 100000, sum(bytes_on_disk), round(sum(bytes_on_disk) / 100000, 2)
   FROM system.parts WHERE database = '$DB' AND active AND table NOT IN ('cells', 'h')
   GROUP BY table ORDER BY table FORMAT TSV"
echo
echo "per column (compressed bytes / histogram sample)"
q "SELECT table, name, round(data_compressed_bytes / 100000, 3) FROM system.columns
   WHERE database = '$DB' AND table NOT IN ('cells', 'h') AND data_compressed_bytes > 0
   ORDER BY table, name FORMAT TSV"
