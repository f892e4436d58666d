//! The per-session feature frame: [`extract_features`] decodes logs (any supported format,
//! event-time merged as `replay` does), runs them through the live [`Detector`] with feature
//! collection on, and writes one row per closed session — tenant, connector, source, times,
//! the detector's own score, every feature the scorers use
//! ([`mailsentry_detect::features`]) and, when ground truth is given, the label — to a Parquet
//! file with polars, in row groups of [`ROWS_PER_GROUP`] so memory stays bounded whatever the
//! input size. [`read_rows`] loads the scored (post-learning) rows back for training.

use crate::labels::{Labels, SessionKey};
use crate::pass::{stream_pass, Progress};
use crate::{io_at, TrainError};
use mailsentry_detect::features::{feature_names, SessionFeatures};
use mailsentry_detect::{DetectConfig, Enrichment};
use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows buffered before a row group is written.
pub const ROWS_PER_GROUP: usize = 65_536;

/// What a feature extraction did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExtractStats {
    /// Records read.
    pub records: u64,
    /// Events decoded.
    pub events: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Rows (sessions) written.
    pub rows: u64,
    /// Rows labelled as attack.
    pub attack_rows: u64,
}

fn frame(rows: &[SessionFeatures], labels: Option<&Labels>) -> PolarsResult<DataFrame> {
    let names = feature_names();
    let mut columns: Vec<Column> = vec![
        Column::new(
            "tenant_id".into(),
            rows.iter()
                .map(|r| r.tenant_id.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "connector".into(),
            rows.iter()
                .map(|r| r.connector.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "source".into(),
            rows.iter().map(|r| r.source.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "first".into(),
            rows.iter().map(|r| r.first).collect::<Vec<_>>(),
        ),
        Column::new(
            "last".into(),
            rows.iter().map(|r| r.last).collect::<Vec<_>>(),
        ),
        Column::new(
            "score".into(),
            rows.iter().map(|r| r.score as u32).collect::<Vec<_>>(),
        ),
        Column::new(
            "p_value".into(),
            rows.iter().map(|r| r.p_value).collect::<Vec<_>>(),
        ),
        Column::new(
            "learning".into(),
            rows.iter().map(|r| r.learning).collect::<Vec<_>>(),
        ),
    ];
    for (i, name) in names.iter().enumerate() {
        columns.push(Column::new(
            name.as_str().into(),
            rows.iter().map(|r| r.values[i]).collect::<Vec<_>>(),
        ));
    }
    let known: Vec<_> = rows
        .iter()
        .map(|r| labels.and_then(|l| l.of(r.into())))
        .collect();
    let scenario: Vec<Option<&str>> = known
        .iter()
        .map(|k| k.as_ref().and_then(|k| k.scenario.as_deref()))
        .collect();
    let label: Vec<Option<bool>> = known.iter().map(|k| k.as_ref().map(|k| k.attack)).collect();
    columns.push(Column::new("scenario".into(), scenario));
    columns.push(Column::new("label".into(), label));
    DataFrame::new(rows.len(), columns)
}

/// Writes row groups to one Parquet file; the first group fixes the schema.
struct FrameSink<'t> {
    file: Option<std::fs::File>,
    writer: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    labels: Option<&'t Labels>,
    rows: u64,
    attack_rows: u64,
}

impl FrameSink<'_> {
    fn write(&mut self, rows: &[SessionFeatures]) -> Result<(), TrainError> {
        if rows.is_empty() && self.writer.is_some() {
            return Ok(());
        }
        let df = frame(rows, self.labels)?;
        self.rows += df.height() as u64;
        self.attack_rows += u64::from(df.column("label")?.bool()?.sum().unwrap_or(0));
        if self.writer.is_none() {
            let file = self
                .file
                .take()
                .expect("the file is there until the first group");
            self.writer = Some(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(df.schema())?,
            );
        }
        self.writer.as_mut().expect("created").write_batch(&df)?;
        Ok(())
    }

    fn finish(self) -> Result<(), TrainError> {
        if let Some(w) = self.writer {
            w.finish()?;
        }
        Ok(())
    }
}

/// Decodes every file under `paths`, sessionizes and scores them with the live detector, and
/// writes the feature frame to `out` (Parquet). With `labels`, rows get `scenario` and `label`.
pub fn extract_features(
    paths: &[PathBuf],
    config: DetectConfig,
    enrichment: Arc<Enrichment>,
    labels: Option<&Labels>,
    out: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ExtractStats, TrainError> {
    let file = std::fs::File::create(out).map_err(io_at(out))?;
    let mut sink = FrameSink {
        file: Some(file),
        writer: None,
        labels,
        rows: 0,
        attack_rows: 0,
    };
    let mut pending: Vec<SessionFeatures> = Vec::new();
    let pass = stream_pass(
        paths,
        &config,
        &enrichment,
        None,
        false,
        &mut |rows| {
            pending.extend(rows);
            if pending.len() >= ROWS_PER_GROUP {
                sink.write(&pending)?;
                pending.clear();
            }
            Ok(())
        },
        progress,
    )?;
    sink.write(&pending)?;
    let stats = ExtractStats {
        records: pass.records,
        events: pass.events,
        rejected: pass.rejected,
        rows: sink.rows,
        attack_rows: sink.attack_rows,
    };
    sink.finish()?;
    Ok(stats)
}

/// The scored rows of a feature frame, ready for training: post-learning sessions only
/// (learning sessions have no baseline, so their signals say nothing).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    /// Features per row.
    pub width: usize,
    /// Row-major values, `width` per row.
    pub values: Vec<f64>,
    /// Tenant per row.
    pub tenant: Vec<String>,
    /// Connector per row.
    pub connector: Vec<String>,
    /// Source per row.
    pub source: Vec<String>,
    /// First event, Unix seconds.
    pub first: Vec<i64>,
    /// Last event, Unix seconds.
    pub last: Vec<i64>,
    /// The detector's score.
    pub score: Vec<u32>,
    /// The detector's combined p-value.
    pub p_value: Vec<f64>,
    /// Attack (`Some(true)`), benign, or unknown.
    pub label: Vec<Option<bool>>,
    /// Scenario or analyst label.
    pub scenario: Vec<Option<String>>,
}

impl Rows {
    /// Rows.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Row `i`'s session, for matching labels.
    pub fn key(&self, i: usize) -> SessionKey<'_> {
        SessionKey {
            tenant: &self.tenant[i],
            connector: &self.connector[i],
            source: &self.source[i],
            first: self.first[i],
            last: self.last[i],
        }
    }

    /// Row `i`'s values.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    /// The post-learning rows of in-memory feature rows, labelled by `labels`.
    pub fn from_features(rows: &[SessionFeatures], labels: Option<&Labels>) -> Rows {
        let mut out = Rows {
            width: feature_names().len(),
            ..Rows::default()
        };
        for r in rows.iter().filter(|r| !r.learning) {
            let known = labels.and_then(|l| l.of(r.into()));
            out.values.extend_from_slice(&r.values);
            out.tenant.push(r.tenant_id.clone());
            out.connector.push(r.connector.clone());
            out.source.push(r.source.clone());
            out.first.push(r.first);
            out.last.push(r.last);
            out.score.push(u32::from(r.score));
            out.p_value.push(r.p_value);
            out.label.push(known.as_ref().map(|k| k.attack));
            out.scenario.push(known.and_then(|k| k.scenario));
        }
        out
    }
}

