//! Decode path throughput: snappy + protobuf -> validated series, as the
//! remote-write receiver does it, and protobuf/JSON -> translated series as
//! the OTLP receivers do it. Run: `cargo bench -p comet-ingest`.
//! Criterion prints samples (OTLP: data points) per second as "elem/s".

use std::time::Duration;

use comet_ingest::SeriesRegistry;
use comet_ingest::otlp::state::SeriesState;
use comet_ingest::otlp::synthetic::{self, OtlpShape};
use comet_ingest::otlp::{TranslateSettings, translate};
use comet_ingest::remote_write::decode::{DecodeOptions, decode_v1, decode_v2};
use comet_schema::prompb::{v1, v2};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

// The allocator the comet binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A node_exporter-like request: `series` series of ~8 labels with
/// `samples` samples each.
fn v1_request(series: usize, samples: usize) -> v1::WriteRequest {
    let label = |n: &str, v: String| v1::Label {
        name: n.into(),
        value: v,
    };
    let timeseries = (0..series)
        .map(|i| v1::TimeSeries {
            labels: vec![
                label("__name__", format!("node_metric_{}_total", i % 50)),
                label("cpu", (i % 16).to_string()),
                label("device", format!("dev{}", i % 7)),
                label("instance", format!("host-{}.example.com:9100", i % 100)),
                label("job", "node".into()),
                label("mode", ["idle", "user", "system", "iowait"][i % 4].into()),
                label("region", "eu-west-1".into()),
                label("series", i.to_string()),
            ],
            samples: (0..samples)
                .map(|s| v1::Sample {
                    value: (i * s) as f64 * 0.5,
                    timestamp: 1_700_000_000_000 + s as i64 * 15_000,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    v1::WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

fn v2_request(series: usize) -> v2::Request {
    let mut symbols = vec![String::new()];
    let mut symbol = |s: String| -> u32 {
        match symbols.iter().position(|x| *x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s);
                (symbols.len() - 1) as u32
            }
        }
    };
    let timeseries = v1_request(series, 1)
        .timeseries
        .into_iter()
        .map(|ts| v2::TimeSeries {
            labels_refs: ts
                .labels
                .into_iter()
                .flat_map(|l| [l.name, l.value])
                .map(&mut symbol)
                .collect(),
            samples: ts
                .samples
                .iter()
                .map(|s| v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    v2::Request {
        symbols,
        timeseries,
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compress")
}

fn decode(c: &mut Criterion) {
    let options = DecodeOptions::default();
    // Steady state: the series are known, as for every scrape after the
    // first. `*_new` measures series never seen before.
    let registry = SeriesRegistry::new(1 << 30);
    let mut group = c.benchmark_group("remote_write_decode");
    for (name, series, samples) in [("v1_2000x1", 2000, 1), ("v1_500x10", 500, 10)] {
        let body = snappy(&v1_request(series, samples).encode_to_vec());
        group.throughput(Throughput::Elements((series * samples) as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_v1(&body, &options, &registry).expect("decodes"))
        });
    }
    let body = snappy(&v1_request(2000, 1).encode_to_vec());
    group.throughput(Throughput::Elements(2000));
    group.bench_function("v1_2000x1_new", |b| {
        // A small registry per iteration: every series is new to it.
        b.iter(|| decode_v1(&body, &options, &SeriesRegistry::new(4 << 20)).expect("decodes"))
    });
    let body = snappy(&v2_request(2000).encode_to_vec());
    group.throughput(Throughput::Elements(2000));
    group.bench_function("v2_2000x1", |b| {
        b.iter(|| decode_v2(&body, &options, &registry).expect("decodes"))
    });
    group.finish();
}

/// OTLP: a request of 100 gauges x 7 points x 10 attributes decoded and
/// translated (known series), as the receivers do it.
fn otlp(c: &mut Criterion) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let shape = OtlpShape {
        metrics: 100,
        points: 7,
        attributes: 10,
    };
    let request = synthetic::request(shape, "bench", 1, 1_700_000_000_000_000_000, 1);
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).expect("JSON");
    let settings = TranslateSettings::default();
    let registry = SeriesRegistry::new(1 << 30);
    let state = SeriesState::new(1 << 20, Duration::from_secs(3600));
    let mut group = c.benchmark_group("otlp_decode_translate");
    group.throughput(Throughput::Elements(shape.points_per_request() as u64));
    group.bench_function("protobuf_100x7x10", |b| {
        b.iter(|| {
            let decoded = ExportMetricsServiceRequest::decode(&protobuf[..]).expect("decodes");
            translate(&decoded, &settings, &registry, &state)
        })
    });
    group.bench_function("json_100x7x10", |b| {
        b.iter(|| {
            let decoded: ExportMetricsServiceRequest =
                serde_json::from_slice(&json).expect("decodes");
            translate(&decoded, &settings, &registry, &state)
        })
    });
    group.bench_function("translate_only_100x7x10", |b| {
        b.iter(|| translate(&request, &settings, &registry, &state))
    });
    group.finish();
}

criterion_group!(benches, decode, otlp);
criterion_main!(benches);
