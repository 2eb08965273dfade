//! The writer every source shares: it gathers the batches of many requests
//! into large ClickHouse inserts (a row count or a linger time, whichever
//! comes first), writes series rows once per series per day (tracked in the
//! [`SeriesRegistry`]), and answers
//! each caller only after ClickHouse accepted its rows.
//!
//! Memory is bounded: every batch holds a share of a fixed budget from the
//! moment it is accepted until its rows are stored. When the budget is
//! spent, [`Writer::try_write`] refuses at once (HTTP sources answer
//! 503/429 so the sender retries) and [`Writer::write`] waits (Kafka pauses).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use comet_schema::histogram::HistogramRowRef;
use comet_schema::labels::LabelLimits;
use comet_schema::rows::{ExemplarRow, MetadataRow, SampleRowRef, SeriesRow, day_of_timestamp_ms};
use comet_schema::{Metadata, Store, StoreError};
use moka::sync::Cache;
use thiserror::Error;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::batch::WriteBatch;
use crate::metrics::IngestMetrics;
use crate::series::{Series, SeriesRegistry};

/// Batching and memory settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Flush once this many samples are waiting.
    pub max_batch_samples: usize,
    /// Flush early, before the linger ends, once this many samples are
    /// waiting and an insert slot is free: callers are blocked waiting for
    /// their acknowledgement, so waiting longer only adds latency.
    pub min_batch_samples: usize,
    /// Flush at the latest this long after the first waiting batch arrived.
    pub linger: Duration,
    /// Ceiling on memory held by accepted, not yet stored data.
    pub max_buffered_bytes: usize,
    /// Inserts in flight at once; more waiting batches queue (and count
    /// against the memory ceiling).
    pub max_concurrent_inserts: usize,
    /// Memory for the series registry (validated series, and the day each
    /// one's `series` row was last written).
    pub series_cache_bytes: u64,
    /// Bounds on a new series' labels, for every source.
    pub label_limits: LabelLimits,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            max_batch_samples: 100_000,
            min_batch_samples: 50_000,
            linger: Duration::from_millis(500),
            max_buffered_bytes: 512 << 20,
            max_concurrent_inserts: 2,
            series_cache_bytes: 256 << 20,
            label_limits: LabelLimits::default(),
        }
    }
}

/// Why a write was not acknowledged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("ingest buffer full ({limit_bytes} bytes held); retry after {retry_after:?}")]
    Overloaded {
        retry_after: Duration,
        limit_bytes: usize,
    },
    #[error("ClickHouse did not accept the write: {message}")]
    Store { message: String, transient: bool },
    #[error("Comet is shutting down")]
    ShuttingDown,
}

impl From<&StoreError> for WriteError {
    fn from(err: &StoreError) -> Self {
        WriteError::Store {
            message: err.to_string(),
            transient: err.is_transient(),
        }
    }
}

/// What an acknowledged write stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
}

/// Memory is counted in KiB units of a semaphore.
const UNIT: usize = 1024;

/// A batch waiting to be stored, with the caller waiting for the answer.
struct Pending {
    batch: WriteBatch,
    source: &'static str,
    ack: oneshot::Sender<Result<(), WriteError>>,
    /// Held until the batch is stored or failed; frees its share of memory.
    _budget: OwnedSemaphorePermit,
    bytes: usize,
    samples: usize,
    histograms: usize,
    /// Set for exactly-once sources (Kafka): the batch is inserted on its
    /// own, under this `insert_deduplication_token`.
    dedup_token: Option<String>,
}

/// Handle to the shared writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    /// The batcher task, awaited once by `shutdown`.
    batcher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct Shared {
    registry: SeriesRegistry,
    tx: mpsc::UnboundedSender<Pending>,
    budget: Arc<Semaphore>,
    budget_units: usize,
    settings: WriterSettings,
    metrics: IngestMetrics,
    close: tokio::sync::Notify,
}

