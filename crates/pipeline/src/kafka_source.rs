//! A Kafka source (Azure Event Hubs speaks the same protocol): raw log records from a topic,
//! read in a consumer group so several mailsentry instances share the partitions.
//!
//! - **One detector per partition.** Producers key records by tenant (`mailsentry publish` does),
//!   so a tenant's records — and so each connector's state — live in exactly one partition. Each
//!   assigned partition gets its own detector shard, checkpointed in the store under
//!   `kafka/<topic>/<partition>`; whichever instance owns the partition next restores it, so a
//!   moved tenant keeps its baseline.
//! - **Offsets follow durable state.** A shard's checkpoint holds the offset after the last record
//!   it absorbed, saved in the same write as its state, after the alerts that state raised were
//!   committed. Offsets are committed to Kafka only after such a checkpoint, with the offset it
//!   covers. An instance that dies loses only what came after its last checkpoint; the next
//!   owner re-reads from the committed offset, skips what the checkpoint already covers, and
//!   re-raises the same alerts (alert ids are stable, the store upserts): nothing is lost and
//!   nothing is doubled.
//! - **Rebalance**: partitions being revoked are flushed, checkpointed and committed inside the
//!   rebalance callback, before the group hands them to another member.
//!
//! A message's value is any input the decoders read: one JSON record, NDJSON, a JSON array, an
//! Entra `{"records":[...]}` envelope (what Event Hubs delivers). Records that do not decode are
//! counted by reject class and never stop the partition.

