//! Writes the seed corpora of the binary targets (`cargo run --example seeds`
//! from `fuzz/`): valid remote-write 1.0/2.0 and OTLP requests for the
//! fuzzer to mutate. The text targets' seeds are plain files in `corpus/`.

use comet_schema::prompb::{v1, v2};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, mode: u8, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    let mut data = vec![mode];
    data.extend_from_slice(bytes);
    fs::write(dir.join(name), data).expect("seed file");
}

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn sample(value: f64, timestamp: i64) -> v1::Sample {
    v1::Sample { value, timestamp }
}

fn main() {
    let v1_request = v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node")],
                samples: vec![
                    sample(1.0, 1_700_000_000_000),
                    sample(f64::NAN, 1_700_000_015_000),
                ],
                ..Default::default()
            },
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("code", "200"),
                ],
                samples: vec![sample(42.0, 1_700_000_000_000)],
                ..Default::default()
            },
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: v1::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    };
    let v1_bytes = v1_request.encode_to_vec();
    write("remote_write", "v1", 0, &v1_bytes);
    let snappy = snap::raw::Encoder::new()
        .compress_vec(&v1_bytes)
        .expect("snappy");
    write("remote_write", "v1_snappy", 2, &snappy);
    let v2_request = v2::Request {
        symbols: ["", "__name__", "up", "job", "node", "Help."]
            .map(String::from)
            .to_vec(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![sample(1.0, 1_700_000_000_000)],
            metadata: Some(v2::Metadata {
                r#type: 2,
                help_ref: 5,
                unit_ref: 0,
            }),
            ..Default::default()
        }],
    };
    write("remote_write", "v2", 1, &v2_request.encode_to_vec());

    // OTLP: the JSON seeds again as protobuf.
    for entry in fs::read_dir("corpus/otlp").expect("corpus/otlp") {
        let path = entry.expect("entry").path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(name) = file.strip_suffix(".json.seed") else {
            continue;
        };
        let text = fs::read(&path).expect("seed");
        let request: ExportMetricsServiceRequest =
            serde_json::from_slice(&text[1..]).expect("OTLP/JSON seed");
        write(
            "otlp",
            &format!("{name}.pb.seed"),
            0,
            &request.encode_to_vec(),
        );
    }
}
