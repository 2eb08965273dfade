//! `comet bench kafka`: fills a topic with remote-write messages, then
//! measures how fast a Comet consuming it drains the topic with commit
//! after insert: messages/s and samples/s (from Comet's committed offsets),
//! consumer lag over time, and CPU seconds per million samples.
//!
//! Between the fill and Comet's drain, a bare librdkafka consumer (no
//! decoding, no storing, no commits) reads the same messages: the broker's
//! and librdkafka's own limit, which Comet's drain is reported against.
//!
//! Start Comet (with `--kafka-topics` set to the bench topic) when the bench
//! says it waits for it, to measure a pure drain; started earlier, it is
//! bound by the producer and shares the machine with the bare consumer.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::bench::{RemoteWriteShape, encode_requests, fetch_text};

#[derive(Debug, Clone, Args)]
pub struct BenchKafkaArgs {
    /// Kafka bootstrap brokers
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to fill (created with --partitions when missing)
    #[arg(long, default_value = "comet-bench")]
    pub topic: String,
    /// Partitions of a topic the bench creates
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Messages to produce
    #[arg(long, default_value_t = 50_000)]
    pub messages: usize,
    /// Samples (series) per message: the message size
    #[arg(long, default_value_t = 100)]
    pub samples_per_message: usize,
    /// Distinct series across the messages
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Comet's /metrics, where its committed offsets, lag and CPU are read
    #[arg(long, default_value = "http://127.0.0.1:9090/metrics")]
    pub metrics_url: String,
    /// Extra process ids whose CPU time counts as Comet's (its ClickHouse)
    #[arg(long = "cpu-pid", value_name = "PID")]
    pub cpu_pids: Vec<u32>,
    /// Give up waiting for the drain after this long
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Metric name prefix of the generated series
    #[arg(long, default_value = "comet_kafka_bench")]
    pub prefix: String,
}

pub async fn run(args: BenchKafkaArgs) -> anyhow::Result<()> {
    if args.messages == 0 || args.samples_per_message == 0 || args.series == 0 {
        bail!("--messages, --samples-per-message and --series must be at least 1");
    }
    let requests = encode_requests(&RemoteWriteShape {
        series: args.series,
        samples: args.messages * args.samples_per_message,
        samples_per_request: args.samples_per_message.min(args.series),
        prefix: &args.prefix,
    });
    let requests = &requests[..args.messages.min(requests.len())];
    let samples: usize = requests.iter().map(|r| r.samples).sum();
    let bytes: usize = requests.iter().map(|r| r.body.len()).sum();
    eprintln!(
        "bench: {} messages, {samples} samples, {:.1} MB (mean {} B/message)",
        requests.len(),
        bytes as f64 / 1e6,
        bytes / requests.len().max(1)
    );

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = config.create().context("Kafka admin client")?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    // An existing topic is fine: its error is ignored.
    let _ = admin.create_topics([&topic], &AdminOptions::new()).await;
    let producer: FutureProducer = config
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("Kafka producer")?;

    let client = reqwest::Client::new();
    let before = committed(&client, &args).await.unwrap_or(0.0);
    let first_offsets = high_watermarks(&config, &args).await?;
    let started = Instant::now();
    for (i, chunk) in requests.chunks(2000).enumerate() {
        let sends = chunk.iter().enumerate().map(|(j, r)| {
            let partition = ((i * 2000 + j) % args.partitions.max(1) as usize) as i32;
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&args.topic)
                .partition(partition)
                .payload(&r.body[..]);
            producer.send(record, Duration::from_secs(60))
        });
        for result in futures_util::future::join_all(sends).await {
            result.map_err(|(e, _)| e).context("produce")?;
        }
    }
    let fill = started.elapsed();
    eprintln!(
        "bench: topic {} filled in {fill:.1?} ({:.0} messages/s)",
        args.topic,
        requests.len() as f64 / fill.as_secs_f64(),
    );
    let end_offsets = high_watermarks(&config, &args).await?;
    let bare = bare_drain(&config, &args, &first_offsets, &end_offsets).await?;
    let bare_rate = bare.messages as f64 / bare.took.as_secs_f64();
    println!(
        "bare librdkafka consumer: {} messages ({:.1} MB) in {:.2}s: {bare_rate:.0} messages/s, {:.0} samples/s (no decoding, storing or commits)",
        bare.messages,
        bare.bytes as f64 / 1e6,
        bare.took.as_secs_f64(),
        bare_rate * args.samples_per_message as f64,
    );
    eprintln!(
        "bench: waiting for Comet at {} (start it now)",
        args.metrics_url
    );

    // The drain starts when Comet's committed offsets first move.
    let target = before + requests.len() as f64;
    let deadline = Instant::now() + args.timeout;
    let (drain_start, cpu_start) = loop {
        if let Some(c) = committed(&client, &args).await
            && c > before
        {
            break (Instant::now(), cpu(&client, &args).await);
        }
        if Instant::now() > deadline {
            bail!(
                "Comet did not start committing offsets of {} in {:?}",
                args.topic,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = committed(&client, &args).await.unwrap_or(before);
    let mut last_report = Instant::now();
    let done = loop {
        let c = committed(&client, &args).await.unwrap_or(0.0);
        if last_report.elapsed() >= Duration::from_secs(1) {
            let lag = metric_sum(&client, &args.metrics_url, "comet_kafka_consumer_lag")
                .await
                .unwrap_or(f64::NAN);
            eprintln!(
                "bench: {:>6.1}s committed {:>9.0}/{} lag {:>9.0}",
                drain_start.elapsed().as_secs_f64(),
                c - before,
                requests.len(),
                lag
            );
            last_report = Instant::now();
        }
        if c >= target {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} messages committed in {:?}",
                c - before,
                requests.len(),
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_end = cpu(&client, &args).await;
    let elapsed = (done - drain_start).as_secs_f64();
    // Messages committed before the first observation are not timed.
    let timed_messages = target - first;
    let timed_samples = timed_messages * args.samples_per_message as f64;
    let comet_rate = timed_messages / elapsed;
    println!(
        "Comet drained {} messages ({samples} samples) in {elapsed:.2}s: {comet_rate:.0} messages/s, {:.0} samples/s (commit after insert): {:.0}% of the bare consumer",
        requests.len(),
        timed_samples / elapsed,
        100.0 * comet_rate / bare_rate
    );
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        println!(
            "CPU: {:.2} s per million samples (Comet{})",
            (b - a) / (timed_samples / 1e6),
            if args.cpu_pids.is_empty() {
                ""
            } else {
                " and --cpu-pid"
            }
        );
    }
    Ok(())
}

/// Each partition's high watermark: where the next message will be.
async fn high_watermarks(config: &ClientConfig, args: &BenchKafkaArgs) -> anyhow::Result<Vec<i64>> {
    let config = config.clone();
    let topic = args.topic.clone();
    let partitions = args.partitions;
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().context("Kafka consumer")?;
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(30))
                    .map(|(_, high)| high)
                    .with_context(|| format!("watermarks of {topic}/{p}"))
            })
            .collect()
    })
    .await?
}

