//! The live pipeline: events go through a bounded channel (senders wait when the detector is
//! behind: backpressure) to one detector thread, off the async workers; after each batch the
//! alerts that are new or changed are committed to the store; the detector's state is
//! checkpointed to the store periodically and at shutdown, and restored at start.

pub mod directory_tail;
pub mod management_api_source;
pub mod sinks;

use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_events::Event;
use mailsentry_ingest::{DecodeOptions, Decoded, MergedEvents};
use mailsentry_store::AlertStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The TLS suites mailsentry speaks as a client (syslog over TLS): TLS 1.3 AEAD and TLS 1.2
/// ECDHE AEAD only.
pub fn tls_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::*;
    vec![
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// Name of the detector's checkpoint in the store.
pub const CHECKPOINT: &str = "detector";

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events accepted into the pipeline.
    pub events_in: AtomicU64,
    /// Events the detector has processed.
    pub events_processed: AtomicU64,
    /// Rejected records, by class name (`class=count`), updated by the sources.
    pub rejects: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Sessions open in the detector after the last batch.
    pub sessions_open: AtomicU64,
    /// Alerts committed (new or changed).
    pub alerts_committed: AtomicU64,
    /// Checkpoints saved.
    pub checkpoints: AtomicU64,
}

impl Metrics {
    /// Counts a reject of `class`.
    pub fn reject(&self, class: &str) {
        let mut m = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(class.to_owned()).or_default() += 1;
    }
}

enum Msg {
    Events(Vec<Event>),
    Label(String, String),
    Connectors(oneshot::Sender<Vec<mailsentry_detect::ConnectorSummary>>),
    Hourly(
        String,
        String,
        oneshot::Sender<Vec<(chrono::DateTime<chrono::Utc>, u64)>>,
    ),
    Rebaseline(String, String, oneshot::Sender<bool>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The detector thread has stopped.
    #[error("the detector has stopped")]
    Stopped,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] mailsentry_store::StoreError),
    /// A checkpoint could not be read.
    #[error("detector checkpoint unreadable: {0}")]
    Checkpoint(String),
}

/// A handle to the running pipeline (cheap to clone).
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Msg>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Batches between checkpoints.
const CHECKPOINT_EVERY: u64 = 200;

impl Pipeline {
    /// Starts the detector thread with a channel of `capacity` batches. The detector's state is
    /// restored from the store's checkpoint when there is one.
    pub fn start(
        config: DetectConfig,
        enrichment: Arc<Enrichment>,
        store: Arc<dyn AlertStore>,
        capacity: usize,
    ) -> Result<Pipeline, PipelineError> {
        Self::start_with_checkpoints(
            config,
            enrichment,
            store,
            capacity,
            std::time::Duration::from_secs(60),
        )
    }