use crate::{Pipeline, PipelineError};
use mailsentry_events::Event;
use mailsentry_ingest::{decode_bytes, DecodeOptions, Decoded};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TLS 1.2 suites mailsentry allows toward a broker: ECDHE with AEAD only (OpenSSL names; TLS 1.3
/// suites are all AEAD and forward-secret). No TLS 1.0/1.1 suite is in the list, so those
/// versions cannot be negotiated either.
pub const KAFKA_TLS12_SUITES: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305";

/// A librdkafka client configuration for `brokers` with the user's `properties` (security
/// protocol, SASL, CA ...) applied. Over TLS (`security.protocol` `SSL` or `SASL_SSL`, as Azure
/// Event Hubs requires) the TLS 1.2 suites are limited to [`KAFKA_TLS12_SUITES`] unless the
/// properties name their own. librdkafka speaks TLS through OpenSSL, not rustls: it is the one
/// TLS stack in mailsentry that is not rustls, held to the same suites.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    let tls = c
        .get("security.protocol")
        .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"));
    if tls && c.get("ssl.cipher.suites").is_none() {
        c.set("ssl.cipher.suites", KAFKA_TLS12_SUITES);
    }
    c
}

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,...`).
    pub brokers: String,
    /// The topic of raw log records.
    pub topic: String,
    /// Consumer group: instances with the same group share the partitions.
    pub group: String,
    /// Longest time between checkpoints (and offset commits) of each partition.
    pub checkpoint_every: Duration,
    /// Events per batch handed to a partition's detector.
    pub batch: usize,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `session.timeout.ms` ...).
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Defaults for `brokers`, `topic` and `group`.
    pub fn new(brokers: &str, topic: &str, group: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            checkpoint_every: Duration::from_secs(10),
            batch: 1024,
            properties: Vec::new(),
        }
    }
}

/// Counters of the Kafka source.
#[derive(Debug, Default)]
pub struct KafkaStats {
    /// Messages read.
    pub messages: AtomicU64,
    /// Events decoded from them.
    pub events: AtomicU64,
    /// Records rejected by the decoders.
    pub rejected: AtomicU64,
    /// Messages skipped because a restored checkpoint already covered them.
    pub already_absorbed: AtomicU64,
    /// Offsets that never arrived between two consecutive reads of a partition (a compacted
    /// or truncated topic, or a broker that skipped records).
    pub gaps: AtomicU64,
    /// Offset commits.
    pub commits: AtomicU64,
    /// Partitions assigned to this instance over its life.
    pub assigned: AtomicU64,
    /// Partitions revoked from this instance over its life.
    pub revoked: AtomicU64,
}

/// A partition this instance owns.
struct OwnedPartition {
    /// The next offset to absorb (what a checkpoint covers).
    next: i64,
    /// Events read but not yet handed to the detector.
    batch: Vec<Event>,
}

/// What the consumer loop and the rebalance callback share.
struct Owned {
    pipeline: Pipeline,
    topic: String,
    partitions: BTreeMap<i32, OwnedPartition>,
}

/// The checkpoint name of a partition's detector.
pub fn shard_name(topic: &str, partition: i32) -> String {
    format!("kafka/{topic}/{partition}")
}

impl Owned {
    fn flush(&mut self, partition: i32) -> Result<(), PipelineError> {
        let name = shard_name(&self.topic, partition);
        if let Some(p) = self.partitions.get_mut(&partition) {
            if !p.batch.is_empty() {
                let batch = std::mem::take(&mut p.batch);
                self.pipeline.send_to_shard_blocking(&name, batch, p.next)?;
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), PipelineError> {
        let parts: Vec<i32> = self.partitions.keys().copied().collect();
        for p in parts {
            self.flush(p)?;
        }
        Ok(())
    }

    /// Flushes, checkpoints every partition and returns the offsets to commit.
    fn checkpoint_all(&mut self) -> Result<TopicPartitionList, PipelineError> {
        self.flush_all()?;
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions.keys() {
            let name = shard_name(&self.topic, *p);
            if let Some(position) = self.pipeline.checkpoint_shard_blocking(&name)? {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(position));
            }
        }
        Ok(tpl)
    }

    /// Flushes, checkpoints and closes the partitions being revoked; returns their offsets.
    fn release(&mut self, revoked: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in revoked {
            if !self.partitions.contains_key(p) {
                continue;
            }
            if let Err(e) = self.flush(*p) {
                tracing::error!(partition = p, error = %e, "flushing a revoked partition failed");
            }
            self.partitions.remove(p);
            let name = shard_name(&self.topic, *p);
            match self.pipeline.close_shard_blocking(&name) {
                Ok(Some(position)) => {
                    let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(position));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "closing a revoked partition failed")
                }
            }
        }
        tpl
    }
}

struct RebalanceContext {
    owned: Arc<Mutex<Owned>>,
    stats: Arc<KafkaStats>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            let tpl = self
                .owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .release(&revoked);
            self.stats
                .revoked
                .fetch_add(revoked.len() as u64, Ordering::Relaxed);
            if tpl.count() > 0 {
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => {
                        self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "committing revoked partitions failed; their checkpoints still hold the position")
                    }
                }
            }
            tracing::info!(partitions = ?revoked, "kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                self.stats
                    .assigned
                    .fetch_add(assigned.len() as u64, Ordering::Relaxed);
                tracing::info!(partitions = ?assigned, "kafka partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A running Kafka source: stop it to checkpoint and commit what it owns.
pub struct KafkaSource {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<KafkaStats>,
}

/// Kafka source errors.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The client could not be created or subscribe.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl KafkaSource {
    /// Joins the group, subscribes and starts consuming on its own thread.
    pub fn start(config: KafkaConfig, pipeline: Pipeline) -> Result<KafkaSource, KafkaSourceError> {
        let stats = pipeline.metrics.kafka.clone();
        let owned = Arc::new(Mutex::new(Owned {
            pipeline: pipeline.clone(),
            topic: config.topic.clone(),
            partitions: BTreeMap::new(),
        }));
        let mut client = client_config(&config.brokers, &config.properties);
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("client.id", "mailsentry")
            // Wait little for a fetch to fill: some brokers (tansu 0.6 among them) hold every
            // fetch for the full wait even when data is there, which capped a partition at one
            // megabyte per half second (measured: 14 k against 49 k records/s).
            .set("fetch.wait.max.ms", "20");
        for (k, v) in &config.properties {
            // The user's settings win over the defaults above.
            client.set(k, v);
        }
        let consumer: BaseConsumer<RebalanceContext> =
            client.create_with_context(RebalanceContext {
                owned: owned.clone(),
                stats: stats.clone(),
            })?;
        consumer.subscribe(&[&config.topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("kafka".into())
                .spawn(move || consume(consumer, config, owned, stats, stop, pipeline))
                .expect("spawn kafka thread")
        };
        Ok(KafkaSource {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Stops consuming: checkpoints every owned partition, commits their offsets and leaves
    /// the group (its partitions go to the other members).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn commit(consumer: &BaseConsumer<RebalanceContext>, tpl: &TopicPartitionList, stats: &KafkaStats) {
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(tpl, CommitMode::Sync) {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(error = %e, "kafka offset commit failed; retried at the next checkpoint")
        }
    }
}

fn consume(
    consumer: BaseConsumer<RebalanceContext>,
    config: KafkaConfig,
    owned: Arc<Mutex<Owned>>,
    stats: Arc<KafkaStats>,
    stop: Arc<AtomicBool>,
    pipeline: Pipeline,
) {
    let lock = || owned.lock().unwrap_or_else(|p| p.into_inner());
    let mut last_flush = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        let mut state = lock();
        match polled {
            Some(Ok(message)) => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                let partition = message.partition();
                let offset = message.offset();
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    state.partitions.entry(partition)
                {
                    let name = shard_name(&config.topic, partition);
                    match pipeline.open_shard(&name) {
                        Ok(position) => {
                            slot.insert(OwnedPartition {
                                next: position.unwrap_or(offset),
                                batch: Vec::new(),
                            });
                        }
                        Err(e) => {
                            // Without its state the partition cannot be processed correctly;
                            // stop rather than build a baseline from nothing.
                            tracing::error!(shard = %name, error = %e, "restoring a partition's detector failed; the source stops");
                            return;
                        }
                    }
                }
                let Some(part) = state.partitions.get_mut(&partition) else {
                    continue;
                };
                if offset < part.next {
                    stats.already_absorbed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if offset > part.next {
                    let missing = (offset - part.next) as u64;
                    stats.gaps.fetch_add(missing, Ordering::Relaxed);
                    tracing::warn!(
                        partition,
                        from = part.next,
                        to = offset,
                        missing,
                        "kafka offsets skipped"
                    );
                }
                if let Some(payload) = message.payload() {
                    let origin = format!("kafka:{}/{partition}@{offset}", config.topic);
                    let (items, _) = decode_bytes(&origin, payload, DecodeOptions::default());
                    for item in items {
                        match item {
                            Decoded::Event(e) => {
                                stats.events.fetch_add(1, Ordering::Relaxed);
                                part.batch.push(e);
                            }
                            Decoded::Reject(r) => {
                                stats.rejected.fetch_add(1, Ordering::Relaxed);
                                pipeline.metrics.reject(r.error.class.name());
                                tracing::debug!(reject = %r, "kafka record rejected");
                            }
                        }
                    }
                }
                part.next = offset + 1;
                if part.batch.len() >= config.batch {
                    if let Err(e) = state.flush(partition) {
                        tracing::error!(error = %e, "the detector stopped; the kafka source stops");
                        return;
                    }
                }
            }
            Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                tracing::warn!(error = %e, "kafka consumer error");
                last_error = Some(Instant::now());
            }
            Some(Err(_)) => {}
            None => {}
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            if let Err(e) = state.flush_all() {
                tracing::error!(error = %e, "the detector stopped; the kafka source stops");
                return;
            }
            last_flush = Instant::now();
        }
        if last_checkpoint.elapsed() >= config.checkpoint_every {
            match state.checkpoint_all() {
                Ok(tpl) => {
                    drop(state);
                    commit(&consumer, &tpl, &stats);
                }
                Err(e) => tracing::error!(error = %e, "kafka checkpoint failed"),
            }
            last_checkpoint = Instant::now();
        }
    }
    // Stopping: hand every partition back with its state saved and its offset committed.
    let parts: Vec<i32> = lock().partitions.keys().copied().collect();
    let tpl = lock().release(&parts);
    commit(&consumer, &tpl, &stats);
    consumer.unsubscribe();
}
