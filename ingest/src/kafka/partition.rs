//! One assigned partition: a bounded queue of messages from the consumer,
//! a fixed pool of decoders (`workers_per_partition` runs of queued
//! messages decoded at once, each run as one blocking task, results taken
//! back in offset order), batches cut by size, message
//! count or linger (or exactly as the ledger planned them, when replaying),
//! and deduplicated inserts through the shared writer. The position to
//! commit only moves past a batch once it and every batch before it are
//! stored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use prometheus::IntCounter;
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::Pipeline;
use super::format::{DecodedMessage, FORMAT_HEADER, MessageFormat, message_format};
use super::ledger::{PlannedRange, dedup_token};
use super::offsets::OffsetTracker;
use crate::batch::WriteBatch;

/// Source name of Kafka in the ingest metrics.
pub const SOURCE: &str = "kafka";

/// Position value meaning "nothing to commit yet".
pub const NO_POSITION: i64 = -1;

/// What the consumer thread keeps of a running partition worker.
pub struct PartitionWorker {
    /// Messages in; dropping it tells the worker to drain and finish.
    pub queue: Option<mpsc::Sender<OwnedMessage>>,
    /// Payload bytes in the queue (added by the sender, taken off by the
    /// worker), bounded by `queue_bytes`.
    pub queued_bytes: Arc<AtomicUsize>,
    /// The offset that may be committed ([`NO_POSITION`] until a batch is
    /// stored).
    pub position: Arc<AtomicI64>,
    /// Abandons in-flight work (nothing more is committed).
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

/// Identity of a partition for the worker.
pub struct PartitionId {
    pub topic: String,
    pub partition: i32,
    /// `partition` as a metrics label.
    pub label: String,
    pub format: MessageFormat,
}

/// The partition's per-message counters, looked up once per partition
/// instead of once per message.
struct MessageCounters {
    messages: IntCounter,
    bytes: IntCounter,
    samples: IntCounter,
    received: IntCounter,
}

impl MessageCounters {
    fn new(pipeline: &Pipeline, id: &PartitionId) -> Self {
        let labels = [id.topic.as_str(), id.label.as_str()];
        let m = &pipeline.metrics;
        Self {
            messages: m.messages.with_label_values(&labels),
            bytes: m.bytes.with_label_values(&labels),
            samples: m.samples.with_label_values(&labels),
            received: pipeline
                .ingest
                .samples_received
                .with_label_values(&[SOURCE]),
        }
    }
}

/// Starts the worker of one partition on the current runtime. `plan` holds
/// the ranges the ledger recorded past the committed offset.
pub fn spawn(
    pipeline: Arc<Pipeline>,
    id: PartitionId,
    plan: Vec<PlannedRange>,
    runtime: &tokio::runtime::Handle,
) -> PartitionWorker {
    let (tx, rx) = mpsc::channel(pipeline.settings.queue_messages.max(1));
    let position = Arc::new(AtomicI64::new(NO_POSITION));
    let stop = CancellationToken::new();
    let counters = Arc::new(MessageCounters::new(&pipeline, &id));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let worker = Worker {
        queued_bytes: Arc::clone(&queued_bytes),
        counters,
        pipeline,
        id: Arc::new(id),
        plan: plan.into(),
        position: Arc::clone(&position),
        stop: stop.clone(),
        tracker: OffsetTracker::new(),
        open: None,
        next_seq: 0,
    };
    let task = runtime.spawn(worker.run(rx));
    PartitionWorker {
        queue: Some(tx),
        queued_bytes,
        position,
        stop,
        task,
    }
}

/// A message's payload size, what `queue_bytes` counts.
pub fn payload_len(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len)
}

/// Most messages one decode task takes from the queue at once: enough that
/// the hand-off to the blocking pool costs little per message, few enough
/// that a run of large messages does not hold up the batch behind it.
const DECODE_RUN_MESSAGES: usize = 256;

/// A decoded message (or one set aside) in offset order.
struct Processed {
    offset: i64,
    /// `None` when the message went to the dead-letter topic.
    decoded: Option<DecodedMessage>,
}

/// The batch being filled.
struct OpenBatch {
    first: i64,
    last: i64,
    messages: usize,
    samples: usize,
    batch: WriteBatch,
    deadline: Instant,
    /// Replaying: the exact range the ledger recorded.
    planned: Option<PlannedRange>,
    /// Not replaying, but a planned range starts here: cut before it.
    cut_before: Option<i64>,
}

