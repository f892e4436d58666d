//! The live pipeline: events go through a bounded channel (senders wait when the detector is
//! behind: backpressure) to one detector thread, off the async workers; after each batch the
//! alerts that are new or changed are committed to the store; the detector's state is
//! checkpointed to the store periodically and at shutdown, and restored at start.

pub mod directory_tail;
pub mod kafka_publish;
pub mod kafka_source;
pub mod management_api_source;
pub mod sinks;

use mailsentry_detect::model::Model;
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
    /// Analyst labels a detector knew the alert of and applied.
    pub labels_applied: AtomicU64,
    /// The Kafka source's counters (zero without one).
    pub kafka: Arc<kafka_source::KafkaStats>,
    /// Models loaded (at start and on every change of the model file).
    pub model_loads: AtomicU64,
    /// Model files refused (unreadable, invalid, another feature schema); the previous model
    /// stays in use.
    pub model_load_errors: AtomicU64,
    /// The model in use, by name (`None`: no model layer).
    pub model_name: std::sync::Mutex<Option<String>>,
}

impl Metrics {
    /// Counts a reject of `class`.
    pub fn reject(&self, class: &str) {
        let mut m = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(class.to_owned()).or_default() += 1;
    }
}

enum Msg {
    /// Events, and the source position after them (a Kafka offset) when the source has one.
    Events(Vec<Event>, Option<i64>),
    Label(String, String),
    Connectors(oneshot::Sender<Vec<mailsentry_detect::ConnectorSummary>>),
    Hourly(
        String,
        String,
        oneshot::Sender<Vec<(chrono::DateTime<chrono::Utc>, u64)>>,
    ),
    Rebaseline(String, String, oneshot::Sender<bool>),
    Model(Option<Arc<Model>>),
    Flush(oneshot::Sender<()>),
    Checkpoint(oneshot::Sender<Option<i64>>),
    Shutdown(oneshot::Sender<Option<i64>>),
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
///
/// It runs one detector thread for the events sent to it directly, and any number of named
/// *shards* — more detector threads, each with its own state and checkpoint — that a
/// partitioned source (Kafka) opens and closes as partitions are assigned and revoked. Labels,
/// connector views and re-baselining reach every detector.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Msg>,
    shards: Arc<std::sync::Mutex<std::collections::BTreeMap<String, mpsc::Sender<Msg>>>>,
    spawner: Arc<DetectorSpawner>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Batches between checkpoints.
const CHECKPOINT_EVERY: u64 = 200;

/// What a detector thread is started with.
struct DetectorSpawner {
    config: DetectConfig,
    enrichment: Arc<Enrichment>,
    store: Arc<dyn AlertStore>,
    capacity: usize,
    checkpoint_every: std::time::Duration,
    /// The model every detector uses, including shards opened later.
    model: std::sync::RwLock<Option<Arc<Model>>>,
}

/// A checkpoint is the detector's snapshot, preceded by `position N\n` when the detector's
/// input has a position (a Kafka offset): state and position are saved in one write, so a
/// restored detector knows exactly which input it has already absorbed.
fn encode_checkpoint(position: Option<i64>, snapshot: Vec<u8>) -> Vec<u8> {
    match position {
        None => snapshot,
        Some(p) => {
            let mut out = format!("position {p}\n").into_bytes();
            out.extend_from_slice(&snapshot);
            out
        }
    }
}

/// Splits a checkpoint into its position (if any) and the detector snapshot.
fn decode_checkpoint(bytes: &[u8]) -> (Option<i64>, &[u8]) {
    if let Some(rest) = bytes.strip_prefix(b"position ") {
        if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if let Some(p) = std::str::from_utf8(&rest[..nl])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                return (Some(p), &rest[nl + 1..]);
            }
        }
    }
    (None, bytes)
}

