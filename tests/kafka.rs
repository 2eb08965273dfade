//! The Kafka source against a real Kafka-protocol broker (tansu 0.6.0 on
//! SQLite, built by `scripts/install-kafka-broker.sh`) and a real
//! ClickHouse: exactly-once totals across a `kill -9`, a consumer leaving
//! its group, and a ClickHouse outage, and poison messages in the
//! dead-letter topic. Every wait is bounded.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use comet_schema::prompb::v1;
use common::peers::PeerProcess;
use common::{CometProcess, metric_value, serve_database, unique_database};
use futures_util::future::join_all;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const WAIT: Duration = Duration::from_secs(120);

/// The broker binary: `$COMET_TEST_TANSU`, else where
/// `scripts/install-kafka-broker.sh` puts it (`$COMET_TEST_TANSU_ROOT`, by
/// default `.tools/tansu-0.6.0`).
fn tansu() -> PathBuf {
    let path = std::env::var_os("COMET_TEST_TANSU").map_or_else(
        || {
            std::env::var_os("COMET_TEST_TANSU_ROOT")
                .map_or_else(
                    || common::workspace_dir().join(".tools/tansu-0.6.0"),
                    PathBuf::from,
                )
                .join("bin/tansu")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-kafka-broker.sh",
        path.display()
    );
    path
}

/// A tansu broker on a free loopback port, its messages in SQLite.
struct Broker {
    peer: PeerProcess,
}

impl Broker {
    fn start() -> Self {
        let program = tansu();
        let mut peer = PeerProcess::spawn("tansu", &program.to_string_lossy(), |_, port| {
            let url = format!("tcp://127.0.0.1:{port}");
            vec![
                "broker".into(),
                "--listener-url".into(),
                url.clone(),
                "--advertised-listener-url".into(),
                url,
                // Relative to the broker's own directory.
                "--storage-engine".into(),
                "sqlite://tansu.db".into(),
            ]
        });
        peer.wait_listening(Duration::from_secs(60));
        Self { peer }
    }

    fn address(&self) -> String {
        self.peer.address()
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .arg("--broker")
            .arg(format!("tcp://{}", self.address()))
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "creating topic {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A remote-write 1.0 message: `series` series of `metric`, one sample
/// each at `base_ms + index` seconds with value `index`.
fn remote_write_message(metric: &str, series: usize, index: u64, base_ms: i64) -> Vec<u8> {
    let timeseries = (0..series)
        .map(|s| v1::TimeSeries {
            labels: vec![
                v1::Label {
                    name: "__name__".into(),
                    value: metric.into(),
                },
                v1::Label {
                    name: "series".into(),
                    value: s.to_string(),
                },
            ],
            samples: vec![v1::Sample {
                value: index as f64,
                timestamp: base_ms + index as i64 * 1000,
            }],
            ..Default::default()
        })
        .collect();
    let request = v1::WriteRequest {
        timeseries,
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

/// Produces messages `range` of `metric` round-robin over `partitions`
/// and waits for every acknowledgement.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    metric: &str,
    series: usize,
    range: std::ops::Range<u64>,
    base_ms: i64,
) {
    let indexes: Vec<u64> = range.collect();
    for chunk in indexes.chunks(500) {
        let sends = chunk.iter().map(|&i| {
            let payload = remote_write_message(metric, series, i, base_ms);
            async move {
                let record: FutureRecord<'_, (), Vec<u8>> = FutureRecord::to(topic)
                    .partition((i % partitions as u64) as i32)
                    .payload(&payload);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produce");
            }
        });
        join_all(sends).await;
    }
}

async fn clickhouse_text(url: &str, sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(url)
        .body(sql.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("ClickHouse request");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{sql}: {status} {body}");
    body.trim().to_string()
}

/// Sample rows of `metric` in `database`, duplicates included.
async fn stored(url: &str, database: &str, metric: &str) -> u64 {
    clickhouse_text(
        url,
        &format!("SELECT count() FROM {database}.samples WHERE metric_name = '{metric}'"),
    )
    .await
    .parse()
    .unwrap()
}

/// (series, timestamp) pairs stored more than once.
async fn doubled(url: &str, database: &str, metric: &str) -> u64 {
    clickhouse_text(
        url,
        &format!(
            "SELECT count() FROM (SELECT fingerprint, timestamp_ms FROM {database}.samples \
             WHERE metric_name = '{metric}' GROUP BY fingerprint, timestamp_ms HAVING count() > 1)"
        ),
    )
    .await
    .parse()
    .unwrap()
}

/// Waits until exactly `expected` rows are stored, then makes sure no more
/// arrive, and that none is doubled.
async fn assert_exactly(
    url: &str,
    database: &str,
    metric: &str,
    expected: u64,
    comets: &[&CometProcess],
) {
    let started = Instant::now();
    loop {
        let n = stored(url, database, metric).await;
        if n >= expected {
            break;
        }
        if started.elapsed() > WAIT {
            let logs: Vec<String> = comets.iter().map(|c| c.log_text()).collect();
            panic!(
                "{n} of {expected} samples after {WAIT:?}\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = stored(url, database, metric).await;
    if n != expected {
        // What was planned, and what each process said, to find the batch.
        let ledger = clickhouse_text(
            url,
            &format!(
                "SELECT partition, first_offset, groupArray(last_offset), groupArray(planned_at) \
                 FROM {database}.kafka_batches GROUP BY partition, first_offset \
                 ORDER BY partition, first_offset FORMAT TSV"
            ),
        )
        .await;
        let logs: Vec<String> = comets.iter().map(|c| c.log_text()).collect();
        panic!(
            "samples stored: {n}, expected {expected}\n--- ledger:\n{ledger}\n--- logs:\n{}",
            logs.join("\n----\n")
        );
    }
    assert_eq!(
        doubled(url, database, metric).await,
        0,
        "samples stored twice"
    );
}

/// Sum of every series of `name` on /metrics.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the sum of `name` on `comet`'s /metrics satisfies `ok`.
async fn wait_metric(comet: &CometProcess, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let value = metric_sum(&comet.metrics_text().await, name);
        if ok(value) {
            return value;
        }
        assert!(
            started.elapsed() < WAIT,
            "{name} = {value} after {WAIT:?}\n{}",
            comet.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn kafka_args<'a>(brokers: &'a str, topic: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "--kafka-brokers",
        brokers,
        "--kafka-topics",
        topic,
        "--kafka-group-id",
        group,
        "--kafka-commit-interval",
        "200ms",
        "--kafka-librdkafka",
        "session.timeout.ms=6000,heartbeat.interval.ms=500,topic.metadata.refresh.interval.ms=1000",
    ]
}

fn serve_kafka(database: &str, kafka: &[&str], extra: &[&str]) -> CometProcess {
    let mut args: Vec<&str> = kafka.to_vec();
    args.extend_from_slice(extra);
    serve_database(database, &args)
}

/// [`serve_kafka`] on the ClickHouse at `url`.
fn serve_kafka_on(url: &str, database: &str, kafka: &[&str], extra: &[&str]) -> CometProcess {
    let mut args = vec![
        "serve",
        "--clickhouse-url",
        url,
        "--clickhouse-database",
        database,
    ];
    args.extend_from_slice(kafka);
    args.extend_from_slice(extra);
    CometProcess::spawn(&args)
}

/// (a) `kill -9` mid-stream, restart: every sample stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_and_doubles_nothing() {
    let url = common::clickhouse_url();
    kill_9_mid_stream("crash", 6000, &url, &url, &[]).await;
}

/// (a) on a replicated, sharded cluster: the restarted Comet talks to a
/// node of the other shard, and the exactly-once ledger (replicated
/// tables read through Distributed ones) still stores every sample once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_on_a_cluster_loses_and_doubles_nothing() {
    let urls = common::cluster::cluster_urls();
    let second = &urls[common::cluster::REPLICAS];
    // Fewer messages: each small batch waits for both replicas of a shard.
    kill_9_mid_stream(
        "crash_cluster",
        2000,
        &urls[0],
        second,
        &["--clickhouse-cluster", "comet"],
    )
    .await;
}

/// Produces `messages` to topic `name`, kills a consuming Comet (on `first_url`)
/// mid-stream and starts another (on `second_url`); checks every sample is
/// stored once.
async fn kill_9_mid_stream(
    name: &str,
    messages: u64,
    first_url: &str,
    second_url: &str,
    extra: &[&str],
) {
    const SERIES: usize = 20;
    let metric = format!("kafka_{name}");
    let broker = Broker::start();
    broker.create_topic(name, 4);
    let base = now_ms() - 3_600_000;
    produce(
        &broker.producer(),
        name,
        4,
        &metric,
        SERIES,
        0..messages,
        base,
    )
    .await;
    let database = unique_database(&format!("kafka_{name}"));
    let brokers = broker.address();
    let group = format!("{name}-group");
    let kafka = kafka_args(&brokers, name, &group);
    // Small batches, so many are in flight when the process dies.
    let mut flags = vec![
        "--kafka-batch-max-messages",
        "20",
        "--kafka-batch-linger",
        "50ms",
    ];
    flags.extend_from_slice(extra);
    let url = first_url;
    let mut first = serve_kafka_on(first_url, &database, &kafka, &flags);
    first.wait_ready(WAIT).await;
    let total = messages * SERIES as u64;
    let started = Instant::now();
    let at_kill = loop {
        let n = stored(url, &database, &metric).await;
        if n >= total / 5 {
            break n;
        }
        assert!(
            started.elapsed() < WAIT,
            "only {n} samples:\n{}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.child.kill().expect("kill -9");
    first.child.wait().expect("killed");
    assert!(
        at_kill < total,
        "all {total} samples were in before the kill; nothing tested"
    );

    let second = serve_kafka_on(second_url, &database, &kafka, &flags);
    assert_exactly(url, &database, &metric, total, &[&first, &second]).await;
    // Offsets are committed up to the end of every partition.
    wait_metric(&second, "comet_kafka_committed_offset", |v| {
        v == messages as f64
    })
    .await;
    let m = second.metrics_text().await;
    assert_eq!(metric_sum(&m, "comet_kafka_dlq_messages_total"), 0.0);
}

/// (b) Two consumers in one group; one leaves mid-stream, the other takes
/// its partitions; the totals are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_leaving_hands_over_its_partitions() {
    let url = common::clickhouse_url();
    hand_over("shared", 4000, &url, &url, &[]).await;
}

/// (b) on a replicated, sharded cluster, the two Comets on nodes of
/// different shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_leaving_hands_over_its_partitions_on_a_cluster() {
    let urls = common::cluster::cluster_urls();
    let other = &urls[common::cluster::REPLICAS];
    // Fewer messages: each batch waits for both replicas of a shard.
    hand_over(
        "shared_cluster",
        1600,
        other,
        &urls[0],
        &["--clickhouse-cluster", "comet"],
    )
    .await;
}

/// Two Comets consume topic `name` in one group (the leaving one on
/// `leaving_url`, the staying one on `staying_url`); the first leaves while
/// `messages` are produced; every sample is stored once.
async fn hand_over(
    name: &str,
    messages: u64,
    leaving_url: &str,
    staying_url: &str,
    extra: &[&str],
) {
    const SERIES: usize = 10;
    let metric = format!("kafka_{name}");
    let broker = Broker::start();
    broker.create_topic(name, 4);
    let database = unique_database(&format!("kafka_{name}"));
    let brokers = broker.address();
    let group = format!("{name}-group");
    let kafka = kafka_args(&brokers, name, &group);
    let url = staying_url;
    let mut leaving = serve_kafka_on(leaving_url, &database, &kafka, extra);
    leaving.wait_ready(WAIT).await;
    let mut staying = serve_kafka_on(staying_url, &database, &kafka, extra);
    staying.wait_ready(WAIT).await;
    // Both get partitions once the group has rebalanced.
    wait_metric(&staying, "comet_kafka_committed_offset", |_| true).await;
    let started = Instant::now();
    loop {
        let a = metric_sum(
            &leaving.metrics_text().await,
            "comet_kafka_rebalance_partitions_total",
        );
        let b = metric_sum(
            &staying.metrics_text().await,
            "comet_kafka_rebalance_partitions_total",
        );
        if a > 0.0 && b > 0.0 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "group did not rebalance:\n{}",
            staying.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let base = now_ms() - 3_600_000;
    let producer = broker.producer();
    // Produced over a few seconds while the first consumer leaves.
    let produced = async {
        for step in 0..10 {
            let from = step * messages / 10;
            produce(
                &producer,
                name,
                4,
                &metric,
                SERIES,
                from..from + messages / 10,
                base,
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let leave = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        leaving.terminate().await
    };
    let ((), status) = tokio::join!(produced, leave);
    assert!(
        status.success(),
        "leaving consumer: {status}\n{}",
        leaving.log_text()
    );
    assert_exactly(
        url,
        &database,
        &metric,
        messages * SERIES as u64,
        &[&staying, &leaving],
    )
    .await;
    // The one that stayed owns every partition: one more message on each
    // is consumed and committed by it (the leaver may have committed its
    // partitions to their end before leaving).
    produce(
        &producer,
        name,
        4,
        &metric,
        SERIES,
        messages..messages + 4,
        base,
    )
    .await;
    assert_exactly(
        url,
        &database,
        &metric,
        (messages + 4) * SERIES as u64,
        &[&staying, &leaving],
    )
    .await;
    wait_metric(&staying, "comet_kafka_committed_offset", |v| {
        v == (messages + 4) as f64
    })
    .await;
}

/// (c) ClickHouse unavailable for a while: partitions pause, nothing goes
/// to the dead-letter topic, everything arrives once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_pauses_and_loses_nothing() {
    const SERIES: usize = 10;
    let broker = Broker::start();
    broker.create_topic("outage", 2);
    broker.create_topic("outage-dlq", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, tcp_port) = (common::free_port(), common::free_port());
    let (mut server, url) = common::spawn_clickhouse_on(dir.path(), http_port, tcp_port);
    let database = unique_database("kafka_outage");
    let brokers = broker.address();
    let mut args = vec![
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        &database,
    ];
    args.extend(kafka_args(&brokers, "outage", "outage-group"));
    args.extend([
        "--kafka-dlq-topic",
        "outage-dlq",
        // A few messages' payloads: the byte bound pauses the partitions.
        "--kafka-queue-bytes",
        "1KiB",
        "--kafka-workers-per-partition",
        "1",
        "--kafka-batch-max-messages",
        "10",
        "--clickhouse-max-retries",
        "1",
        "--clickhouse-connect-timeout",
        "1s",
        "--clickhouse-query-timeout",
        "5s",
    ]);
    let mut comet = CometProcess::spawn(&args);
    comet.wait_ready(WAIT).await;
    let base = now_ms() - 3_600_000;
    let producer = broker.producer();
    produce(&producer, "outage", 2, "kafka_outage", SERIES, 0..200, base).await;
    assert_exactly(
        &url,
        &database,
        "kafka_outage",
        200 * SERIES as u64,
        &[&comet],
    )
    .await;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    server.wait().expect("ClickHouse exits");
    produce(
        &producer,
        "outage",
        2,
        "kafka_outage",
        SERIES,
        200..1000,
        base,
    )
    .await;
    // The queues fill up and the partitions are paused, not buffered: each
    // queue holds at most its 1 KiB (or a single larger message) while
    // the other 800 messages wait in the broker.
    wait_metric(&comet, "comet_kafka_partition_paused", |v| v >= 1.0).await;
    wait_metric(&comet, "comet_kafka_insert_retries_total", |v| v >= 1.0).await;
    let queued = wait_metric(&comet, "comet_kafka_queued_bytes", |v| v > 0.0).await;
    assert!(queued <= 2.0 * (1024.0 + 4096.0), "{queued} bytes queued");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = comet.metrics_text().await;
    assert_eq!(metric_sum(&m, "comet_kafka_dlq_messages_total"), 0.0, "{m}");
    // Nothing is committed past what is stored.
    assert!(
        metric_sum(&m, "comet_kafka_committed_offset") <= 200.0,
        "{m}"
    );

    let (mut server, url_again) = common::spawn_clickhouse_on(dir.path(), http_port, tcp_port);
    assert_eq!(url_again, url);
    assert_exactly(
        &url,
        &database,
        "kafka_outage",
        1000 * SERIES as u64,
        &[&comet],
    )
    .await;
    wait_metric(&comet, "comet_kafka_committed_offset", |v| v == 1000.0).await;
    wait_metric(&comet, "comet_kafka_partition_paused", |v| v == 0.0).await;
    wait_metric(&comet, "comet_kafka_queued_bytes", |v| v == 0.0).await;
    let m = comet.metrics_text().await;
    assert_eq!(metric_sum(&m, "comet_kafka_dlq_messages_total"), 0.0);
    assert_eq!(
        dead_letters(&broker, "outage-dlq", 0, Duration::from_secs(3))
            .await
            .len(),
        0
    );
    comet.terminate().await;
    let _ = server.kill();
}

/// What the dead-letter topic holds: (headers, payload) per message.
async fn dead_letters(
    broker: &Broker,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<(Vec<(String, String)>, Vec<u8>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", format!("dlq-reader-{}", now_ms()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && (expected == 0 || out.len() < expected) {
        let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        else {
            continue;
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((headers, message.payload().unwrap_or_default().to_vec()));
    }
    out
}

fn otlp_gauge(name: &str, value: f64, time_ms: i64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("kafka-test".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: (time_ms as u64) * 1_000_000,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// (d) Every format is read; poison messages land in the dead-letter topic
/// with the error and their origin in headers, and count as processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_and_poison_messages() {
    let broker = Broker::start();
    broker.create_topic("mixed", 1);
    broker.create_topic("mixed-dlq", 1);
    let database = unique_database("kafka_poison");
    let brokers = broker.address();
    let mut kafka = kafka_args(&brokers, "mixed", "mixed-group");
    kafka.extend(["--kafka-dlq-topic", "mixed-dlq"]);
    let comet = serve_kafka(&database, &kafka, &[]);
    let t = now_ms() - 60_000;
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"kafka-test"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"kafka_formats_otlp_json","gauge":{{"dataPoints":[{{"asDouble":7,"timeUnixNano":"{}"}}]}}}}]}}]}}]}}"#,
        t * 1_000_000
    );
    let messages: Vec<(Option<&str>, Vec<u8>)> = vec![
        (None, remote_write_message("kafka_formats_rw", 3, 0, t)),
        (None, b"not snappy at all".to_vec()),
        (
            Some("prometheus-text"),
            format!("# TYPE kafka_formats_text gauge\nkafka_formats_text{{a=\"1\"}} 5 {t}\n")
                .into_bytes(),
        ),
        (Some("prometheus-text"), b"broken{ 1".to_vec()),
        (Some("otlp-json"), json.into_bytes()),
        (
            Some("otlp-proto"),
            otlp_gauge("kafka_formats_otlp_proto", 9.0, t).encode_to_vec(),
        ),
        (Some("bogus"), b"whatever".to_vec()),
        (None, Vec::new()),
    ];
    let producer = broker.producer();
    for (format, payload) in &messages {
        let mut record: FutureRecord<'_, (), Vec<u8>> =
            FutureRecord::to("mixed").partition(0).payload(payload);
        if let Some(format) = format {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "comet-format",
                value: Some(*format),
            }));
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let mut comet = comet;
    comet.wait_ready(WAIT).await;
    // All eight are processed: the offset moves past the poison too.
    wait_metric(&comet, "comet_kafka_committed_offset", |v| v == 8.0).await;
    let url = common::clickhouse_url();
    for (metric, rows) in [
        ("kafka_formats_rw", 3),
        ("kafka_formats_text", 1),
        ("kafka_formats_otlp_json", 1),
        ("kafka_formats_otlp_proto", 1),
    ] {
        assert_eq!(stored(&url, &database, metric).await, rows, "{metric}");
    }
    let query = |q: &str| {
        let url = comet.url("/api/v1/query");
        let q = q.to_string();
        async move {
            let body: serde_json::Value = reqwest::Client::new()
                .get(url)
                .query(&[("query", q.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        }
    };
    assert_eq!(
        query("kafka_formats_text{a=\"1\"}").await.as_deref(),
        Some("5")
    );
    assert_eq!(
        query("kafka_formats_otlp_json{job=\"kafka-test\"}")
            .await
            .as_deref(),
        Some("7")
    );
    assert_eq!(
        query("kafka_formats_otlp_proto").await.as_deref(),
        Some("9")
    );

    let mut letters = dead_letters(&broker, "mixed-dlq", 4, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    // Decoded side by side, so dead-lettered in any order.
    let offset_of = |headers: &[(String, String)]| {
        headers
            .iter()
            .find(|(k, _)| k == "comet-source-offset")
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    letters.sort_by_key(|(headers, _)| offset_of(headers));
    let expected = [
        (1, "invalid_snappy"),
        (3, "invalid_text"),
        (6, "unknown_format"),
        (7, "empty"),
    ];
    for ((headers, payload), (offset, reason)) in letters.iter().zip(expected) {
        let header = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {key} header in {headers:?}"))
        };
        assert_eq!(header("comet-source-topic"), "mixed");
        assert_eq!(header("comet-source-partition"), "0");
        assert_eq!(header("comet-source-offset"), offset.to_string());
        assert_eq!(header("comet-error-reason"), reason);
        assert!(!header("comet-error").is_empty());
        let failed_at: i64 = header("comet-failed-at-ms").parse().unwrap();
        assert!((now_ms() - failed_at).abs() < 300_000, "{failed_at}");
        assert_eq!(payload, &messages[offset].1, "payload kept");
    }
    // The original format header travels with the dead letter.
    assert!(
        letters[1]
            .0
            .iter()
            .any(|(k, v)| k == "comet-format" && v == "prometheus-text")
    );
    let m = comet.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "comet_kafka_dlq_messages_total{partition=\"0\",topic=\"mixed\"}"
        ),
        4.0,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "comet_kafka_decode_errors_total"), 4.0);
    assert_eq!(metric_sum(&m, "comet_kafka_messages_total"), 8.0);
}