    /// [`Pipeline::start`] with the longest time between checkpoints (they are also taken every
    /// 200 batches and at shutdown).
    pub fn start_with_checkpoints(
        config: DetectConfig,
        enrichment: Arc<Enrichment>,
        store: Arc<dyn AlertStore>,
        capacity: usize,
        checkpoint_every: std::time::Duration,
    ) -> Result<Pipeline, PipelineError> {
        let mut detector = match store.load_checkpoint(CHECKPOINT)? {
            Some(bytes) => {
                let mut d = Detector::restore(&bytes, enrichment)
                    .map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
                d.set_config(config);
                d
            }
            None => Detector::new(config, enrichment),
        };
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = mpsc::channel::<Msg>(capacity.max(1));
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("mailsentry-detector".into())
            .spawn(move || {
                let mut batches = 0u64;
                let mut last_checkpoint = std::time::Instant::now();
                let commit = |detector: &Detector| {
                    let alerts = detector.alerts(chrono::Utc::now());
                    match store.upsert_alerts(&alerts) {
                        Ok(n) => {
                            m.alerts_committed.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => tracing::error!(error = %e, "committing alerts failed"),
                    }
                    m.sessions_open
                        .store(detector.open_sessions() as u64, Ordering::Relaxed);
                };
                let checkpoint = |detector: &Detector| match store
                    .save_checkpoint(CHECKPOINT, &detector.snapshot())
                {
                    Ok(()) => {
                        m.checkpoints.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(error = %e, "checkpoint failed"),
                };
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Msg::Events(events) => {
                            let _span = tracing::debug_span!("detect_batch", events = events.len()).entered();
                            for e in &events {
                                detector.process(e);
                            }
                            m.events_processed
                                .fetch_add(events.len() as u64, Ordering::Relaxed);
                            commit(&detector);
                            batches += 1;
                            if batches.is_multiple_of(CHECKPOINT_EVERY) || last_checkpoint.elapsed() >= checkpoint_every {
                                checkpoint(&detector);
                                last_checkpoint = std::time::Instant::now();
                            }
                        }
                        Msg::Label(id, label) => {
                            if detector.apply_label(&id, &label) {
                                tracing::info!(alert = %id, %label, "label applied to the detector");
                            }
                        }
                        Msg::Hourly(tenant, connector, reply) => {
                            let _ = reply.send(detector.hourly_volume(&tenant, &connector).unwrap_or_default());
                        }
                        Msg::Connectors(reply) => {
                            let _ = reply.send(detector.connector_summaries());
                        }
                        Msg::Rebaseline(tenant, connector, reply) => {
                            let done = detector.rebaseline(&tenant, &connector);
                            if done {
                                tracing::info!(%tenant, %connector, "connector re-baselined");
                                checkpoint(&detector);
                            }
                            let _ = reply.send(done);
                        }
                        Msg::Flush(done) => {
                            commit(&detector);
                            let _ = done.send(());
                        }
                        Msg::Shutdown(done) => {
                            commit(&detector);
                            checkpoint(&detector);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
                commit(&detector);
                checkpoint(&detector);
            })
            .expect("spawn detector thread");
        Ok(Pipeline { tx, metrics })
    }

    /// Sends a batch; waits while the channel is full (backpressure).
    pub async fn send(&self, events: Vec<Event>) -> Result<(), PipelineError> {
        let n = events.len() as u64;
        self.tx
            .send(Msg::Events(events))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        self.metrics.events_in.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Passes an analyst's label to the detector (a false positive releases the incident's
    /// quarantined sessions into the baseline and suppresses its sources).
    pub async fn label(&self, alert_id: &str, label: &str) -> Result<(), PipelineError> {
        self.tx
            .send(Msg::Label(alert_id.to_owned(), label.to_owned()))
            .await
            .map_err(|_| PipelineError::Stopped)
    }

    /// What the detector has learned about each connector.
    pub async fn connectors(
        &self,
    ) -> Result<Vec<mailsentry_detect::ConnectorSummary>, PipelineError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Connectors(reply))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map_err(|_| PipelineError::Stopped)
    }

    /// A connector's items per hour over the last two weeks.
    pub async fn hourly_volume(
        &self,
        tenant: &str,
        connector: &str,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, u64)>, PipelineError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Hourly(tenant.to_owned(), connector.to_owned(), reply))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map_err(|_| PipelineError::Stopped)
    }