impl OpenBatch {
    /// When the linger cuts this batch. Never for a replayed one: it is
    /// cut when its planned last offset arrives (or when the partition is
    /// drained), since its deduplication token names the whole planned
    /// range. Cut early, it would store only part of that range under the
    /// token (dropped as a duplicate of the first attempt) and the rest in
    /// a new batch, stored a second time.
    fn linger_deadline(&self) -> Option<Instant> {
        self.planned.is_none().then_some(self.deadline)
    }
}

struct Worker {
    counters: Arc<MessageCounters>,
    queued_bytes: Arc<AtomicUsize>,
    pipeline: Arc<Pipeline>,
    id: Arc<PartitionId>,
    plan: VecDeque<PlannedRange>,
    position: Arc<AtomicI64>,
    stop: CancellationToken,
    tracker: OffsetTracker,
    open: Option<OpenBatch>,
    next_seq: u64,
}

type InsertTask = JoinHandle<Option<(u64, i64)>>;

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<OwnedMessage>) {
        let settings = self.pipeline.settings.clone();
        let workers = settings.workers_per_partition.max(1);
        let max_inflight = settings.max_inflight_batches.max(1);
        let mut decoding = FuturesOrdered::new();
        let mut inserting: FuturesUnordered<InsertTask> = FuturesUnordered::new();
        let mut inbox = Vec::with_capacity(DECODE_RUN_MESSAGES);
        let mut closed = false;
        loop {
            if closed && decoding.is_empty() {
                // Drain: what was received is stored before the worker ends,
                // except a replayed batch still short of its planned range:
                // under its token it would stand for messages it lacks. The
                // partition's next owner replays it whole.
                if let Some(open) = self.open.take()
                    && open.planned.is_none()
                {
                    inserting.push(self.cut(open));
                }
                break;
            }
            let deadline = self.open.as_ref().and_then(OpenBatch::linger_deadline);
            let room = inserting.len() < max_inflight;
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                Some(done) = inserting.next(), if !inserting.is_empty() => self.stored(done),
                Some(processed) = decoding.next(), if !decoding.is_empty() && room => {
                    for p in processed {
                        inserting.extend(self.add(p));
                    }
                }
                received = rx.recv_many(&mut inbox, DECODE_RUN_MESSAGES), if !closed && decoding.len() < workers => {
                    if received == 0 {
                        closed = true;
                    } else {
                        let bytes: usize = inbox.iter().map(payload_len).sum();
                        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                        decoding.push_back(process(
                            Arc::clone(&self.pipeline),
                            Arc::clone(&self.counters),
                            Arc::clone(&self.id),
                            std::mem::take(&mut inbox),
                            self.stop.clone(),
                        ));
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && room => {
                    if let Some(open) = self.open.take() {
                        inserting.push(self.cut(open));
                    }
                }
            }
        }
        while let Some(done) = inserting.next().await {
            self.stored(done);
        }
    }

    fn stored(&mut self, done: Result<Option<(u64, i64)>, tokio::task::JoinError>) {
        match done {
            Ok(Some((seq, last))) => {
                if let Some(position) = self.tracker.complete(seq, last) {
                    self.position.store(position, Ordering::Release);
                }
            }
            Ok(None) => {}
            Err(err) => {
                // Nothing past this batch can be committed any more; stop
                // taking work so the partition is replayed from its last
                // commit by whoever owns it next.
                error!(topic = %self.id.topic, partition = self.id.partition, error = %err, "Kafka insert task failed");
                self.stop.cancel();
            }
        }
    }

    /// Adds a message to the open batch; returns the inserts of the
    /// batches it made complete (none, one, or the previous and this one).
    fn add(&mut self, p: Processed) -> Vec<InsertTask> {
        let mut cut = Vec::new();
        if let Some(open) = &self.open {
            let past_plan = open.planned.is_some_and(|r| p.offset > r.last_offset);
            let before_plan = open.cut_before.is_some_and(|first| p.offset >= first);
            if (past_plan || before_plan)
                && let Some(open) = self.open.take()
            {
                cut.push(self.cut(open));
            }
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let fresh = self.start(p.offset);
                self.open.insert(fresh)
            }
        };
        open.last = p.offset;
        open.messages += 1;
        if let Some(decoded) = p.decoded {
            open.samples += decoded.batch.sample_count();
            let b = decoded.batch;
            open.batch.series.extend(b.series);
            open.batch.exemplars.extend(b.exemplars);
            open.batch.metadata.extend(b.metadata);
        }
        let settings = &self.pipeline.settings;
        let full = match open.planned {
            Some(range) => p.offset >= range.last_offset,
            None => {
                open.samples >= settings.batch_max_samples
                    || open.messages >= settings.batch_max_messages
            }
        };
        if full && let Some(open) = self.open.take() {
            cut.push(self.cut(open));
        }
        cut
    }

    /// A new batch starting at `offset`, following the ledger's plan.
    fn start(&mut self, offset: i64) -> OpenBatch {
        while self.plan.front().is_some_and(|r| r.last_offset < offset) {
            self.plan.pop_front();
        }
        let (planned, cut_before) = match self.plan.front() {
            Some(r) if r.first_offset <= offset => (self.plan.pop_front(), None),
            Some(r) => (None, Some(r.first_offset)),
            None => (None, None),
        };
        OpenBatch {
            first: offset,
            last: offset,
            messages: 0,
            samples: 0,
            batch: WriteBatch::default(),
            deadline: Instant::now() + self.pipeline.settings.batch_linger,
            planned,
            cut_before,
        }
    }

    /// Hands a batch to an insert task.
    fn cut(&mut self, open: OpenBatch) -> InsertTask {
        let seq = self.next_seq;
        self.next_seq += 1;
        let replay = open.planned.is_some();
        let range = open.planned.unwrap_or(PlannedRange {
            first_offset: open.first,
            last_offset: open.last,
        });
        debug!(
            topic = %self.id.topic,
            partition = self.id.partition,
            first = range.first_offset,
            last = range.last_offset,
            messages = open.messages,
            samples = open.samples,
            replay,
            "Kafka batch cut"
        );
        tokio::spawn(insert(
            Arc::clone(&self.pipeline),
            Arc::clone(&self.id),
            seq,
            range,
            replay,
            open.batch,
            self.stop.clone(),
        ))
    }
}