struct BareDrain {
    messages: u64,
    bytes: u64,
    took: Duration,
}

/// Reads `from..to` of every partition with a plain librdkafka consumer
/// (assigned, not in a group; the payload only touched), timed from the
/// first message to the last.
async fn bare_drain(
    config: &ClientConfig,
    args: &BenchKafkaArgs,
    from: &[i64],
    to: &[i64],
) -> anyhow::Result<BareDrain> {
    let mut config = config.clone();
    config
        .set(
            "group.id",
            format!("comet-bench-bare-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let mut assignment = TopicPartitionList::new();
    for (p, offset) in from.iter().enumerate() {
        assignment.add_partition_offset(&args.topic, p as i32, Offset::Offset(*offset))?;
    }
    let wanted: i64 = to.iter().zip(from).map(|(t, f)| t - f).sum();
    let timeout = args.timeout;
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().context("Kafka consumer")?;
        consumer.assign(&assignment)?;
        let (mut messages, mut bytes) = (0u64, 0u64);
        let deadline = Instant::now() + timeout;
        let mut first: Option<Instant> = None;
        while (messages as i64) < wanted {
            if Instant::now() > deadline {
                bail!("the bare consumer read only {messages} of {wanted} messages in {timeout:?}");
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    first.get_or_insert_with(Instant::now);
                    messages += 1;
                    bytes += message.payload().map_or(0, <[u8]>::len) as u64;
                }
                Some(Err(err)) => bail!("bare consumer: {err}"),
                None => {}
            }
        }
        Ok(BareDrain {
            messages,
            bytes,
            took: first.map_or(Duration::ZERO, |f| f.elapsed()),
        })
    })
    .await?
}

async fn committed(client: &reqwest::Client, args: &BenchKafkaArgs) -> Option<f64> {
    let text = fetch_text(client, &args.metrics_url).await?;
    let topic = format!("topic=\"{}\"", args.topic);
    Some(
        text.lines()
            .filter(|l| l.starts_with("comet_kafka_committed_offset{") && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

async fn metric_sum(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = fetch_text(client, url).await?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

async fn cpu(client: &reqwest::Client, args: &BenchKafkaArgs) -> Option<f64> {
    crate::bench::cpu_seconds(client, &args.metrics_url, &args.cpu_pids).await
}
