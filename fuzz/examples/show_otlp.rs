//! Prints an OTLP fuzz input (first byte: 0 protobuf, 1 JSON) as Rust's
//! Debug form, to read what a finding holds.
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

fn main() {
    let path = std::env::args().nth(1).expect("a fuzz input file");
    let data = std::fs::read(path).expect("readable");
    let request: ExportMetricsServiceRequest = match data.split_first() {
        Some((0, rest)) => ExportMetricsServiceRequest::decode(rest).expect("protobuf"),
        Some((_, rest)) => serde_json::from_slice(rest).expect("OTLP/JSON"),
        None => return,
    };
    println!("{request:#?}");
}