    /// Re-baselines one connector; false when the detector does not know it.
    pub async fn rebaseline(&self, tenant: &str, connector: &str) -> Result<bool, PipelineError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Rebaseline(
                tenant.to_owned(),
                connector.to_owned(),
                reply,
            ))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map_err(|_| PipelineError::Stopped)
    }

    /// [`Pipeline::send`] from a plain thread (sources that poll with blocking I/O).
    pub fn send_blocking(&self, events: Vec<Event>) -> Result<(), PipelineError> {
        let n = events.len() as u64;
        self.tx
            .blocking_send(Msg::Events(events))
            .map_err(|_| PipelineError::Stopped)?;
        self.metrics.events_in.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Polls the Management Activity API every `every` on its own thread and feeds the events
    /// in; errors are logged and retried at the next poll (the cursor is only advanced past
    /// windows read completely).
    pub fn start_management_api(
        &self,
        config: management_api_source::ManagementApiConfig,
        store: Arc<dyn AlertStore>,
        every: std::time::Duration,
    ) -> Result<(), PipelineError> {
        let mut source = management_api_source::ManagementApiSource::new(config, store)
            .map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
        let pipeline = self.clone();
        std::thread::Builder::new()
            .name("management-api".into())
            .spawn(move || loop {
                match source.poll(chrono::Utc::now()) {
                    Ok(events) => {
                        let n = events.len();
                        if !events.is_empty() && pipeline.send_blocking(events).is_err() {
                            return;
                        }
                        tracing::info!(events = n, blobs = source.stats.blobs, duplicates = source.stats.duplicates, expired = source.stats.expired, "management API polled");
                    }
                    Err(e) => tracing::warn!(error = %e, "management API poll failed; retrying at the next poll"),
                }
                std::thread::sleep(every);
            })
            .expect("spawn source thread");
        Ok(())
    }

    /// Tails a directory on its own thread, polling every `every`.
    pub fn start_tail(
        &self,
        dir: PathBuf,
        store: Arc<dyn AlertStore>,
        every: std::time::Duration,
    ) -> Result<(), PipelineError> {
        let mut tail = directory_tail::DirectoryTail::new(&dir, store)?;
        let pipeline = self.clone();
        std::thread::Builder::new()
            .name("tail".into())
            .spawn(move || loop {
                let mut stats = directory_tail::TailStats::default();
                match tail.poll(&mut stats) {
                    Ok(events) => {
                        for _ in 0..stats.rejected {
                            pipeline.metrics.reject("tailed_record");
                        }
                        if !events.is_empty() {
                            tracing::info!(dir = %dir.display(), events = events.len(), files = stats.files, "tailed");
                            if pipeline.send_blocking(events).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "tail checkpoint failed"),
                }
                std::thread::sleep(every);
            })
            .expect("spawn tail thread");
        Ok(())
    }

    /// Waits until everything sent so far is processed and its alerts committed.
    pub async fn flush(&self) -> Result<(), PipelineError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map_err(|_| PipelineError::Stopped)
    }

    /// Processes what is queued, commits, checkpoints and stops the detector thread.
    pub async fn shutdown(&self) -> Result<(), PipelineError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Shutdown(done))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map_err(|_| PipelineError::Stopped)
    }

    /// Replays files (any formats, event-time merged) into the pipeline in batches, decoding
    /// on a blocking thread. Returns (records, events, rejected).
    pub async fn replay_files(
        &self,
        files: Vec<PathBuf>,
    ) -> Result<(u64, u64, u64), PipelineError> {
        self.replay_files_paced(files, None).await
    }

    /// [`Pipeline::replay_files`], pacing batches so that event time runs `speed` times faster
    /// than the wall clock (`None`: as fast as possible).
    pub async fn replay_files_paced(
        &self,
        files: Vec<PathBuf>,
        speed: Option<f64>,
    ) -> Result<(u64, u64, u64), PipelineError> {
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(8);
        let metrics = self.metrics.clone();
        let decoder = tokio::task::spawn_blocking(move || {
            let mut merged = MergedEvents::new(files, DecodeOptions::default());
            let mut batch = Vec::with_capacity(1024);
            for item in merged.by_ref() {
                match item {
                    Decoded::Event(e) => {
                        batch.push(e);
                        if batch.len() == 1024
                            && tx.blocking_send(std::mem::take(&mut batch)).is_err()
                        {
                            break;
                        }
                    }
                    Decoded::Reject(r) => metrics.reject(r.error.class.name()),
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            let s = merged.stats();
            (s.records, s.events, s.rejected_total())
        });
        let wall_start = tokio::time::Instant::now();
        let mut event_start: Option<i64> = None;
        while let Some(batch) = rx.recv().await {
            if let (Some(speed), Some(last)) = (speed.filter(|s| *s > 0.0), batch.last()) {
                let t = last.time.timestamp();
                let first = *event_start.get_or_insert(t);
                let due = std::time::Duration::from_secs_f64(
                    ((t - first).max(0) as f64 / speed).min(86_400.0),
                );
                tokio::time::sleep_until(wall_start + due).await;
            }
            self.send(batch).await?;
        }
        decoder.await.map_err(|_| PipelineError::Stopped)
    }
}
