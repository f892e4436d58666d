//! Fitting the model layer with linfa, and its model card.
//!
//! 1. The scored benign rows (post-learning; labelled attacks left out) are shuffled with the
//!    seed and split into a fitting set and a calibration set.
//! 2. A scaler and a Gaussian mixture with full covariances (linfa-clustering, k-means
//!    initialization, seeded) are fitted on the fitting set; if EM fails with `k` components it
//!    is retried with fewer.
//! 3. The calibration set's nonconformity scores (−log-likelihood) make the conformal p-value.
//! 4. With enough labelled attacks, a logistic-regression re-ranker (linfa-logistic, L2) is
//!    fitted on benign and attack rows.
//!
//! linfa 0.8 uses ndarray 0.16 and polars 0.17: the matrices are built here from the rows.

use crate::frame::Rows;
use crate::labels::Labels;
use crate::{io_at, pretty_json, TrainError};
use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use linfa_logistic::LogisticRegression;
use mailsentry_detect::features::{feature_names, schema_hash};
use mailsentry_detect::model::{
    Mixture, Model, Provenance, Reranker, Scaler, FORMAT_VERSION, MODEL_FILE,
};
use ndarray::{Array1, Array2};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256Plus;
use std::fmt::Write as _;
use std::path::Path;

/// Standardized features are winsorized at ± this many σ for EM (see [`train`]).
pub const CLIP: f64 = 4.0;

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Seed of the shuffle, the k-means initialization and EM.
    pub seed: u64,
    /// Mixture components (fewer are tried if EM fails).
    pub components: usize,
    /// Most rows the mixture is fitted on (a seeded sample beyond that).
    pub max_fit_rows: usize,
    /// Share of the benign rows held out for calibration.
    pub calibration_share: f64,
    /// Most calibration rows.
    pub max_calibration_rows: usize,
    /// Fewest labelled attacks (and benign rows) for a re-ranker.
    pub min_attacks: usize,
    /// The model's weight in the detector's combination.
    pub weight: f64,
    /// Name and version written into the model.
    pub name: String,
    /// The command that made the model (for the card).
    pub command: String,
    /// Where the data came from (for the card).
    pub data: String,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 1,
            components: 4,
            max_fit_rows: 200_000,
            calibration_share: 0.2,
            max_calibration_rows: 50_000,
            min_attacks: 5,
            weight: 0.3,
            name: "model".into(),
            command: String::new(),
            data: String::new(),
        }
    }
}

/// What training saw and did (the card's figures).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainSummary {
    /// Scored rows in the input.
    pub rows: usize,
    /// Rows labelled attack.
    pub attack_rows: usize,
    /// Rows the mixture was fitted on.
    pub fit_rows: usize,
    /// Calibration rows.
    pub calibration_rows: usize,
    /// Components of the fitted mixture.
    pub components: usize,
    /// Covariance regularization the fit succeeded with (standardized units).
    pub regularization: f64,
    /// Fits that failed before (fewer components or more regularization were tried next).
    pub failed_fits: Vec<String>,
    /// Mean log-likelihood of the fitting rows.
    pub fit_log_likelihood: f64,
    /// Calibration nonconformity quantiles: median, 99th percentile, max.
    pub calibration_quantiles: [f64; 3],
    /// Share of labelled attack rows whose conformal p-value is ≤ 0.01 (when there are any).
    pub attacks_at_p_01: Option<f64>,
    /// Area under the ROC curve of the density's nonconformity, attacks vs calibration rows.
    pub density_auc: Option<f64>,
    /// Area under the ROC curve of the re-ranker on its own training rows (optimistic).
    pub reranker_train_auc: Option<f64>,
}

/// Relabels `rows` with `labels` (sessions the labels do not cover become unknown, or benign
/// with ground truth).
pub fn relabel(rows: &mut Rows, labels: &Labels) {
    for i in 0..rows.len() {
        let known = labels.of(rows.key(i));
        rows.label[i] = known.as_ref().map(|k| k.attack);
        rows.scenario[i] = known.and_then(|k| k.scenario);
    }
}

fn shuffle(indices: &mut [usize], rng: &mut Xoshiro256Plus) {
    for i in (1..indices.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        indices.swap(i, j);
    }
}

fn matrix(rows: &Rows, indices: &[usize], scaler: &Scaler) -> Array2<f64> {
    let mut m = Array2::<f64>::zeros((indices.len(), rows.width));
    for (r, &i) in indices.iter().enumerate() {
        for (j, v) in scaler.apply(rows.row(i)).into_iter().enumerate() {
            m[[r, j]] = v;
        }
    }
    m
}

