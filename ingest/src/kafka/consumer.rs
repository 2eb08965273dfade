//! The consumer thread: one librdkafka group consumer polled on a thread
//! of its own (fetching is decoupled from processing), routing each message
//! to its partition's worker queue. A full queue pauses the partition
//! instead of buffering more; the thread keeps polling, so the group
//! session stays alive, and resumes the partition once its queue has room.
//! Offsets are committed every `commit_interval`, on revoke and on
//! shutdown, never past what is stored.
//!
//! Rebalance callbacks run on this thread inside `poll`: a revoked
//! partition's worker is drained (everything received is stored and its
//! offset committed) within `revoke_timeout`, else abandoned (nothing more
//! is committed; the next owner replays it, deduplicated).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;
use tracing::{debug, error, info, warn};

use super::Pipeline;
use super::partition::{self, NO_POSITION, PartitionId, PartitionWorker, payload_len};

type Key = (String, i32);

/// A partition as the consumer thread sees it.
struct Assigned {
    worker: PartitionWorker,
    /// Messages polled while the worker's queue was full, in order.
    held: VecDeque<OwnedMessage>,
    paused: bool,
    /// The last offset committed by this consumer.
    committed: i64,
}

/// librdkafka's callbacks, and the partitions they manage.
pub struct DispatchContext {
    pipeline: Arc<Pipeline>,
    runtime: tokio::runtime::Handle,
    partitions: Mutex<HashMap<Key, Assigned>>,
}

pub type GroupConsumer = BaseConsumer<DispatchContext>;

impl DispatchContext {
    pub fn new(pipeline: Arc<Pipeline>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            pipeline,
            runtime,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    fn partitions(&self) -> MutexGuard<'_, HashMap<Key, Assigned>> {
        // A poisoned lock only means a callback panicked; the map is intact.
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts workers for newly assigned partitions, each with the ranges
    /// the ledger planned past its committed offset.
    fn assign(&self, consumer: &GroupConsumer, list: &TopicPartitionList) {
        let committed = consumer
            .committed_offsets(list.clone(), self.pipeline.settings.request_timeout)
            .unwrap_or_else(|err| {
                warn!(error = %err, "cannot read committed offsets; replaying from the ledger's start");
                list.clone()
            });
        for element in list.elements() {
            let topic = element.topic().to_string();
            let partition = element.partition();
            let from = committed
                .find_partition(&topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let plan = self.read_plan(&topic, partition, from.unwrap_or(0));
            info!(%topic, partition, committed = ?from, replay_batches = plan.len(), "Kafka partition assigned");
            let format = self.pipeline.settings.format_of(&topic);
            let id = PartitionId {
                label: partition.to_string(),
                topic: topic.clone(),
                partition,
                format,
            };
            let worker = partition::spawn(Arc::clone(&self.pipeline), id, plan, &self.runtime);
            self.pipeline
                .metrics
                .rebalances
                .with_label_values(&["assigned"])
                .inc();
            self.pipeline
                .metrics
                .paused
                .with_label_values(&[topic.as_str(), &partition.to_string()])
                .set(0);
            self.partitions().insert(
                (topic, partition),
                Assigned {
                    worker,
                    held: VecDeque::new(),
                    paused: false,
                    committed: from.unwrap_or(NO_POSITION),
                },
            );
        }
    }

    fn read_plan(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
    ) -> Vec<super::ledger::PlannedRange> {
        let ledger = &self.pipeline.ledger;
        for attempt in 1..=5 {
            match self
                .runtime
                .block_on(ledger.planned(topic, partition, from))
            {
                Ok(plan) => return plan,
                Err(err) => {
                    warn!(%topic, partition, attempt, error = %err, "cannot read the Kafka batch ledger");
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
            }
        }
        error!(%topic, partition, "Kafka batch ledger unreadable: batches in flight at the last crash may be stored twice");
        Vec::new()
    }

    /// Drains (or, past the timeout, abandons) the workers of revoked
    /// partitions and commits what they stored.
    fn revoke(&self, consumer: &GroupConsumer, keys: Vec<Key>) {
        let mut drained = Vec::new();
        for key in keys {
            let Some(mut assigned) = self.partitions().remove(&key) else {
                continue;
            };
            // Closing the queue makes the worker store what it has and end.
            assigned.worker.queue = None;
            assigned.held.clear();
            let timeout = self.pipeline.settings.revoke_timeout;
            let task = &mut assigned.worker.task;
            let finished = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, task).await.is_ok() });
            if !finished {
                warn!(topic = %key.0, partition = key.1, ?timeout, "Kafka partition not drained in time; abandoning its in-flight batches");
                assigned.worker.stop.cancel();
            }
            self.pipeline
                .metrics
                .rebalances
                .with_label_values(&["revoked"])
                .inc();
            drained.push((key, assigned));
        }
        if drained.is_empty() {
            return;
        }
        let mut refs: Vec<(&Key, &mut Assigned)> =
            drained.iter_mut().map(|(k, a)| (&*k, a)).collect();
        self.commit_positions(consumer, &mut refs);
        for (key, _) in &drained {
            self.pipeline
                .metrics
                .forget_partition(&key.0, &key.1.to_string());
            info!(topic = %key.0, partition = key.1, "Kafka partition revoked");
        }
    }