/// Decodes a run of messages in one task on the blocking pool, setting
/// aside what cannot be decoded in the dead-letter topic; the results in
/// offset order.
async fn process(
    pipeline: Arc<Pipeline>,
    counters: Arc<MessageCounters>,
    id: Arc<PartitionId>,
    messages: Vec<OwnedMessage>,
    stop: CancellationToken,
) -> Vec<Processed> {
    counters.messages.inc_by(messages.len() as u64);
    counters
        .bytes
        .inc_by(messages.iter().map(payload_len).sum::<usize>() as u64);
    let first_offset = messages.first().map_or(0, Message::offset);
    let decoder = pipeline.decoder.clone();
    let topic_format = id.format;
    let decoded = match tokio::task::spawn_blocking(move || {
        messages
            .into_iter()
            .map(|message| {
                let header = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == FORMAT_HEADER)
                        .and_then(|h| h.value)
                });
                let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
                let result = message_format(header, topic_format)
                    .and_then(|format| decoder.decode(format, message.payload(), timestamp_ms));
                (message, result)
            })
            .collect::<Vec<_>>()
    })
    .await
    {
        Ok(done) => done,
        Err(err) => {
            // The messages went with the failed task; nothing from here on
            // is committed, so the partition's next owner reads them again.
            error!(topic = %id.topic, partition = id.partition, offset = first_offset, error = %err, "Kafka decoder failed");
            stop.cancel();
            return Vec::new();
        }
    };
    let mut processed = Vec::with_capacity(decoded.len());
    for (message, result) in decoded {
        let offset = message.offset();
        let decoded = match result {
            Ok(decoded) => {
                counters.samples.inc_by(decoded.received);
                counters.received.inc_by(decoded.received);
                if !decoded.rejections.is_empty() {
                    for r in &decoded.rejections {
                        pipeline
                            .ingest
                            .samples_rejected
                            .with_label_values(&[SOURCE, r.reason])
                            .inc_by(r.samples);
                    }
                    let reasons: Vec<String> = decoded
                        .rejections
                        .iter()
                        .map(|r| format!("{} {}: {}", r.samples, r.reason, r.message))
                        .collect();
                    // The valid part is stored; the whole message goes to
                    // the dead-letter topic for the record.
                    dead_letter(
                        &pipeline,
                        &id,
                        &message,
                        "partially_invalid",
                        &reasons.join("; "),
                        &stop,
                    )
                    .await;
                }
                Some(decoded)
            }
            Err(err) => {
                pipeline
                    .metrics
                    .decode_errors
                    .with_label_values(&[id.topic.as_str(), id.label.as_str(), err.reason()])
                    .inc();
                dead_letter(
                    &pipeline,
                    &id,
                    &message,
                    err.reason(),
                    &err.to_string(),
                    &stop,
                )
                .await;
                None
            }
        };
        processed.push(Processed { offset, decoded });
    }
    processed
}