fn fit_scaler(rows: &Rows, indices: &[usize]) -> Scaler {
    let d = rows.width;
    let n = indices.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for &i in indices {
        for (m, v) in mean.iter_mut().zip(rows.row(i)) {
            *m += v / n;
        }
    }
    let mut var = vec![0.0; d];
    for &i in indices {
        for ((s, v), m) in var.iter_mut().zip(rows.row(i)).zip(&mean) {
            *s += (v - m).powi(2) / n;
        }
    }
    let scale = var
        .into_iter()
        .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    Scaler { mean, scale }
}

/// Area under the ROC curve: the probability that a random positive outranks a random
/// negative (ties count half).
pub fn auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut neg = negatives.to_vec();
    neg.sort_by(f64::total_cmp);
    let mut total = 0.0;
    for p in positives {
        let below = neg.partition_point(|n| n < p);
        let equal = neg[below..].partition_point(|n| n <= p);
        total += below as f64 + equal as f64 / 2.0;
    }
    Some(total / (positives.len() as f64 * neg.len() as f64))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Fits the model layer on `rows`.
pub fn train(rows: &Rows, options: &TrainOptions) -> Result<(Model, TrainSummary), TrainError> {
    let d = feature_names().len();
    if rows.width != d {
        return Err(TrainError::Data(format!(
            "the rows have {} features, this build computes {d}",
            rows.width
        )));
    }
    let names = feature_names();
    for (j, name) in names.iter().enumerate() {
        let bad = (0..rows.len())
            .filter(|&i| !rows.row(i)[j].is_finite())
            .count();
        if bad > 0 {
            return Err(TrainError::Data(format!(
                "feature {name}: {bad} of {} values are not finite",
                rows.len()
            )));
        }
    }
    let mut rng = Xoshiro256Plus::seed_from_u64(options.seed);
    let mut benign: Vec<usize> = (0..rows.len())
        .filter(|&i| rows.label[i] != Some(true))
        .collect();
    let attacks: Vec<usize> = (0..rows.len())
        .filter(|&i| rows.label[i] == Some(true))
        .collect();
    if benign.len() < 50 {
        return Err(TrainError::Data(format!(
            "only {} scored benign sessions; training needs at least 50 (more days of data, or fewer learning days)",
            benign.len()
        )));
    }
    shuffle(&mut benign, &mut rng);
    let n_cal = ((benign.len() as f64 * options.calibration_share) as usize)
        .clamp(20, options.max_calibration_rows);
    let (cal_idx, fit_idx) = benign.split_at(n_cal);
    let fit_idx = &fit_idx[..fit_idx.len().min(options.max_fit_rows)];

    let scaler = fit_scaler(rows, fit_idx);
    // EM sees the standardized features winsorized at ±CLIP σ: linfa 0.8's E-step takes
    // ln Σ exp(log p) without shifting by the maximum, so one far-out row underflows to
    // ln 0 and turns the responsibilities into NaN. Calibration and inference use the
    // unclipped values (the detector's log-sum-exp is shifted), so far-out stays rare.
    let x = matrix(rows, fit_idx, &scaler).mapv(|v| v.clamp(-CLIP, CLIP));
    let dataset = DatasetBase::from(x);
    let mut fitted = None;
    let mut errors = Vec::new();
    'fit: for reg in [0.1, 0.3, 1.0] {
        for k in (1..=options.components.max(1)).rev() {
            let params = GaussianMixtureModel::params_with_rng(
                k,
                Xoshiro256Plus::seed_from_u64(options.seed),
            )
            .n_runs(2)
            .tolerance(1e-4)
            .reg_covariance(reg)
            .max_n_iterations(300);
            match params.fit(&dataset) {
                Ok(g) => {
                    fitted = Some((g, reg));
                    break 'fit;
                }
                Err(e) => errors.push(format!("{k} components, regularization {reg}: {e}")),
            }
        }
    }
    let (gmm, regularization) = fitted.ok_or_else(|| TrainError::Fit(errors.join("; ")))?;
    let k = gmm.weights().len();
    let precisions = gmm.precisions();
    let mixture = Mixture {
        weights: gmm.weights().to_vec(),
        means: (0..k).map(|c| gmm.means().row(c).to_vec()).collect(),
        precisions: (0..k)
            .map(|c| {
                precisions
                    .index_axis(ndarray::Axis(0), c)
                    .iter()
                    .copied()
                    .collect()
            })
            .collect(),
        log_det: Vec::new(),
    };

    let (first, last) = (
        rows.first.iter().copied().min().unwrap_or(0),
        rows.last.iter().copied().max().unwrap_or(0),
    );
    let mut model = Model {
        format_version: FORMAT_VERSION,
        name: options.name.clone(),
        schema_hash: schema_hash(),
        features: feature_names(),
        scaler,
        mixture,
        calibration: vec![0.0],
        reranker: None,
        weight: options.weight,
        provenance: Provenance {
            window_start: rfc3339(first),
            window_end: rfc3339(last),
            seed: options.seed,
            fit_rows: fit_idx.len() as u64,
            calibration_rows: cal_idx.len() as u64,
            attack_rows: attacks.len() as u64,
            command: options.command.clone(),
        },
    }
    .validated(Path::new(&options.name))
    .map_err(|e| TrainError::Fit(e.to_string()))?;
    let nonconformity = |m: &Model, i: usize| m.judge(rows.row(i)).nonconformity;
    let mut cal: Vec<f64> = cal_idx.iter().map(|&i| nonconformity(&model, i)).collect();
    cal.sort_by(f64::total_cmp);
    model.calibration = cal.clone();
    let fit_ll = -fit_idx
        .iter()
        .map(|&i| nonconformity(&model, i))
        .sum::<f64>()
        / fit_idx.len() as f64;
    let attack_scores: Vec<f64> = attacks.iter().map(|&i| nonconformity(&model, i)).collect();
    let attacks_at_p_01 = (!attacks.is_empty()).then(|| {
        attack_scores
            .iter()
            .filter(|&&s| model.p_value(s) <= 0.01)
            .count() as f64
            / attacks.len() as f64
    });
    let density_auc = auc(&attack_scores, &cal);

    let mut reranker_train_auc = None;
    if attacks.len() >= options.min_attacks {
        let mut idx: Vec<usize> = fit_idx.to_vec();
        idx.extend(&attacks);
        let x = matrix(rows, &idx, &model.scaler);
        let y: Array1<usize> = idx
            .iter()
            .map(|&i| usize::from(rows.label[i] == Some(true)))
            .collect();
        let lr = LogisticRegression::default()
            .alpha(1.0)
            .max_iterations(300)
            .fit(&DatasetBase::new(x.clone(), y))
            .map_err(|e| TrainError::Fit(format!("re-ranker: {e}")))?;
        let sign = if lr.labels().pos.class == 1 {
            1.0
        } else {
            -1.0
        };
        let reranker = Reranker {
            intercept: sign * lr.intercept(),
            coefficients: lr.params().iter().map(|c| sign * c).collect(),
        };
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (r, &i) in idx.iter().enumerate() {
            let p = reranker.probability(x.row(r).as_slice().unwrap_or(&[]));
            if rows.label[i] == Some(true) {
                pos.push(p);
            } else {
                neg.push(p);
            }
        }
        reranker_train_auc = auc(&pos, &neg);
        model.reranker = Some(reranker);
    }
    let summary = TrainSummary {
        rows: rows.len(),
        attack_rows: attacks.len(),
        fit_rows: fit_idx.len(),
        calibration_rows: cal_idx.len(),
        components: k,
        regularization,
        failed_fits: errors,
        fit_log_likelihood: fit_ll,
        calibration_quantiles: [
            quantile(&cal, 0.5),
            quantile(&cal, 0.99),
            quantile(&cal, 1.0),
        ],
        attacks_at_p_01,
        density_auc,
        reranker_train_auc,
    };
    Ok((model, summary))
}