impl Writer {
    /// Starts the batcher task.
    pub fn start(store: Store, settings: WriterSettings, metrics: IngestMetrics) -> Self {
        let budget_units = (settings.max_buffered_bytes / UNIT).max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let flusher = Arc::new(Flusher {
            store,
            metrics: metrics.clone(),
            metadata_seen: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        });
        let shared = Arc::new(Shared {
            registry: SeriesRegistry::new(settings.series_cache_bytes)
                .with_label_limits(settings.label_limits),
            tx,
            budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            settings,
            metrics,
            close: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(run_batcher(rx, flusher, Arc::clone(&shared)));
        Self {
            shared,
            batcher: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The series registry sources resolve series through.
    pub fn registry(&self) -> &SeriesRegistry {
        &self.shared.registry
    }

    /// Stores `batch`, refusing at once with [`WriteError::Overloaded`] when
    /// the memory ceiling is reached. Returns after ClickHouse accepted it.
    pub async fn try_write(
        &self,
        batch: WriteBatch,
        source: &'static str,
    ) -> Result<WriteReceipt, WriteError> {
        let (bytes, units) = self.cost(&batch);
        let permit = match Arc::clone(&self.shared.budget).try_acquire_many_owned(units) {
            Ok(permit) => permit,
            Err(_) => {
                self.shared
                    .metrics
                    .backpressure_events
                    .with_label_values(&[source])
                    .inc();
                return Err(WriteError::Overloaded {
                    retry_after: self.shared.settings.linger.max(Duration::from_secs(1)),
                    limit_bytes: self.shared.settings.max_buffered_bytes,
                });
            }
        };
        self.submit(batch, source, permit, bytes, None).await
    }

    /// Stores `batch`, waiting for room under the memory ceiling first.
    pub async fn write(
        &self,
        batch: WriteBatch,
        source: &'static str,
    ) -> Result<WriteReceipt, WriteError> {
        self.write_waiting(batch, source, None).await
    }

    /// Stores `batch` as inserts of its own carrying `token` as their
    /// `insert_deduplication_token`, waiting for room under the memory
    /// ceiling first. Writing the same batch again under the same token
    /// (a replay after a crash) does not store its samples twice.
    pub async fn write_deduplicated(
        &self,
        batch: WriteBatch,
        source: &'static str,
        token: String,
    ) -> Result<WriteReceipt, WriteError> {
        self.write_waiting(batch, source, Some(token)).await
    }

    async fn write_waiting(
        &self,
        batch: WriteBatch,
        source: &'static str,
        token: Option<String>,
    ) -> Result<WriteReceipt, WriteError> {
        let (bytes, units) = self.cost(&batch);
        let permit = Arc::clone(&self.shared.budget)
            .acquire_many_owned(units)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        self.submit(batch, source, permit, bytes, token).await
    }

    fn cost(&self, batch: &WriteBatch) -> (usize, u32) {
        let bytes = batch.estimated_bytes();
        // A batch larger than the whole budget may still go, alone.
        let units = bytes.div_ceil(UNIT).clamp(1, self.shared.budget_units);
        (bytes, units as u32)
    }

    async fn submit(
        &self,
        batch: WriteBatch,
        source: &'static str,
        permit: OwnedSemaphorePermit,
        bytes: usize,
        dedup_token: Option<String>,
    ) -> Result<WriteReceipt, WriteError> {
        let receipt = WriteReceipt {
            samples: batch.sample_count(),
            histograms: batch.histogram_count(),
            exemplars: batch.exemplars.len(),
        };
        let (samples, histograms) = (receipt.samples, receipt.histograms);
        if batch.is_empty() {
            return Ok(receipt);
        }
        let (ack, answer) = oneshot::channel();
        self.shared.metrics.buffered_bytes.add(bytes as i64);
        let pending = Pending {
            batch,
            source,
            ack,
            _budget: permit,
            bytes,
            samples,
            histograms,
            dedup_token,
        };
        if self.shared.tx.send(pending).is_err() {
            self.shared.metrics.buffered_bytes.sub(bytes as i64);
            return Err(WriteError::ShuttingDown);
        }
        match answer.await {
            Ok(Ok(())) => Ok(receipt),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(WriteError::ShuttingDown),
        }
    }

    /// Stops taking writes, stores everything already accepted, and waits
    /// for the last insert.
    pub async fn shutdown(&self) {
        self.shared.close.notify_one();
        let task = self.batcher.lock().await.take();
        if let Some(task) = task
            && let Err(err) = task.await
        {
            warn!(error = %err, "ingest batcher failed");
        }
    }
}

/// Gathers pending batches and hands them to flush tasks.
async fn run_batcher(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    flusher: Arc<Flusher>,
    shared: Arc<Shared>,
) {
    let settings = &shared.settings;
    let inserts = Arc::new(Semaphore::new(settings.max_concurrent_inserts.max(1)));
    let mut waiting: Vec<Pending> = Vec::new();
    let mut waiting_samples = 0usize;
    let mut deadline = tokio::time::Instant::now();
    loop {
        let linger = tokio::time::sleep_until(deadline);
        tokio::select! {
            received = rx.recv() => {
                let Some(pending) = received else { break };
                if pending.dedup_token.is_some() {
                    // Its own insert, so its token names exactly its rows.
                    flush(&flusher, &inserts, vec![pending]).await;
                    continue;
                }
                if waiting.is_empty() {
                    deadline = tokio::time::Instant::now() + settings.linger;
                }
                // A histogram is one row, like a sample.
                waiting_samples += pending.samples + pending.histograms;
                waiting.push(pending);
                let full = waiting_samples >= settings.max_batch_samples;
                let worth_it = waiting_samples >= settings.min_batch_samples
                    && inserts.available_permits() > 0;
                if !(full || worth_it) {
                    continue;
                }
            }
            _ = linger, if !waiting.is_empty() => {}
            _ = shared.close.notified() => {
                rx.close();
                continue;
            }
        }
        let batch = std::mem::take(&mut waiting);
        waiting_samples = 0;
        flush(&flusher, &inserts, batch).await;
    }
    if !waiting.is_empty() {
        flush(&flusher, &inserts, waiting).await;
    }
    // Wait for every insert in flight.
    let _ = inserts
        .acquire_many(settings.max_concurrent_inserts.max(1) as u32)
        .await;
}

/// Waits for an insert slot (this is what slows the batcher down when
/// ClickHouse is slow), then stores `batch` in the background.
async fn flush(flusher: &Arc<Flusher>, inserts: &Arc<Semaphore>, batch: Vec<Pending>) {
    let Ok(slot) = Arc::clone(inserts).acquire_owned().await else {
        return;
    };
    let flusher = Arc::clone(flusher);
    tokio::spawn(async move {
        flusher.store_and_answer(batch).await;
        drop(slot);
    });
}

/// Writes batches to ClickHouse.
struct Flusher {
    store: Store,
    metrics: IngestMetrics,
    /// Metadata written recently.
    metadata_seen: Cache<Metadata, ()>,
}

impl Flusher {
    async fn store_and_answer(&self, batch: Vec<Pending>) {
        let samples: usize = batch.iter().map(|p| p.samples).sum();
        let histograms: usize = batch.iter().map(|p| p.histograms).sum();
        let result = self.store(&batch, samples, histograms).await;
        self.metrics.batches.inc();
        self.metrics
            .batch_rows
            .observe((samples + histograms) as f64);
        for pending in batch {
            self.metrics.buffered_bytes.sub(pending.bytes as i64);
            if result.is_ok() {
                self.metrics
                    .samples_written
                    .with_label_values(&[pending.source])
                    .inc_by(pending.samples as u64);
                self.metrics
                    .histograms_written
                    .with_label_values(&[pending.source])
                    .inc_by(pending.histograms as u64);
            }
            let _ = pending.ack.send(result.clone());
        }
    }

    async fn store(
        &self,
        batch: &[Pending],
        samples: usize,
        histograms: usize,
    ) -> Result<(), WriteError> {
        // Only ever set on a batch flushed alone. Series and metadata rows
        // are idempotent (ReplacingMergeTree) and depend on what this
        // process wrote before, so they go without it.
        let token = match batch {
            [only] => only.dedup_token.as_deref(),
            _ => None,
        };
        // Series first: a sample is only ever visible with its series.
        let (new_series, written) = self.new_series_rows(batch);
        self.insert::<SeriesRow>("series", &new_series, None)
            .await?;
        for (series, day) in written {
            series.mark_written(day);
        }
        self.metrics.series_created.inc_by(new_series.len() as u64);

        let (metadata_rows, new_metadata) = self.new_metadata_rows(batch);
        self.insert::<MetadataRow>("metadata", &metadata_rows, None)
            .await?;
        for metadata in new_metadata {
            self.metadata_seen.insert(metadata.clone(), ());
        }
        self.metrics
            .metadata_written
            .inc_by(metadata_rows.len() as u64);

        let exemplars: Vec<ExemplarRow> = batch
            .iter()
            .flat_map(|p| p.batch.exemplars.iter().cloned())
            .collect();
        self.insert::<ExemplarRow>("exemplars", &exemplars, token)
            .await?;
        self.metrics
            .exemplars_written
            .inc_by(exemplars.len() as u64);

        // Before the insert: a plan for histograms alone must not miss
        // these floats (one name per run of series of the same metric).
        let mut float_names: Vec<&str> = Vec::new();
        for s in batch.iter().flat_map(|p| &p.batch.series) {
            let name = s.series.metric_name();
            if !s.samples.is_empty() && float_names.last() != Some(&name) {
                float_names.push(name);
            }
        }
        comet_schema::histogram_names::note_floats(&self.store, float_names);

        let mut rows: Vec<SampleRowRef<'_>> = Vec::with_capacity(samples);
        for s in batch.iter().flat_map(|p| &p.batch.series) {
            let metric_name = s.series.metric_name();
            rows.extend(s.samples.iter().map(|sample| SampleRowRef {
                metric_name,
                fingerprint: s.fingerprint(),
                timestamp_ms: sample.timestamp_ms,
                value: sample.value,
            }));
        }
        let stored = self
            .insert::<SampleRowRef<'static>>("samples", &rows, token)
            .await;
        self.note_written(rows.iter().map(|r| r.timestamp_ms));
        stored?;

        // Under the same token: ClickHouse keeps tokens per table.
        let mut rows: Vec<HistogramRowRef<'_>> = Vec::with_capacity(histograms);
        for s in batch.iter().flat_map(|p| &p.batch.histograms) {
            let metric_name = s.series.metric_name();
            rows.extend(
                s.histograms
                    .iter()
                    .map(|h| HistogramRowRef::new(metric_name, s.fingerprint(), h)),
            );
        }
        let stored = self
            .insert::<HistogramRowRef<'static>>("histograms", &rows, token)
            .await;
        self.note_written(rows.iter().map(|r| r.timestamp_ms));
        stored?;
        // Queryable at once by this process's engines.
        comet_schema::histogram_names::note(&self.store, rows.iter().map(|r| r.metric_name));
        Ok(())
    }

    /// Tells this process's results cache that answers from the oldest of
    /// `timestamps` on may have changed: after every insert, also a failed
    /// one (ClickHouse may have stored its rows all the same).
    fn note_written(&self, timestamps: impl Iterator<Item = i64>) {
        if let Some(oldest) = timestamps.min() {
            comet_schema::recent_writes::note(&self.store, oldest);
        }
    }

    async fn insert<T>(
        &self,
        table: &str,
        rows: &[T::Value<'_>],
        token: Option<&str>,
    ) -> Result<(), WriteError>
    where
        T: clickhouse::Row + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = self
            .store
            .insert_deduplicated::<T>(table, rows, token)
            .await;
        self.metrics
            .insert_duration
            .with_label_values(&[table])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|err| {
            self.metrics
                .insert_failures
                .with_label_values(&[table])
                .inc();
            warn!(table, rows = rows.len(), error = %err, "insert failed");
            WriteError::from(&err)
        })?;
        debug!(table, rows = rows.len(), took = ?started.elapsed(), "inserted");
        Ok(())
    }

    /// Series rows for (series, day) pairs not yet known to be stored, and
    /// the entries to mark once they are.
    fn new_series_rows(&self, batch: &[Pending]) -> (Vec<SeriesRow>, Vec<(Arc<Series>, u16)>) {
        let mut rows = NewSeriesRows::default();
        for s in batch.iter().flat_map(|p| &p.batch.series) {
            rows.visit(&s.series, s.samples.iter().map(|x| x.timestamp_ms));
        }
        for s in batch.iter().flat_map(|p| &p.batch.histograms) {
            rows.visit(&s.series, s.histograms.iter().map(|h| h.timestamp_ms));
        }
        (rows.rows, rows.written)
    }

    /// Rows for metadata not written recently, and the metadata to
    /// remember once they are stored.
    fn new_metadata_rows<'b>(&self, batch: &'b [Pending]) -> (Vec<MetadataRow>, Vec<&'b Metadata>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut new: Vec<&Metadata> = Vec::new();
        for metadata in batch.iter().flat_map(|p| &p.batch.metadata) {
            if !self.metadata_seen.contains_key(metadata) && !new.contains(&metadata) {
                new.push(metadata);
            }
        }
        let rows = new.iter().map(|m| MetadataRow::new(m, now)).collect();
        (rows, new)
    }
}

/// The series rows a batch needs: one per (series, day) its samples fall
/// on that is not yet known to be stored.
#[derive(Default)]
struct NewSeriesRows {
    in_batch: HashSet<(u64, u16)>,
    rows: Vec<SeriesRow>,
    written: Vec<(Arc<Series>, u16)>,
}

impl NewSeriesRows {
    /// `timestamps` of one series, in order (generic: this runs for every
    /// sample written).
    fn visit(&mut self, series: &Arc<Series>, timestamps: impl Iterator<Item = i64>) {
        let mut last_day = None;
        for timestamp_ms in timestamps {
            let day = day_of_timestamp_ms(timestamp_ms);
            if last_day == Some(day) {
                continue;
            }
            last_day = Some(day);
            if !series.needs_row(day) || !self.in_batch.insert((series.fingerprint(), day)) {
                continue;
            }
            self.rows
                .push(SeriesRow::new(series.labels(), series.fingerprint(), day));
            self.written.push((Arc::clone(series), day));
        }
    }
}