    /// Commits the stored position of every assigned partition that moved.
    pub fn commit(&self, consumer: &GroupConsumer) {
        let mut partitions = self.partitions();
        let mut refs: Vec<(&Key, &mut Assigned)> = partitions.iter_mut().collect();
        self.commit_positions(consumer, &mut refs);
    }

    fn commit_positions(&self, consumer: &GroupConsumer, partitions: &mut [(&Key, &mut Assigned)]) {
        let mut list = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (i, (key, assigned)) in partitions.iter().enumerate() {
            let position = assigned.worker.position.load(Ordering::Acquire);
            if position > assigned.committed
                && list
                    .add_partition_offset(&key.0, key.1, Offset::Offset(position))
                    .is_ok()
            {
                moved.push((i, position));
            }
        }
        if moved.is_empty() {
            return;
        }
        let started = Instant::now();
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => {
                let metrics = &self.pipeline.metrics;
                metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                for (i, position) in moved {
                    let (key, assigned) = &mut partitions[i];
                    assigned.committed = position;
                    metrics
                        .committed_offset
                        .with_label_values(&[key.0.as_str(), &key.1.to_string()])
                        .set(position);
                }
                debug!(partitions = list.count(), took = ?started.elapsed(), "Kafka offsets committed");
            }
            Err(err) => {
                self.pipeline.metrics.commit_failures.inc();
                warn!(error = %err, "Kafka offset commit failed; retrying at the next interval");
            }
        }
    }

    /// Hands a polled message to its partition's worker, or holds it and
    /// pauses the partition when the worker's queue is full.
    pub fn route(&self, consumer: &GroupConsumer, message: OwnedMessage) {
        let mut partitions = self.partitions();
        // Found by scanning the few assigned partitions: no key (and no
        // String) is built per message.
        let (topic, partition) = (message.topic(), message.partition());
        let Some((key, assigned)) = partitions
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        else {
            debug!(%topic, partition, "message for a partition no longer assigned");
            return;
        };
        if !assigned.held.is_empty() {
            assigned.held.push_back(message);
            return;
        }
        if !self.enqueue(assigned, message) {
            self.pause(consumer, key, assigned);
        }
    }

    /// Moves held messages into worker queues with room, resuming their
    /// partitions once nothing is held.
    pub fn release_held(&self, consumer: &GroupConsumer) {
        let mut partitions = self.partitions();
        for (key, assigned) in partitions.iter_mut() {
            while let Some(message) = assigned.held.pop_front() {
                if !self.enqueue(assigned, message) {
                    break;
                }
            }
            // Resumed only once the queue is half empty: each pause makes
            // librdkafka drop what it prefetched and fetch it again, so a
            // partition that resumed at the first free slot would pause
            // and refetch over and over.
            let bytes = assigned.worker.queued_bytes.load(Ordering::Acquire);
            let half_empty = bytes * 2 <= self.pipeline.settings.queue_bytes
                && assigned
                    .worker
                    .queue
                    .as_ref()
                    .is_none_or(|q| q.capacity() * 2 >= q.max_capacity());
            if assigned.paused && assigned.held.is_empty() && half_empty {
                self.resume(consumer, key, assigned);
            }
        }
    }

    /// Puts `message` in its worker's queue if the queue has room for it
    /// (in messages and bytes; an empty queue takes any message), else
    /// holds it at the front of `held`; false when held.
    fn enqueue(&self, assigned: &mut Assigned, message: OwnedMessage) -> bool {
        let Some(queue) = &assigned.worker.queue else {
            // Revoked: its worker takes nothing more.
            assigned.held.clear();
            return true;
        };
        let size = payload_len(&message);
        let queued = &assigned.worker.queued_bytes;
        let bytes = queued.load(Ordering::Acquire);
        if bytes > 0 && bytes + size > self.pipeline.settings.queue_bytes {
            assigned.held.push_front(message);
            return false;
        }
        // Counted before it can be received, so the worker never takes off
        // more than was added.
        queued.fetch_add(size, Ordering::AcqRel);
        match queue.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(message)) => {
                queued.fetch_sub(size, Ordering::AcqRel);
                assigned.held.push_front(message);
                false
            }
            Err(TrySendError::Closed(_)) => {
                queued.fetch_sub(size, Ordering::AcqRel);
                assigned.held.clear();
                true
            }
        }
    }

    fn pause(&self, consumer: &GroupConsumer, key: &Key, assigned: &mut Assigned) {
        if assigned.paused {
            return;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(&key.0, key.1);
        match consumer.pause(&list) {
            Ok(()) => {
                assigned.paused = true;
                let labels = [key.0.as_str(), &key.1.to_string()];
                self.pipeline
                    .metrics
                    .paused
                    .with_label_values(&labels)
                    .set(1);
                self.pipeline
                    .metrics
                    .pauses
                    .with_label_values(&labels)
                    .inc();
                debug!(topic = %key.0, partition = key.1, "Kafka partition paused (backpressure)");
            }
            Err(err) => {
                warn!(topic = %key.0, partition = key.1, error = %err, "cannot pause Kafka partition")
            }
        }
    }

    fn resume(&self, consumer: &GroupConsumer, key: &Key, assigned: &mut Assigned) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&key.0, key.1);
        match consumer.resume(&list) {
            Ok(()) => {
                assigned.paused = false;
                self.pipeline
                    .metrics
                    .paused
                    .with_label_values(&[key.0.as_str(), &key.1.to_string()])
                    .set(0);
                debug!(topic = %key.0, partition = key.1, "Kafka partition resumed");
            }
            Err(err) => {
                warn!(topic = %key.0, partition = key.1, error = %err, "cannot resume Kafka partition")
            }
        }
    }

    /// Consumer lag per partition from librdkafka's statistics (the
    /// partition's high watermark less the committed position), and the
    /// bytes in each partition's queue.
    fn update_lag(&self, statistics: &Statistics) {
        let partitions = self.partitions();
        for (key, assigned) in partitions.iter() {
            let queued = assigned.worker.queued_bytes.load(Ordering::Acquire);
            self.pipeline
                .metrics
                .queued_bytes
                .with_label_values(&[key.0.as_str(), &key.1.to_string()])
                .set(i64::try_from(queued).unwrap_or(i64::MAX));
            let Some(stats) = statistics
                .topics
                .get(&key.0)
                .and_then(|t| t.partitions.get(&key.1))
            else {
                continue;
            };
            if stats.hi_offset < 0 {
                continue;
            }
            let from = if assigned.committed >= 0 {
                assigned.committed
            } else {
                stats.lo_offset.max(0)
            };
            self.pipeline
                .metrics
                .lag
                .with_label_values(&[key.0.as_str(), &key.1.to_string()])
                .set((stats.hi_offset - from).max(0));
        }
    }

    /// Every assigned partition (for shutdown).
    pub fn assigned(&self) -> Vec<Key> {
        self.partitions().keys().cloned().collect()
    }
}

