//! Publishing log files to a Kafka topic, one record per message, keyed by tenant and in event
//! time order: what a collector does in front of mailsentry, and what data engineers use to
//! replay logs onto a bus (`mailsentry publish`).
//!
//! JSON inputs are split into records (NDJSON lines; the elements of a content-blob array or of
//! an Entra `{"records":[...]}` / OData `{"value":[...]}` envelope). Line- and message-oriented
//! files (IIS W3C, EWS CSV, mbox) are not bus formats: they are counted as skipped files and
//! belong to the directory tail. The records of all inputs are held in memory to be ordered.

use mailsentry_ingest::{collect_input_files, decode_bytes, sniff_format, DecodeOptions, Decoded};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// What a publication did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishStats {
    /// Records sent.
    pub records: u64,
    /// Files read.
    pub files: u64,
    /// Files skipped (not a JSON bus format, or unreadable), with the reason.
    pub skipped_files: Vec<(PathBuf, String)>,
    /// Distinct keys (tenants).
    pub keys: u64,
    /// Per partition: records delivered and the offset after the last one (from the broker's
    /// delivery reports), so a reader knows exactly where this publication ends.
    pub partitions: std::collections::BTreeMap<i32, (u64, i64)>,
    /// Records the broker did not acknowledge.
    pub failed: u64,
}

/// Collects delivery reports.
#[derive(Default)]
struct Deliveries {
    partitions: std::sync::Mutex<std::collections::BTreeMap<i32, (u64, i64)>>,
    failed: std::sync::atomic::AtomicU64,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => {
                let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
                let e = parts.entry(m.partition()).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(m.offset() + 1);
            }
            Err(_) => {
                self.failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Publish errors.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker refused or failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Topic creation failed.
    #[error("creating topic {topic}: {reason}")]
    Topic {
        /// Topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// One record ready to send.
struct Outgoing {
    time: i64,
    key: String,
    value: Vec<u8>,
}

/// The records of every file, merged in the order the file replay reads them
/// ([`mailsentry_ingest::MergedEvents`]): files sorted by (first event time, path), then
/// repeatedly the file whose next record is earliest (ties to the earlier file), each file's
/// records in file order. A tenant's partition then carries exactly the sequence a single
/// detector replaying the files would see for that tenant.
fn merge_like_replay(mut files: Vec<(PathBuf, Vec<Outgoing>)>) -> Vec<Outgoing> {
    use std::cmp::Reverse;
    files.retain(|(_, r)| !r.is_empty());
    files.sort_by(|a, b| (a.1[0].time, &a.0).cmp(&(b.1[0].time, &b.0)));
    let total = files.iter().map(|(_, r)| r.len()).sum();
    let mut streams: Vec<std::vec::IntoIter<Outgoing>> =
        files.into_iter().map(|(_, r)| r.into_iter()).collect();
    let mut heads: Vec<Option<Outgoing>> = streams.iter_mut().map(Iterator::next).collect();
    let mut heap: std::collections::BinaryHeap<Reverse<(i64, usize)>> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.as_ref().map(|o| Reverse((o.time, i))))
        .collect();
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, slot))) = heap.pop() {
        out.push(heads[slot].take().expect("a heap entry has its head"));
        if let Some(next) = streams[slot].next() {
            heap.push(Reverse((next.time, slot)));
            heads[slot] = Some(next);
        }
    }
    out
}

fn read_all(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut raw)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        return Ok(out);
    }
    Ok(raw)
}