impl DetectorSpawner {
    /// Starts a detector thread whose state is checkpointed under `name`; returns its channel
    /// and the input position its checkpoint had absorbed.
    fn spawn(
        &self,
        name: &str,
        metrics: Arc<Metrics>,
    ) -> Result<(mpsc::Sender<Msg>, Option<i64>), PipelineError> {
        let store = self.store.clone();
        let (mut detector, mut position) = match store.load_checkpoint(name)? {
            Some(bytes) => {
                let (position, snapshot) = decode_checkpoint(&bytes);
                let mut d = Detector::restore(snapshot, self.enrichment.clone())
                    .map_err(|e| PipelineError::Checkpoint(format!("{name}: {e}")))?;
                d.set_config(self.config.clone());
                (d, position)
            }
            None => (
                Detector::new(self.config.clone(), self.enrichment.clone()),
                None,
            ),
        };
        detector.set_model(self.model.read().unwrap_or_else(|p| p.into_inner()).clone());
        let restored = position;
        let (tx, mut rx) = mpsc::channel::<Msg>(self.capacity.max(1));
        let m = metrics;
        let checkpoint_every = self.checkpoint_every;
        let checkpoint_name = name.to_owned();
        std::thread::Builder::new()
            .name(format!("detector-{name}"))
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
                // Alerts are committed before the state that produced them is checkpointed, so
                // a checkpoint never covers an alert the store does not have.
                let checkpoint = |detector: &Detector, position: Option<i64>| -> bool {
                    match store.save_checkpoint(
                        &checkpoint_name,
                        &encode_checkpoint(position, detector.snapshot()),
                    ) {
                        Ok(()) => {
                            m.checkpoints.fetch_add(1, Ordering::Relaxed);
                            true
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "checkpoint failed");
                            false
                        }
                    }
                };
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Msg::Events(events, at) => {
                            let _span = tracing::debug_span!("detect_batch", events = events.len()).entered();
                            for e in &events {
                                detector.process(e);
                            }
                            if at.is_some() {
                                position = at;
                            }
                            m.events_processed
                                .fetch_add(events.len() as u64, Ordering::Relaxed);
                            commit(&detector);
                            batches += 1;
                            if batches.is_multiple_of(CHECKPOINT_EVERY) || last_checkpoint.elapsed() >= checkpoint_every {
                                checkpoint(&detector, position);
                                last_checkpoint = std::time::Instant::now();
                            }
                        }
                        Msg::Label(id, label) => {
                            if detector.apply_label(&id, &label) {
                                m.labels_applied.fetch_add(1, Ordering::Relaxed);
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
                                checkpoint(&detector, position);
                            }
                            let _ = reply.send(done);
                        }
                        Msg::Model(model) => detector.set_model(model),
                        Msg::Flush(done) => {
                            commit(&detector);
                            let _ = done.send(());
                        }
                        Msg::Checkpoint(done) => {
                            commit(&detector);
                            let saved = checkpoint(&detector, position);
                            last_checkpoint = std::time::Instant::now();
                            let _ = done.send(if saved { position } else { None });
                        }
                        Msg::Shutdown(done) => {
                            commit(&detector);
                            let saved = checkpoint(&detector, position);
                            let _ = done.send(if saved { position } else { None });
                            return;
                        }
                    }
                }
                commit(&detector);
                checkpoint(&detector, position);
            })
            .expect("spawn detector thread");
        Ok((tx, restored))
    }
}

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
        let spawner = Arc::new(DetectorSpawner {
            config,
            enrichment,
            store,
            capacity,
            checkpoint_every,
            model: std::sync::RwLock::new(None),
        });
        let metrics = Arc::new(Metrics::default());
        let (tx, _) = spawner.spawn(CHECKPOINT, metrics.clone())?;
        Ok(Pipeline {
            tx,
            shards: Default::default(),
            spawner,
            metrics,
        })
    }

    fn shard(&self, name: &str) -> Option<mpsc::Sender<Msg>> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every detector's channel: the main one and each shard's.
    fn detectors(&self) -> Vec<mpsc::Sender<Msg>> {
        let mut all = vec![self.tx.clone()];
        all.extend(
            self.shards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        all
    }

    /// Opens the shard `name` (a detector restored from the checkpoint of that name, if any)
    /// and returns the input position its checkpoint had absorbed. Opening an open shard only
    /// returns `None`.
    pub fn open_shard(&self, name: &str) -> Result<Option<i64>, PipelineError> {
        if self.shard(name).is_some() {
            return Ok(None);
        }
        let (tx, position) = self.spawner.spawn(name, self.metrics.clone())?;
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), tx);
        tracing::info!(shard = name, ?position, "detector shard opened");
        Ok(position)
    }

    /// Sends a batch to a shard from a plain thread, with the input position after it.
    pub fn send_to_shard_blocking(
        &self,
        name: &str,
        events: Vec<Event>,
        position: i64,
    ) -> Result<(), PipelineError> {
        let n = events.len() as u64;
        self.shard(name)
            .ok_or(PipelineError::Stopped)?
            .blocking_send(Msg::Events(events, Some(position)))
            .map_err(|_| PipelineError::Stopped)?;
        self.metrics.events_in.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Commits and checkpoints a shard now (from a plain thread); returns the position the
    /// saved checkpoint covers (`None` when nothing positioned was saved).
    pub fn checkpoint_shard_blocking(&self, name: &str) -> Result<Option<i64>, PipelineError> {
        let (done, wait) = oneshot::channel();
        self.shard(name)
            .ok_or(PipelineError::Stopped)?
            .blocking_send(Msg::Checkpoint(done))
            .map_err(|_| PipelineError::Stopped)?;
        wait.blocking_recv().map_err(|_| PipelineError::Stopped)
    }

    /// Commits, checkpoints and stops a shard (from a plain thread); returns the position its
    /// last checkpoint covers.
    pub fn close_shard_blocking(&self, name: &str) -> Result<Option<i64>, PipelineError> {
        let tx = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or(PipelineError::Stopped)?;
        let (done, wait) = oneshot::channel();
        tx.blocking_send(Msg::Shutdown(done))
            .map_err(|_| PipelineError::Stopped)?;
        let position = wait.blocking_recv().map_err(|_| PipelineError::Stopped)?;
        tracing::info!(shard = name, ?position, "detector shard closed");
        Ok(position)
    }

    /// The names of the open shards.
    pub fn shard_names(&self) -> Vec<String> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Sends a batch; waits while the channel is full (backpressure).
    pub async fn send(&self, events: Vec<Event>) -> Result<(), PipelineError> {
        let n = events.len() as u64;
        self.tx
            .send(Msg::Events(events, None))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        self.metrics.events_in.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Passes an analyst's label to the detector (a false positive releases the incident's
    /// quarantined sessions into the baseline and suppresses its sources).
    pub async fn label(&self, alert_id: &str, label: &str) -> Result<(), PipelineError> {
        // Only the detector that raised the alert knows it; the others ignore the label.
        for tx in self.detectors() {
            tx.send(Msg::Label(alert_id.to_owned(), label.to_owned()))
                .await
                .map_err(|_| PipelineError::Stopped)?;
        }
        Ok(())
    }

    /// Asks every detector and gathers the replies.
    async fn ask_all<T>(
        &self,
        msg: impl Fn(oneshot::Sender<T>) -> Msg,
    ) -> Result<Vec<T>, PipelineError> {
        let mut replies = Vec::new();
        for tx in self.detectors() {
            let (reply, wait) = oneshot::channel();
            if tx.send(msg(reply)).await.is_err() {
                // A shard closed in between (its partition moved): it has nothing to say.
                continue;
            }
            if let Ok(r) = wait.await {
                replies.push(r);
            }
        }
        if replies.is_empty() {
            return Err(PipelineError::Stopped);
        }
        Ok(replies)
    }

    /// What the detectors have learned about each connector.
    pub async fn connectors(
        &self,
    ) -> Result<Vec<mailsentry_detect::ConnectorSummary>, PipelineError> {
        let all = self.ask_all(Msg::Connectors).await?;
        Ok(all.into_iter().flatten().collect())
    }

    /// A connector's items per hour over the last two weeks.
    pub async fn hourly_volume(
        &self,
        tenant: &str,
        connector: &str,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, u64)>, PipelineError> {
        let all = self
            .ask_all(|r| Msg::Hourly(tenant.to_owned(), connector.to_owned(), r))
            .await?;
        Ok(all.into_iter().find(|h| !h.is_empty()).unwrap_or_default())
    }

    /// Re-baselines one connector; false when no detector knows it.
    pub async fn rebaseline(&self, tenant: &str, connector: &str) -> Result<bool, PipelineError> {
        let all = self
            .ask_all(|r| Msg::Rebaseline(tenant.to_owned(), connector.to_owned(), r))
            .await?;
        Ok(all.into_iter().any(|d| d))
    }

    /// [`Pipeline::send`] from a plain thread (sources that poll with blocking I/O).
    pub fn send_blocking(&self, events: Vec<Event>) -> Result<(), PipelineError> {
        let n = events.len() as u64;
        self.tx
            .blocking_send(Msg::Events(events, None))
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

    /// Puts `model` (or, with `None`, no model) into every detector, and into every shard
    /// opened later. Sessions scored from the moment each detector receives it use it.
    pub fn set_model(&self, model: Option<Arc<Model>>) {
        *self
            .spawner
            .model
            .write()
            .unwrap_or_else(|p| p.into_inner()) = model.clone();
        *self
            .metrics
            .model_name
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = model.as_ref().map(|m| m.name.clone());
        for tx in self.detectors() {
            // A detector that closed meanwhile needs no model.
            let _ = tx.blocking_send(Msg::Model(model.clone()));
        }
    }

    /// Loads the model at `dir` now (an error is returned: a model asked for at start must
    /// load) and then watches its file on its own thread, every `every`: a changed file is
    /// loaded and swapped in without a restart; one that does not load (unreadable, invalid,
    /// trained on another feature schema) is logged and counted, and the model in use stays.
    pub fn start_model_watcher(
        &self,
        dir: std::path::PathBuf,
        every: std::time::Duration,
    ) -> Result<(), mailsentry_detect::model::ModelError> {
        let file = if dir.is_dir() {
            dir.join(mailsentry_detect::model::MODEL_FILE)
        } else {
            dir.clone()
        };
        let stamp = |f: &std::path::Path| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let model = Model::load(&dir)?;
        tracing::info!(model = %model.name, path = %file.display(), "model loaded");
        self.metrics.model_loads.fetch_add(1, Ordering::Relaxed);
        let mut seen = stamp(&file);
        let pipeline = self.clone();
        // Detectors are reached through blocking sends, which the async runtime forbids: the
        // first model is handed over on the watcher's thread too.
        let mut first = Some(Arc::new(model));
        std::thread::Builder::new()
            .name("model-watch".into())
            .spawn(move || loop {
                if let Some(model) = first.take() {
                    pipeline.set_model(Some(model));
                }
                std::thread::sleep(every);
                let now = stamp(&file);
                if now == seen {
                    continue;
                }
                seen = now;
                match Model::load(&dir) {
                    Ok(model) => {
                        tracing::info!(model = %model.name, path = %file.display(), "model changed on disk; reloaded");
                        pipeline.metrics.model_loads.fetch_add(1, Ordering::Relaxed);
                        pipeline.set_model(Some(Arc::new(model)));
                    }
                    Err(e) => {
                        pipeline
                            .metrics
                            .model_load_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "model file changed but was refused; the model in use stays");
                    }
                }
            })
            .expect("spawn model watcher thread");
        Ok(())
    }

    /// Follows the shared store's feed on its own thread and passes every analyst label to this
    /// instance's detectors, so a label set through any instance reaches the instance whose
    /// detector raised the alert (the others ignore it). Starts at the feed's current end.
    pub fn start_label_follower(
        &self,
        store: Arc<dyn AlertStore>,
        every: std::time::Duration,
    ) -> Result<(), PipelineError> {
        let mut cursor = store.counts()?.sequence;
        let pipeline = self.clone();
        std::thread::Builder::new()
            .name("labels".into())
            .spawn(move || loop {
                match store.feed(cursor, 500) {
                    Ok(page) => {
                        for item in &page.items {
                            if let Some(label) = &item.alert.label {
                                for tx in pipeline.detectors() {
                                    // A detector that closed meanwhile has nothing to learn.
                                    let _ = tx.blocking_send(Msg::Label(
                                        item.alert.id.clone(),
                                        label.clone(),
                                    ));
                                }
                            }
                        }
                        cursor = page.next_cursor;
                        if page.has_more {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "following labels failed; retrying"),
                }
                std::thread::sleep(every);
            })
            .expect("spawn label thread");
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
        self.ask_all(Msg::Flush).await.map(|_| ())
    }

    /// Processes what is queued, commits, checkpoints and stops every detector thread.
    pub async fn shutdown(&self) -> Result<(), PipelineError> {
        let shards: Vec<(String, mpsc::Sender<Msg>)> =
            std::mem::take(&mut *self.shards.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        for (_, tx) in shards {
            let (done, wait) = oneshot::channel();
            if tx.send(Msg::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Shutdown(done))
            .await
            .map_err(|_| PipelineError::Stopped)?;
        wait.await.map(|_| ()).map_err(|_| PipelineError::Stopped)
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

#[cfg(test)]
mod tests {
    use super::{decode_checkpoint, encode_checkpoint};

    #[test]
    fn a_checkpoint_keeps_its_position_next_to_the_state() {
        let snap = br#"{"config":{}}"#.to_vec();
        assert_eq!(encode_checkpoint(None, snap.clone()), snap);
        let with = encode_checkpoint(Some(12_345), snap.clone());
        assert_eq!(decode_checkpoint(&with), (Some(12_345), &snap[..]));
        assert_eq!(decode_checkpoint(&snap), (None, &snap[..]));
        // A damaged header is left to the snapshot parser, which names the error.
        assert_eq!(decode_checkpoint(b"position x\n{}").0, None);
    }
}