/// Writes `dir/model.json` and `dir/MODEL.md`.
pub fn write_model(
    dir: &Path,
    model: &Model,
    summary: &TrainSummary,
    options: &TrainOptions,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let path = dir.join(MODEL_FILE);
    let tmp = dir.join(format!("{MODEL_FILE}.tmp"));
    std::fs::write(&tmp, pretty_json(model, &path)?).map_err(io_at(&tmp))?;
    // A watcher sees the whole file or none of it.
    std::fs::rename(&tmp, &path).map_err(io_at(&path))?;
    let card = dir.join("MODEL.md");
    std::fs::write(&card, model_card(model, summary, options)).map_err(io_at(&card))?;
    Ok(())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The Markdown model card.
pub fn model_card(model: &Model, s: &TrainSummary, o: &TrainOptions) -> String {
    let mut md = String::new();
    let p = &model.provenance;
    let _ = writeln!(md, "# Model card — `{}`\n", model.name);
    let _ = writeln!(
        md,
        "Artifact format {}, feature schema `{}` ({} features). Reproduce with:\n\n```sh\n{}\n```\n",
        model.format_version,
        model.schema_hash,
        model.features.len(),
        p.command
    );
    let _ = writeln!(md, "## Data\n");
    let _ = writeln!(md, "- Source: {}", o.data);
    let _ = writeln!(
        md,
        "- Training window (session times): {} → {}",
        p.window_start, p.window_end
    );
    let _ = writeln!(
        md,
        "- Scored sessions (after each connector's learning period): {}; labelled attacks: {}",
        s.rows, s.attack_rows
    );
    let _ = writeln!(
        md,
        "- Density fitted on {} benign sessions, calibrated on {} others (seed {}, shuffled)\n",
        s.fit_rows, s.calibration_rows, p.seed
    );
    let _ = writeln!(md, "## What it computes\n");
    let _ = writeln!(
        md,
        "A Gaussian mixture with {} full-covariance components (linfa-clustering EM, k-means \
         start, covariance regularization {} on standardized features, fitted on the features \
         winsorized at ±{CLIP} σ) gives each session a nonconformity score, its −log-likelihood. The conformal p-value is \
         (1 + #calibration scores ≥ s) / (n + 1): under exchangeability with the benign \
         calibration sessions it is valid, so the detector combines it with its other signals \
         (signal `model.joint_density`, weight {}).",
        s.components, s.regularization, model.weight
    );
    if !s.failed_fits.is_empty() {
        let _ = writeln!(
            md,
            "Fits tried first and failed: {}.\n",
            s.failed_fits.join("; ")
        );
    }
    match &model.reranker {
        Some(_) => {
            let _ = writeln!(
                md,
                "A logistic-regression re-ranker (linfa-logistic, L2 α = 1) fitted on the labelled \
                 sessions gives an attack probability, shown as reason `model.reranker` on \
                 alerting sessions; it does not change scores.\n"
            );
        }
        None => {
            let _ = writeln!(
                md,
                "No re-ranker: fewer than {} labelled attack sessions.\n",
                o.min_attacks
            );
        }
    }
    let _ = writeln!(md, "## Metrics on the training data\n");
    let _ = writeln!(md, "| figure | value |\n|---|---:|");
    let _ = writeln!(
        md,
        "| mean log-likelihood, fitting sessions | {:.2} |",
        s.fit_log_likelihood
    );
    let [q50, q99, qmax] = s.calibration_quantiles;
    let _ = writeln!(
        md,
        "| calibration nonconformity median / p99 / max | {q50:.1} / {q99:.1} / {qmax:.1} |"
    );
    let _ = writeln!(
        md,
        "| attack sessions with conformal p ≤ 0.01 | {} |",
        opt(s.attacks_at_p_01.map(|v| v * 100.0), 1) + " %"
    );
    let _ = writeln!(
        md,
        "| ROC AUC, density: attacks vs calibration sessions | {} |",
        opt(s.density_auc, 3)
    );
    let _ = writeln!(
        md,
        "| ROC AUC, re-ranker on its own training rows (optimistic) | {} |\n",
        opt(s.reranker_train_auc, 3)
    );
    let _ = writeln!(
        md,
        "Held-out figures (another simulator seed, with and without the model layer, beside \
         the reference rules) come from `mailsentry eval`; see `benches/RESULTS.md`.\n"
    );
    let _ = writeln!(md, "## Features\n");
    let _ = writeln!(
        md,
        "| feature | mean | std | re-ranker coefficient (per σ) |\n|---|---:|---:|---:|"
    );
    let mut order: Vec<usize> = (0..model.features.len()).collect();
    if let Some(r) = &model.reranker {
        order.sort_by(|&a, &b| {
            r.coefficients[b]
                .abs()
                .total_cmp(&r.coefficients[a].abs())
                .then(a.cmp(&b))
        });
    }
    for j in order {
        let _ = writeln!(
            md,
            "| `{}` | {:.3} | {:.3} | {} |",
            model.features[j],
            model.scaler.mean[j],
            model.scaler.scale[j],
            model
                .reranker
                .as_ref()
                .map(|r| format!("{:+.3}", r.coefficients[j]))
                .unwrap_or_else(|| "–".into())
        );
    }
    if let Some(r) = &model.reranker {
        let _ = writeln!(md, "\nRe-ranker intercept: {:+.3}.", r.intercept);
    }
    let _ = writeln!(md, "\n## Limits\n");
    let _ = writeln!(
        md,
        "- Trained on the sessions of the data above: connectors, tenants and habits not in it \
         look unusual to the density. Retrain on your own logs (`mailsentry features`, \
         `mailsentry train`).\n\
         - The conformal guarantee assumes benign sessions to come are exchangeable with the \
         calibration sessions; drift (new connectors, vendor changes) breaks it — the detector's \
         own per-connector baselines carry that load, the model is one signal among them.\n\
         - Sessions in a connector's learning period are neither trained on nor scored by the model.\n\
         - Labels from a simulator describe the simulator's attacks; the re-ranker's coefficients \
         say what separated those, not what separates real intrusions.\n\
         - A model trained on another feature schema is refused by the detector."
    );
    md
}