/// Splits a JSON input into its records.
fn split_json(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let trimmed = bytes.trim_ascii();
    let first_line = trimmed.split(|&b| b == b'\n').next().unwrap_or_default();
    let one_per_line = serde_json::from_slice::<serde_json::Value>(first_line).is_ok();
    if one_per_line && first_line.len() < trimmed.len() {
        return Ok(trimmed
            .split(|&b| b == b'\n')
            .map(|l| l.trim_ascii())
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect());
    }
    let doc: serde_json::Value =
        serde_json::from_slice(trimmed).map_err(|e| format!("not JSON: {e}"))?;
    let items = match doc {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut map) => {
            match ["records", "value"]
                .iter()
                .find_map(|k| match map.remove(*k) {
                    Some(serde_json::Value::Array(a)) => Some(a),
                    _ => None,
                }) {
                Some(items) => items,
                None => vec![serde_json::Value::Object(map)],
            }
        }
        other => vec![other],
    };
    Ok(items
        .iter()
        .map(|v| serde_json::to_vec(v).expect("a JSON value serializes"))
        .collect())
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    properties: &[(String, String)],
) -> Result<(), PublishError> {
    let admin: AdminClient<DefaultClientContext> =
        crate::kafka_source::client_config(brokers, properties).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor(admin.create_topics([&new], &opts))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(PublishError::Topic {
                    topic: t,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Drives an rdkafka admin future to completion on this thread (the admin client has its own
/// background thread; the future only waits for its answer).
fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(f)
}

/// Publishes the records of `paths` (files or directories) to `topic`.
pub fn publish(
    brokers: &str,
    topic: &str,
    paths: &[PathBuf],
    properties: &[(String, String)],
) -> Result<PublishStats, PublishError> {
    let mut stats = PublishStats::default();
    let mut files: Vec<(PathBuf, Vec<Outgoing>)> = Vec::new();
    for entry in collect_input_files(paths) {
        let path = match entry {
            Ok(p) => p,
            Err((p, e)) => {
                stats.skipped_files.push((p, e.to_string()));
                continue;
            }
        };
        let bytes = match read_all(&path) {
            Ok(b) => b,
            Err(e) => {
                stats.skipped_files.push((path, e.to_string()));
                continue;
            }
        };
        match sniff_format(&bytes[..bytes.len().min(64 * 1024)], Some(&path)) {
            Ok(mailsentry_ingest::InputFormat::Json) => {}
            Ok(other) => {
                stats.skipped_files.push((
                    path,
                    format!("{other} is not a bus format (tail it instead)"),
                ));
                continue;
            }
            Err(e) => {
                stats.skipped_files.push((path, e));
                continue;
            }
        }
        let records = match split_json(&bytes) {
            Ok(r) => r,
            Err(e) => {
                stats.skipped_files.push((path, e));
                continue;
            }
        };
        stats.files += 1;
        // A record's time is its first event's (seconds, as the replay merge orders); records
        // without an event take their predecessor's, so they keep their place in the file.
        let mut out = Vec::with_capacity(records.len());
        let (mut time, mut key) = (None::<i64>, String::from("unknown"));
        let mut leading = 0usize;
        for value in records {
            let (items, _) = decode_bytes("publish", &value, DecodeOptions::default());
            if let Some(e) = items.iter().find_map(|d| match d {
                Decoded::Event(e) => Some(e),
                Decoded::Reject(_) => None,
            }) {
                let t = e.time.timestamp();
                if time.is_none() {
                    for o in out.iter_mut().take(leading) {
                        let o: &mut Outgoing = o;
                        o.time = t;
                    }
                }
                time = Some(t);
                if let Some(tenant) = &e.tenant_id {
                    key.clone_from(tenant);
                }
            } else if time.is_none() {
                leading += 1;
            }
            out.push(Outgoing {
                time: time.unwrap_or(i64::MAX),
                key: key.clone(),
                value,
            });
        }
        files.push((path, out));
    }
    let out = merge_like_replay(files);
    stats.keys = out
        .iter()
        .map(|o| o.key.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    // Defaults first; the user's properties override them.
    let mut props: Vec<(String, String)> = [
        ("linger.ms", "5"),
        ("enable.idempotence", "false"),
        ("queue.buffering.max.messages", "200000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    props.extend(properties.iter().cloned());
    let config = crate::kafka_source::client_config(brokers, &props);
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(Deliveries::default())?;
    for o in &out {
        let mut record = BaseRecord::to(topic).key(&o.key).payload(&o.value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        stats.records += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    let deliveries = producer.context();
    stats.partitions = deliveries
        .partitions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    stats.failed = deliveries.failed.load(std::sync::atomic::Ordering::Relaxed);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::split_json;

    #[test]
    fn json_inputs_split_into_records() {
        let nd = b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n";
        assert_eq!(split_json(nd).unwrap().len(), 3);
        let arr = b"[{\"a\":1},{\"a\":2}]";
        assert_eq!(split_json(arr).unwrap().len(), 2);
        let env = b"{\n \"records\": [ {\"a\":1},\n {\"a\":2}, {\"a\":3} ]\n}";
        assert_eq!(split_json(env).unwrap().len(), 3);
        let one = b"{\"a\":1}";
        assert_eq!(split_json(one).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        assert!(split_json(b"{\"a\":").is_err());
    }
}
