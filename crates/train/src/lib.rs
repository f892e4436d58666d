//! Training and evaluation for data engineers.
//!
//! - [`frame`]: the per-session feature frame (polars, Parquet) from the live detector's own
//!   sessions and scoring.
//! - [`fit`]: the model layer — a Gaussian mixture (linfa) with a conformal calibration set,
//!   and, with labels, a logistic-regression re-ranker — written as a versioned artifact with
//!   its model card.
//! - [`pass`]: one pass of the live detector over logs, handing over the closed sessions'
//!   feature rows.
//! - [`eval`]: the detector with and without the model beside the reference rules, as
//!   metrics JSON and a Markdown report with SVG plots ([`plots`]).
//!
//! polars and linfa live only here: every other crate builds without them.

pub mod eval;
pub mod fit;
pub mod frame;
pub mod labels;
pub mod pass;
pub mod plots;

use std::path::PathBuf;

/// Errors of the training tools.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// polars failed (frame or Parquet).
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The input cannot be trained or evaluated on.
    #[error("{0}")]
    Data(String),
    /// linfa failed to fit.
    #[error("fitting: {0}")]
    Fit(String),
    /// JSON failed.
    #[error("{path}: {source}")]
    Json {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {why}")]
    Plot {
        /// Path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// `value` as pretty JSON ending in a newline, ready to be written to `path` (named in errors).
pub(crate) fn pretty_json<T: serde::Serialize + ?Sized>(
    value: &T,
    path: &std::path::Path,
) -> Result<Vec<u8>, TrainError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_owned(),
        source,
    })?;
    json.push(b'\n');
    Ok(json)
}

/// `io::Error` at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}