impl ClientContext for DispatchContext {
    fn stats(&self, statistics: Statistics) {
        self.update_lag(&statistics);
    }
}

impl ConsumerContext for DispatchContext {
    fn pre_rebalance(&self, consumer: &GroupConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let keys = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            self.revoke(consumer, keys);
        }
    }

    fn post_rebalance(&self, consumer: &GroupConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.assign(consumer, list),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => warn!(error = %err, "Kafka rebalance failed"),
        }
    }
}

/// The consumer thread's loop, until `stop` is set; then every partition
/// is drained and committed and the group is left.
pub fn run(consumer: &GroupConsumer, stop: &AtomicBool) {
    let context = consumer.context();
    let settings = &context.pipeline.settings;
    let mut last_commit = Instant::now();
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => context.route(consumer, message.detach()),
            // Broker errors repeat while the broker is away: log some.
            Some(Err(err)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                warn!(error = %err, "Kafka consumer error");
                last_error = Some(Instant::now());
            }
            Some(Err(_)) => {}
            None => {}
        }
        context.release_held(consumer);
        if last_commit.elapsed() >= settings.commit_interval {
            context.commit(consumer);
            last_commit = Instant::now();
        }
    }
    info!("Kafka consumer stopping: storing and committing what was received");
    let keys = context.assigned();
    context.revoke(consumer, keys);
    consumer.unsubscribe();
    info!("Kafka consumer stopped");
}