/// Sends `message` to the dead-letter topic, retrying until the broker
/// takes it (or the partition is abandoned). Without a dead-letter topic
/// the message is logged and counted only.
async fn dead_letter(
    pipeline: &Pipeline,
    id: &PartitionId,
    message: &OwnedMessage,
    reason: &str,
    error: &str,
    stop: &CancellationToken,
) {
    let offset = message.offset();
    let Some(dlq) = &pipeline.dead_letters else {
        warn!(topic = %id.topic, partition = id.partition, offset, reason, error, "Kafka message not stored (no dead-letter topic configured)");
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match dlq.send(message, reason, error).await {
            Ok(()) => {
                pipeline
                    .metrics
                    .dlq_messages
                    .with_label_values(&[id.topic.as_str(), id.label.as_str()])
                    .inc();
                debug!(topic = %id.topic, partition = id.partition, offset, reason, dlq = dlq.topic(), "Kafka message dead-lettered");
                return;
            }
            Err(err) => {
                warn!(topic = %id.topic, partition = id.partition, offset, error = %err, "cannot write to the dead-letter topic; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(pipeline.settings.retry_backoff_max);
            }
        }
    }
}

/// Records the batch's range in the ledger (unless replaying one), then
/// inserts it under its deduplication token, retrying until ClickHouse
/// takes it. Returns (sequence number, last offset) once stored.
async fn insert(
    pipeline: Arc<Pipeline>,
    id: Arc<PartitionId>,
    seq: u64,
    range: PlannedRange,
    replay: bool,
    batch: WriteBatch,
    stop: CancellationToken,
) -> Option<(u64, i64)> {
    let labels = [id.topic.as_str(), id.label.as_str()];
    let max_backoff = pipeline.settings.retry_backoff_max;
    let mut backoff = Duration::from_millis(100);
    let mut retry = |what: &str, err: &dyn std::fmt::Display| {
        pipeline
            .metrics
            .insert_retries
            .with_label_values(&labels)
            .inc();
        warn!(topic = %id.topic, partition = id.partition, first = range.first_offset, last = range.last_offset, error = %err, "{what} failed; retrying in {backoff:?}");
        let wait = backoff;
        backoff = (backoff * 2).min(max_backoff);
        wait
    };
    if batch.is_empty() {
        // Only dead letters: nothing to insert or to plan.
        return Some((seq, range.last_offset));
    }
    if !replay {
        loop {
            match pipeline.ledger.plan(&id.topic, id.partition, range).await {
                Ok(()) => break,
                Err(err) => {
                    let wait = retry("recording the batch in the ledger", &err);
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
    let token = dedup_token(&id.topic, id.partition, range);
    loop {
        match pipeline
            .writer
            .write_deduplicated(batch.clone(), SOURCE, token.clone())
            .await
        {
            Ok(_) => {
                pipeline.metrics.batches.with_label_values(&labels).inc();
                return Some((seq, range.last_offset));
            }
            Err(err) => {
                let wait = retry("Kafka batch insert", &err);
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(planned: Option<PlannedRange>) -> OpenBatch {
        OpenBatch {
            first: 93,
            last: 108,
            messages: 16,
            samples: 320,
            batch: WriteBatch::default(),
            deadline: Instant::now(),
            planned,
            cut_before: None,
        }
    }

    /// A replayed batch waits for its whole planned range (the linger of a
    /// loaded machine once cut one short, and the rest was stored twice).
    #[tokio::test]
    async fn only_new_batches_are_cut_by_the_linger() {
        assert!(open(None).linger_deadline().is_some());
        let planned = PlannedRange {
            first_offset: 93,
            last_offset: 112,
        };
        assert_eq!(open(Some(planned)).linger_deadline(), None);
    }
}
