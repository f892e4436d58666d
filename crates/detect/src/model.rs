//! The model layer: a trained artifact (`models/NAME/model.json`, written by `mailsentry
//! train`) that the detector evaluates on every scored session.
//!
//! - A **joint density** over the session features (a Gaussian mixture fitted by linfa) turns
//!   a session into a nonconformity score, −log-likelihood; a held-out calibration set of
//!   benign sessions turns that into a conformal p-value, `(1 + #{calibration ≥ s}) / (n + 1)`,
//!   which the detector combines with its other signals as `model.joint_density`.
//! - An optional **supervised re-ranker** (logistic regression, fitted when labels exist) gives
//!   an attack probability, reported as a reason on alerting sessions.
//!
//! Inference is plain arithmetic on the stored parameters, so the detector needs neither linfa
//! nor polars. A model records the feature-schema hash it was trained on; a detector computing
//! another schema refuses it ([`ModelError::Schema`]).

use crate::features::{feature_names, schema_hash};
use crate::scoring::Signal;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The artifact format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The file inside a model directory that holds the artifact.
pub const MODEL_FILE: &str = "model.json";

/// The signal id the model layer adds.
pub const SIGNAL_ID: &str = "model.joint_density";

/// Why a model could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a model artifact.
    #[error("{path}: not a mailsentry model: {source}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// Written by another artifact format.
    #[error("{path}: model format {found}, this build reads format {FORMAT_VERSION}")]
    Format {
        /// Path.
        path: PathBuf,
        /// Format found.
        found: u32,
    },
    /// Trained on another feature schema.
    #[error(
        "{path}: the model was trained on feature schema {model}, this detector computes schema {detector}; retrain it with `mailsentry train`"
    )]
    Schema {
        /// Path.
        path: PathBuf,
        /// The model's schema hash.
        model: String,
        /// The detector's.
        detector: String,
    },
    /// Parameters of the wrong shape or value.
    #[error("{path}: invalid model: {why}")]
    Invalid {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Per-feature standardization: `(x − mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Means.
    pub mean: Vec<f64>,
    /// Standard deviations (1 where a feature was constant).
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Standardizes `x`.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (v - m) / s)
            .collect()
    }
}

/// A Gaussian mixture with full covariances, stored as precision matrices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// Component weights (sum 1).
    pub weights: Vec<f64>,
    /// Component means, standardized space.
    pub means: Vec<Vec<f64>>,
    /// Component precision matrices (inverse covariances), row-major `d × d`.
    pub precisions: Vec<Vec<f64>>,
    /// `ln det` of each precision matrix (filled in at load time).
    #[serde(skip)]
    pub log_det: Vec<f64>,
}

impl Mixture {
    fn dim(&self) -> usize {
        self.means.first().map_or(0, Vec::len)
    }

    /// Each component's log weight + log density at `z`, and the Mahalanobis terms per
    /// feature of the component that explains `z` best.
    fn component_terms(&self, z: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let log_2pi = (2.0 * std::f64::consts::PI).ln();
        (0..self.weights.len())
            .map(|k| {
                let maha = quad_form(&self.precisions[k], &self.means[k], z, d);
                self.weights[k].max(1e-300).ln() - 0.5 * (d as f64 * log_2pi - self.log_det[k])
                    + -0.5 * maha
            })
            .collect()
    }

    /// Log-likelihood of standardized `z`.
    pub fn log_likelihood(&self, z: &[f64]) -> f64 {
        log_sum_exp(&self.component_terms(z))
    }

    /// The component with the highest posterior at `z`.
    pub fn best_component(&self, z: &[f64]) -> usize {
        self.component_terms(z)
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(k, _)| k)
    }
}

fn quad_form(p: &[f64], mean: &[f64], z: &[f64], d: usize) -> f64 {
    let diff: Vec<f64> = z.iter().zip(mean).map(|(a, b)| a - b).collect();
    let mut total = 0.0;
    for i in 0..d {
        let row = &p[i * d..(i + 1) * d];
        let mut acc = 0.0;
        for j in 0..d {
            acc += row[j] * diff[j];
        }
        total += diff[i] * acc;
    }
    total
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `ln det` of a symmetric positive-definite `d × d` matrix by Cholesky; `None` when it is not
/// positive definite.
pub fn cholesky_log_det(a: &[f64], d: usize) -> Option<f64> {
    let mut l = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = a[i * d + j];
            for k in 0..j {
                sum -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * d + i] = sum.sqrt();
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    Some((0..d).map(|i| l[i * d + i].ln()).sum::<f64>() * 2.0)
}

/// Logistic regression on standardized features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reranker {
    /// Intercept.
    pub intercept: f64,
    /// One coefficient per feature.
    pub coefficients: Vec<f64>,
}

impl Reranker {
    /// Attack probability of standardized `z`.
    pub fn probability(&self, z: &[f64]) -> f64 {
        let t = self.intercept
            + self
                .coefficients
                .iter()
                .zip(z)
                .map(|(c, x)| c * x)
                .sum::<f64>();
        1.0 / (1.0 + (-t).exp())
    }
}

/// Where and how the model was trained (shown in the model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// First session start in the training data (RFC 3339).
    pub window_start: String,
    /// Last session end (RFC 3339).
    pub window_end: String,
    /// Seed of every random choice in training.
    pub seed: u64,
    /// Sessions the density was fitted on.
    pub fit_rows: u64,
    /// Sessions in the calibration set.
    pub calibration_rows: u64,
    /// Labelled attack sessions the re-ranker saw (0: no re-ranker).
    pub attack_rows: u64,
    /// The command that made the model.
    pub command: String,
}

/// A trained model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Artifact format ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Name and version, e.g. `default@2026-11-28`.
    pub name: String,
    /// The feature schema hash ([`schema_hash`]).
    pub schema_hash: String,
    /// Feature names, in order.
    pub features: Vec<String>,
    /// Standardization.
    pub scaler: Scaler,
    /// The joint density.
    pub mixture: Mixture,
    /// Sorted nonconformity scores (−log-likelihood) of the calibration sessions.
    pub calibration: Vec<f64>,
    /// The supervised re-ranker, when labels were given.
    pub reranker: Option<Reranker>,
    /// Weight of the model's p-value in the detector's combination.
    pub weight: f64,
    /// Training provenance.
    pub provenance: Provenance,
}

/// What the model says about one session.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVerdict {
    /// Conformal p-value of the joint density.
    pub p: f64,
    /// Nonconformity (−log-likelihood).
    pub nonconformity: f64,
    /// Re-ranker attack probability, when there is a re-ranker.
    pub probability: Option<f64>,
    /// The features furthest from the best component's mean, as (name, standardized
    /// deviation), largest first (at most 3).
    pub top_features: Vec<(String, f64)>,
}

impl Model {
    /// Reads `dir/model.json` (or `dir` itself when it is a file) and checks it against this
    /// detector's feature schema.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let path = if dir.is_dir() {
            dir.join(MODEL_FILE)
        } else {
            dir.to_owned()
        };
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let model: Model = serde_json::from_slice(&bytes).map_err(|source| ModelError::Parse {
            path: path.clone(),
            source,
        })?;
        model.validated(&path)
    }

    /// Checks format, schema and shapes, and computes what inference needs.
    pub fn validated(mut self, path: &Path) -> Result<Model, ModelError> {
        let invalid = |why: String| ModelError::Invalid {
            path: path.to_owned(),
            why,
        };
        if self.format_version != FORMAT_VERSION {
            return Err(ModelError::Format {
                path: path.to_owned(),
                found: self.format_version,
            });
        }
        let detector = schema_hash();
        if self.schema_hash != detector || self.features != feature_names() {
            return Err(ModelError::Schema {
                path: path.to_owned(),
                model: self.schema_hash.clone(),
                detector,
            });
        }
        let d = self.features.len();
        if self.scaler.mean.len() != d || self.scaler.scale.len() != d {
            return Err(invalid(format!("scaler is not {d} wide")));
        }
        if self
            .scaler
            .scale
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(invalid("a scale is not positive".into()));
        }
        let k = self.mixture.weights.len();
        if k == 0 || self.mixture.means.len() != k || self.mixture.precisions.len() != k {
            return Err(invalid("mixture components disagree in number".into()));
        }
        self.mixture.log_det.clear();
        for c in 0..k {
            if self.mixture.means[c].len() != d || self.mixture.precisions[c].len() != d * d {
                return Err(invalid(format!("component {c} is not {d}-dimensional")));
            }
            let log_det = cholesky_log_det(&self.mixture.precisions[c], d).ok_or_else(|| {
                invalid(format!("component {c}: precision not positive definite"))
            })?;
            self.mixture.log_det.push(log_det);
        }
        if self.calibration.is_empty() {
            return Err(invalid("empty calibration set".into()));
        }
        if self.calibration.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("calibration scores are not sorted".into()));
        }
        if let Some(r) = &self.reranker {
            if r.coefficients.len() != d {
                return Err(invalid(format!("re-ranker is not {d} wide")));
            }
        }
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(invalid("weight must be ≥ 0".into()));
        }
        Ok(self)
    }

    /// Conformal p-value of nonconformity `s`.
    pub fn p_value(&self, s: f64) -> f64 {
        let n = self.calibration.len();
        let at_least = n - self.calibration.partition_point(|&c| c < s);
        (1 + at_least) as f64 / (n + 1) as f64
    }

    /// Scores one session's feature values ([`crate::features::feature_values`]).
    pub fn judge(&self, values: &[f64]) -> ModelVerdict {
        let z = self.scaler.apply(values);
        let nonconformity = -self.mixture.log_likelihood(&z);
        let best = self.mixture.best_component(&z);
        let mut top: Vec<(String, f64)> = z
            .iter()
            .zip(&self.mixture.means[best])
            .zip(&self.features)
            .map(|((x, m), name)| (name.clone(), x - m))
            .collect();
        top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        top.truncate(3);
        ModelVerdict {
            p: self.p_value(nonconformity),
            nonconformity,
            probability: self.reranker.as_ref().map(|r| r.probability(&z)),
            top_features: top,
        }
    }

    /// The detector signal for a verdict.
    pub fn signal(&self, v: &ModelVerdict) -> Signal {
        let n = self.calibration.len();
        let rarer = ((1.0 - v.p) * 100.0).clamp(0.0, 100.0);
        Signal {
            id: SIGNAL_ID,
            p: v.p,
            weight: self.weight,
            summary: format!(
                "this session's combination of features is less likely under model {} than {rarer:.1}% of {n} benign calibration sessions; furthest from the usual: {}",
                self.name,
                v.top_features
                    .iter()
                    .map(|(f, z)| format!("{f} {z:+.1}σ"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            observed: format!("−log-likelihood {:.1}", v.nonconformity),
            baseline: format!(
                "calibration median {:.1}",
                self.calibration[n / 2]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn toy_model() -> Model {
        let d = feature_names().len();
        let mut identity = vec![0.0; d * d];
        for i in 0..d {
            identity[i * d + i] = 1.0;
        }
        Model {
            format_version: FORMAT_VERSION,
            name: "toy@1".into(),
            schema_hash: schema_hash(),
            features: feature_names(),
            scaler: Scaler {
                mean: vec![0.0; d],
                scale: vec![1.0; d],
            },
            mixture: Mixture {
                weights: vec![1.0],
                means: vec![vec![0.0; d]],
                precisions: vec![identity],
                log_det: vec![],
            },
            calibration: (0..99).map(|i| d as f64 * 0.9 + i as f64 * 0.1).collect(),
            reranker: Some(Reranker {
                intercept: -2.0,
                coefficients: vec![0.5; d],
            }),
            weight: 0.5,
            provenance: Provenance {
                window_start: "2024-03-01T00:00:00Z".into(),
                window_end: "2024-03-31T00:00:00Z".into(),
                seed: 1,
                fit_rows: 100,
                calibration_rows: 99,
                attack_rows: 3,
                command: "test".into(),
            },
        }
    }

    #[test]
    fn a_standard_normal_gives_the_textbook_log_likelihood() {
        let m = toy_model().validated(Path::new("toy")).unwrap();
        let d = m.features.len() as f64;
        let ll = m.mixture.log_likelihood(&vec![0.0; m.features.len()]);
        assert!((ll - (-0.5 * d * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-9);
        assert_eq!(m.mixture.log_det, vec![0.0]);
    }

    #[test]
    fn conformal_p_values_are_bounded_and_monotone() {
        let m = toy_model().validated(Path::new("toy")).unwrap();
        assert_eq!(m.p_value(f64::NEG_INFINITY), 1.0);
        assert!((m.p_value(f64::INFINITY) - 0.01).abs() < 1e-12);
        let mut last = 1.0;
        for s in 0..200 {
            let p = m.p_value(s as f64 * 0.5);
            assert!(p <= last);
            last = p;
        }
        let usual = m.judge(&vec![0.0; m.features.len()]);
        let odd = m.judge(&vec![6.0; m.features.len()]);
        assert!(odd.p < usual.p, "{odd:?} vs {usual:?}");
        assert!(odd.probability.unwrap() > usual.probability.unwrap());
        assert_eq!(odd.top_features.len(), 3);
    }

    #[test]
    fn a_model_of_another_schema_is_refused_by_name() {
        let mut m = toy_model();
        m.schema_hash = "0000000000000000".into();
        let err = m.validated(Path::new("models/old/model.json")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("models/old/model.json"), "{text}");
        assert!(text.contains("feature schema 0000000000000000"), "{text}");
        assert!(matches!(err, ModelError::Schema { .. }));
    }

    #[test]
    fn broken_parameters_are_refused() {
        let mut m = toy_model();
        let d = m.features.len();
        m.mixture.precisions[0][0] = -1.0;
        assert!(matches!(
            m.validated(Path::new("x")),
            Err(ModelError::Invalid { .. })
        ));
        let mut m = toy_model();
        m.calibration.reverse();
        assert!(m.validated(Path::new("x")).is_err());
        let mut m = toy_model();
        m.scaler.scale[d - 1] = 0.0;
        assert!(m.validated(Path::new("x")).is_err());
        let mut m = toy_model();
        m.format_version = 99;
        assert!(matches!(
            m.validated(Path::new("x")),
            Err(ModelError::Format { found: 99, .. })
        ));
    }

    #[test]
    fn cholesky_matches_a_known_determinant() {
        // [[4, 2], [2, 3]]: det 8.
        let ld = cholesky_log_det(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        assert!((ld - 8f64.ln()).abs() < 1e-12);
        assert!(cholesky_log_det(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
