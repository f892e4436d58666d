//! One pass of the live detector over logs: decode every file, merge in event time (on a
//! thread of its own, ahead of the detector), detect (optionally with a model and beside the
//! reference rules), and hand the feature rows of the closed sessions to the caller in
//! batches — to a Parquet writer ([`crate::frame`]) or into memory ([`run_pass`]).

use crate::TrainError;
use mailsentry_detect::features::SessionFeatures;
use mailsentry_detect::model::Model;
use mailsentry_detect::reference::{RefAlert, ReferenceDetectors};
use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_events::Alert;
use mailsentry_ingest::{
    DecodeAhead, DecodeOptions, Decoded, MergedEvents, DECODE_AHEAD_BATCH, DECODE_AHEAD_DEPTH,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Events between two hand-overs of feature rows (and progress reports).
const BATCH_EVENTS: u64 = 65_536;

/// How far a pass has got.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Records read.
    pub records: u64,
    /// Sessions closed (feature rows handed over).
    pub sessions: u64,
    /// Latest event time reached, Unix seconds.
    pub event_time: i64,
}

/// What a pass did, besides the feature rows.
pub struct Pass {
    /// Alerts (created at the epoch: reports are reproducible).
    pub alerts: Vec<Alert>,
    /// The reference rules' alerts (when asked for).
    pub references: Vec<RefAlert>,
    /// Records read.
    pub records: u64,
    /// Events decoded.
    pub events: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Seconds the pass took.
    pub seconds: f64,
}

/// Runs the detector (with `model` when given, and the reference rules when asked) over every
/// file under `paths`, handing the feature rows of closed sessions to `on_rows` as they close
/// (a batch every 65,536 events, and the rest at the end); `progress` follows each batch.
pub fn stream_pass(
    paths: &[PathBuf],
    config: &DetectConfig,
    enrichment: &Arc<Enrichment>,
    model: Option<Arc<Model>>,
    references: bool,
    on_rows: &mut dyn FnMut(Vec<SessionFeatures>) -> Result<(), TrainError>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Pass, TrainError> {
    let started = std::time::Instant::now();
    let files: Vec<PathBuf> = mailsentry_ingest::collect_input_files(paths)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    // Decoding and the event-time merge run on a thread of their own, ahead of the detector
    // (as `mailsentry replay` does); the records read are reported as of each batch.
    let mut ahead = DecodeAhead::spawn_counting(
        MergedEvents::new(files, DecodeOptions::default()),
        DECODE_AHEAD_BATCH,
        DECODE_AHEAD_DEPTH,
        |merged: &MergedEvents| merged.stats().records,
    );
    let mut detector = Detector::new(config.clone(), enrichment.clone());
    detector.collect_feature_rows();
    detector.set_model(model);
    let mut refs = references.then(|| ReferenceDetectors::new(enrichment.clone()));
    let mut at = Progress {
        event_time: i64::MIN,
        ..Progress::default()
    };
    let (mut events, mut rejected) = (0u64, 0u64);
    let mut hand_over = |detector: &mut Detector, at: &mut Progress| {
        let rows = detector.take_feature_rows();
        at.sessions += rows.len() as u64;
        on_rows(rows)
    };
    while let Some(item) = ahead.next() {
        match item {
            Decoded::Event(e) => {
                detector.process(&e);
                if let Some(r) = refs.as_mut() {
                    r.process(&e);
                }
                events += 1;
                at.event_time = at.event_time.max(e.time.timestamp());
                if events.is_multiple_of(BATCH_EVENTS) {
                    hand_over(&mut detector, &mut at)?;
                    at.records = ahead.counted();
                    progress(&at);
                }
            }
            Decoded::Reject(_) => rejected += 1,
        }
    }
    let merged = ahead.finish();
    detector.finish();
    hand_over(&mut detector, &mut at)?;
    at.records = merged.stats().records;
    progress(&at);
    let epoch = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
    Ok(Pass {
        alerts: detector.alerts(epoch),
        references: refs.map(ReferenceDetectors::finish).unwrap_or_default(),
        records: at.records,
        events,
        rejected,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// [`stream_pass`] keeping every feature row in memory.
pub fn run_pass(
    paths: &[PathBuf],
    config: &DetectConfig,
    enrichment: &Arc<Enrichment>,
    model: Option<Arc<Model>>,
    references: bool,
    progress: &mut dyn FnMut(&Progress),
) -> (Pass, Vec<SessionFeatures>) {
    let mut rows = Vec::new();
    let pass = stream_pass(
        paths,
        config,
        enrichment,
        model,
        references,
        &mut |batch| {
            rows.extend(batch);
            Ok(())
        },
        progress,
    )
    .expect("collecting rows in memory cannot fail");
    (pass, rows)
}