/// Reads the post-learning rows of a feature frame written by [`extract_features`], with the
/// streaming engine (only the needed columns of the scored rows are materialized).
pub fn read_rows(path: &Path) -> Result<Rows, TrainError> {
    if !path.exists() {
        return Err(TrainError::Data(format!(
            "{}: no such file",
            path.display()
        )));
    }
    let names = feature_names();
    let mut wanted: Vec<Expr> = [
        "tenant_id",
        "connector",
        "source",
        "first",
        "last",
        "score",
        "p_value",
        "scenario",
        "label",
    ]
    .iter()
    .map(|c| col(*c))
    .collect();
    wanted.extend(names.iter().map(|n| col(n.as_str())));
    let lf = LazyFrame::scan_parquet(PlRefPath::try_from_path(path)?, ScanArgsParquet::default())?;
    let schema = lf.clone().collect_schema()?;
    for n in names
        .iter()
        .map(String::as_str)
        .chain(["learning", "label", "scenario"])
    {
        if schema.get(n).is_none() {
            return Err(TrainError::Data(format!(
                "{}: column {n:?} missing — the frame was written with another feature schema; run `mailsentry features` again",
                path.display()
            )));
        }
    }
    // One query, one in-memory result (a `Multiple` result needs several sinks).
    let df = lf
        .filter(col("learning").eq(lit(false)))
        .select(wanted)
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single();
    let strings = |name: &str| -> Result<Vec<String>, TrainError> {
        Ok(df
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.unwrap_or_default().to_owned())
            .collect())
    };
    let n = df.height();
    let mut rows = Rows {
        width: names.len(),
        values: vec![0.0; n * names.len()],
        tenant: strings("tenant_id")?,
        connector: strings("connector")?,
        source: strings("source")?,
        first: df
            .column("first")?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect(),
        last: df
            .column("last")?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect(),
        score: df
            .column("score")?
            .u32()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect(),
        p_value: df
            .column("p_value")?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(1.0))
            .collect(),
        label: df.column("label")?.bool()?.iter().collect(),
        scenario: df
            .column("scenario")?
            .str()?
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect(),
    };
    for (j, name) in names.iter().enumerate() {
        for (i, v) in df.column(name)?.f64()?.iter().enumerate() {
            rows.values[i * rows.width + j] = v.unwrap_or(0.0);
        }
    }
    Ok(rows)
}
