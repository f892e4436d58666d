//! `mailsentry eval`: the detector with and without the model layer, beside the reference
//! rules, on labelled data — alert-level figures (recall per scenario, false alerts per
//! connector-day, time to detect), session-level figures (precision-recall per scenario), and
//! the ablation verdict: does the model layer improve detection?

use crate::fit::auc;
use crate::frame::Rows;
use crate::labels::Labels;
use crate::pass::{run_pass, Progress};
use crate::plots::{distribution, lines, Axes, Series};
use crate::{io_at, pretty_json, TrainError};
use mailsentry_detect::evaluation::{at_least, evaluate, of_reference_rule, EvalReport};
use mailsentry_detect::model::Model;
use mailsentry_detect::reference::{RefAlert, REFERENCE_RULES};
use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_events::{GroundTruth, Severity};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Average precision and curve of one ranking for one scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioCurve {
    /// Scenario.
    pub scenario: String,
    /// Attack sessions of the scenario (scored, post-learning).
    pub attack_sessions: usize,
    /// Average precision against every benign scored session.
    pub average_precision: f64,
    /// ROC AUC.
    pub auc: Option<f64>,
    /// Precision-recall points (recall, precision), thinned for plotting.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
}

/// A session ranking's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ranking {
    /// Ranking name.
    pub name: String,
    /// Per scenario.
    pub scenarios: Vec<ScenarioCurve>,
    /// Mean of the scenarios' average precision.
    pub mean_average_precision: f64,
    /// Attack scores (for the distribution plot).
    #[serde(skip)]
    pub attack_scores: Vec<f64>,
    /// Benign scores.
    #[serde(skip)]
    pub benign_scores: Vec<f64>,
}

/// Everything `eval` measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    /// What was evaluated.
    pub data: String,
    /// The model, when one was given.
    pub model: Option<String>,
    /// Records read per pass.
    pub records: u64,
    /// Rejected records per pass.
    pub rejected: u64,
    /// Scored (post-learning) sessions: benign and attack.
    pub benign_sessions: usize,
    /// Attack sessions.
    pub attack_sessions: usize,
    /// Alert-level figures: mailsentry without the model, with it, and the reference rules.
    pub detectors: Vec<EvalReport>,
    /// Session-level rankings.
    pub rankings: Vec<Ranking>,
    /// The ablation: does the model layer improve the figures?
    pub model_improves: Option<bool>,
    /// Why.
    pub verdict: String,
    /// Seconds per pass.
    pub pass_seconds: Vec<f64>,
}

fn minutes(m: Option<f64>) -> String {
    m.map(|m| format!("{m:.0}")).unwrap_or_else(|| "–".into())
}

fn key(score: u32, p: f64) -> f64 {
    score as f64 * 1000.0 + (-p.clamp(1e-300, 1.0).log10()).min(999.0)
}

fn ranking(name: &str, rows: &Rows, score_of: &dyn Fn(usize) -> f64) -> Ranking {
    let scores: Vec<f64> = (0..rows.len()).map(score_of).collect();
    let benign: Vec<usize> = (0..rows.len())
        .filter(|&i| rows.label[i] == Some(false))
        .collect();
    let mut by_scenario: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in 0..rows.len() {
        if rows.label[i] == Some(true) {
            by_scenario
                .entry(rows.scenario[i].as_deref().unwrap_or("attack"))
                .or_default()
                .push(i);
        }
    }
    let benign_scores: Vec<f64> = benign.iter().map(|&i| scores[i]).collect();
    let mut scenarios = Vec::new();
    for (scenario, attacks) in &by_scenario {
        let attack_scores: Vec<f64> = attacks.iter().map(|&i| scores[i]).collect();
        let mut all: Vec<(f64, bool)> = attack_scores
            .iter()
            .map(|&s| (s, true))
            .chain(benign_scores.iter().map(|&s| (s, false)))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Ties are one threshold: a block of equal scores is taken whole.
        let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
        let mut curve = vec![(0.0, 1.0)];
        let mut i = 0;
        while i < all.len() {
            let s = all[i].0;
            while i < all.len() && all[i].0 == s {
                if all[i].1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
                i += 1;
            }
            let recall = tp as f64 / attacks.len() as f64;
            let precision = tp as f64 / (tp + fp) as f64;
            ap += (recall - last_recall) * precision;
            last_recall = recall;
            if curve
                .last()
                .is_none_or(|&(r, p)| (recall - r).abs() > 0.002 || (precision - p).abs() > 0.002)
            {
                curve.push((recall, precision));
            }
            if tp == attacks.len() {
                break;
            }
        }
        scenarios.push(ScenarioCurve {
            scenario: scenario.to_string(),
            attack_sessions: attacks.len(),
            average_precision: ap,
            auc: auc(&attack_scores, &benign_scores),
            curve,
        });
    }
    let mean_average_precision = if scenarios.is_empty() {
        0.0
    } else {
        scenarios.iter().map(|s| s.average_precision).sum::<f64>() / scenarios.len() as f64
    };
    Ranking {
        name: name.to_owned(),
        scenarios,
        mean_average_precision,
        attack_scores: (0..rows.len())
            .filter(|&i| rows.label[i] == Some(true))
            .map(|i| scores[i])
            .collect(),
        benign_scores,
    }
}

fn reference_reports(truth: &GroundTruth, refs: &[RefAlert]) -> Vec<EvalReport> {
    REFERENCE_RULES
        .iter()
        .map(|rule| evaluate(rule, truth, &of_reference_rule(rule, refs)))
        .collect()
}

/// Runs the evaluation: a pass without the model (with the reference rules), and, with a
/// model, a pass with it.
pub fn run_eval(
    paths: &[PathBuf],
    truth: &GroundTruth,
    config: &DetectConfig,
    enrichment: &Arc<Enrichment>,
    model: Option<Arc<Model>>,
    progress: &mut dyn FnMut(&str, &Progress),
) -> EvalResult {
    let labels = Labels::Truth(truth.clone());
    let (base, rows) = run_pass(paths, config, enrichment, None, true, &mut |p| {
        progress("without model", p)
    });
    let base_rows = Rows::from_features(&rows, Some(&labels));
    let mut detectors = vec![evaluate(
        "mailsentry",
        truth,
        &at_least(&base.alerts, Severity::Medium),
    )];
    let mut rankings = vec![ranking("mailsentry", &base_rows, &|i| {
        key(base_rows.score[i], base_rows.p_value[i])
    })];
    let mut pass_seconds = vec![base.seconds];
    let mut model_improves = None;
    let mut verdict = "no model given: the detector alone".to_owned();
    if let Some(m) = &model {
        let (with, rows) = run_pass(
            paths,
            config,
            enrichment,
            Some(m.clone()),
            false,
            &mut |p| progress("with model", p),
        );
        pass_seconds.push(with.seconds);
        let with_rows = Rows::from_features(&rows, Some(&labels));
        detectors.push(evaluate(
            "mailsentry + model",
            truth,
            &at_least(&with.alerts, Severity::Medium),
        ));
        rankings.push(ranking("mailsentry + model", &with_rows, &|i| {
            key(with_rows.score[i], with_rows.p_value[i])
        }));
        rankings.push(ranking("model density alone", &base_rows, &|i| {
            m.judge(base_rows.row(i)).nonconformity
        }));
        if m.reranker.is_some() {
            rankings.push(ranking("model re-ranker alone", &base_rows, &|i| {
                m.judge(base_rows.row(i)).probability.unwrap_or(0.0)
            }));
        }
        let (a, b) = (&detectors[0], &detectors[1]);
        let (ra, rb) = (&rankings[0], &rankings[1]);
        // Time to detect counts when it moves by more than a minute.
        let later = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => y > x + 1.0,
            _ => false,
        };
        let better = b.recall > a.recall
            || b.false_alerts < a.false_alerts
            || rb.mean_average_precision > ra.mean_average_precision + 0.01
            || later(b.median_minutes_to_detect, a.median_minutes_to_detect)
            || later(b.p90_minutes_to_detect, a.p90_minutes_to_detect);
        let worse = b.recall < a.recall
            || b.false_alerts > a.false_alerts
            || rb.mean_average_precision + 0.01 < ra.mean_average_precision
            || later(a.median_minutes_to_detect, b.median_minutes_to_detect)
            || later(a.p90_minutes_to_detect, b.p90_minutes_to_detect);
        model_improves = Some(better && !worse);
        verdict = format!(
            "with the model: recall {:.1} % → {:.1} %, false alerts {} → {}, median / p90 minutes to detect {} / {} → {} / {}, session mean average precision {:.3} → {:.3}: {}",
            a.recall * 100.0,
            b.recall * 100.0,
            a.false_alerts,
            b.false_alerts,
            minutes(a.median_minutes_to_detect),
            minutes(a.p90_minutes_to_detect),
            minutes(b.median_minutes_to_detect),
            minutes(b.p90_minutes_to_detect),
            ra.mean_average_precision,
            rb.mean_average_precision,
            match (better, worse) {
                (true, false) => "the model improves detection — keep it in the default configuration",
                (_, true) => "the model makes a figure worse — leave it out of the default configuration",
                (false, false) => "no figure changes — the model adds nothing here; leave it out of the default configuration",
            }
        );
    }
    detectors.extend(reference_reports(truth, &base.references));
    EvalResult {
        data: format!(
            "{} (seed {}, {} days, {} tenants, learning {} days)",
            truth.command,
            truth.seed,
            truth.days,
            truth.tenants.len(),
            truth.learning_days
        ),
        model: model.map(|m| m.name.clone()),
        records: base.records,
        rejected: base.rejected,
        benign_sessions: base_rows
            .label
            .iter()
            .filter(|l| **l == Some(false))
            .count(),
        attack_sessions: base_rows.label.iter().filter(|l| **l == Some(true)).count(),
        detectors,
        rankings,
        model_improves,
        verdict,
        pass_seconds,
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// A Markdown table header: the fixed leading columns (`fixed`, ruled by `fixed_rule`), then
/// one column per name, each ruled by `rule`.
fn table_header<'n>(
    md: &mut String,
    fixed: &str,
    fixed_rule: &str,
    names: impl Iterator<Item = &'n str>,
    rule: &str,
) {
    let mut rules = String::from(fixed_rule);
    md.push_str(fixed);
    for name in names {
        let _ = write!(md, " {name} |");
        rules.push_str(rule);
    }
    let _ = writeln!(md, "\n{rules}");
}

/// Writes `metrics.json`, `REPORT.md` and the SVG plots into `dir`.
pub fn write_report(dir: &Path, r: &EvalResult) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let metrics = dir.join("metrics.json");
    std::fs::write(&metrics, pretty_json(r, &metrics)?).map_err(io_at(&metrics))?;

    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation report\n");
    let _ = writeln!(md, "- Data: {}", r.data);
    let _ = writeln!(
        md,
        "- Records: {} ({} rejected); scored sessions: {} benign, {} attack",
        r.records, r.rejected, r.benign_sessions, r.attack_sessions
    );
    let _ = writeln!(
        md,
        "- Model: {}",
        r.model.as_deref().unwrap_or("none (detector alone)")
    );
    let _ = writeln!(md, "- **Ablation:** {}\n", r.verdict);

    let _ = writeln!(md, "## Campaigns detected (alerts at ≥ medium)\n");
    table_header(
        &mut md,
        "| scenario | difficulty |",
        "|---|---|",
        r.detectors.iter().map(|d| d.detector.as_str()),
        "---|",
    );
    if let Some(first) = r.detectors.first() {
        for (i, s) in first.scenarios.iter().enumerate() {
            let _ = write!(md, "| {} | {} |", s.scenario, s.difficulty);
            for d in &r.detectors {
                let x = &d.scenarios[i];
                let _ = write!(md, " {}/{} |", x.detected, x.campaigns);
            }
            md.push('\n');
        }
    }
    let row = |md: &mut String, name: &str, f: &dyn Fn(&EvalReport) -> String| {
        let _ = write!(md, "| {name} | |");
        for d in &r.detectors {
            let _ = write!(md, " {} |", f(d));
        }
        md.push('\n');
    };
    row(&mut md, "**recall**", &|d| {
        format!("**{:.0} %**", d.recall * 100.0)
    });
    row(&mut md, "false alerts (per connector-day)", &|d| {
        format!("{} ({:.3})", d.false_alerts, d.false_per_connector_day)
    });
    row(&mut md, "median / p90 minutes to detect", &|d| {
        let f = |x: Option<f64>| x.map(|m| format!("{m:.0}")).unwrap_or_else(|| "–".into());
        format!(
            "{} / {}",
            f(d.median_minutes_to_detect),
            f(d.p90_minutes_to_detect)
        )
    });

    let _ = writeln!(
        md,
        "\n## Sessions: precision-recall per scenario\n\nEvery scored session of a scenario's \
         campaigns against every benign scored session. Average precision (ROC AUC):\n"
    );
    table_header(
        &mut md,
        "| scenario | attack sessions |",
        "|---|---:|",
        r.rankings.iter().map(|k| k.name.as_str()),
        "---:|",
    );
    if let Some(first) = r.rankings.first() {
        for (i, s) in first.scenarios.iter().enumerate() {
            let _ = write!(md, "| {} | {} |", s.scenario, s.attack_sessions);
            for k in &r.rankings {
                let x = &k.scenarios[i];
                let _ = write!(
                    md,
                    " {:.3} ({}) |",
                    x.average_precision,
                    x.auc
                        .map(|a| format!("{a:.3}"))
                        .unwrap_or_else(|| "–".into())
                );
            }
            md.push('\n');
        }
        let _ = write!(md, "| **mean** | |");
        for k in &r.rankings {
            let _ = write!(md, " **{:.3}** |", k.mean_average_precision);
        }
        md.push('\n');
        md.push('\n');
        for (i, s) in first.scenarios.iter().enumerate() {
            let file = format!("pr-{}.svg", slug(&s.scenario));
            lines(
                &dir.join(&file),
                &Axes {
                    title: &format!("precision-recall: {}", s.scenario),
                    x: "recall",
                    y: "precision",
                    x_range: (0.0, 1.0),
                    y_range: (0.0, 1.05),
                },
                &r.rankings
                    .iter()
                    .map(|k| Series {
                        name: k.name.clone(),
                        points: k.scenarios[i].curve.clone(),
                    })
                    .collect::<Vec<_>>(),
            )?;
            let _ = writeln!(md, "![precision-recall: {}]({file})", s.scenario);
        }
    }

    let _ = writeln!(
        md,
        "\n## Score distributions, attack vs benign sessions\n\nShare of each class's sessions \
         per score bin (score = detector score 0–100; ties broken by −log10 p).\n"
    );
    for k in r.rankings.iter().take(2) {
        let to_score = |v: &f64| (v / 1000.0).floor();
        let attacks: Vec<f64> = k.attack_scores.iter().map(to_score).collect();
        let benign: Vec<f64> = k.benign_scores.iter().map(to_score).collect();
        let file = format!("scores-{}.svg", slug(&k.name));
        let a = distribution(&attacks, (0.0, 100.0), 20);
        let b = distribution(&benign, (0.0, 100.0), 20);
        let top = a.iter().chain(&b).map(|p| p.1).fold(0.0f64, f64::max);
        lines(
            &dir.join(&file),
            &Axes {
                title: &format!("score distribution: {}", k.name),
                x: "score",
                y: "share of sessions",
                x_range: (0.0, 100.0),
                y_range: (0.0, (top * 1.1).max(0.05)),
            },
            &[
                Series {
                    name: format!("attack sessions ({})", attacks.len()),
                    points: a,
                },
                Series {
                    name: format!("benign sessions ({})", benign.len()),
                    points: b,
                },
            ],
        )?;
        let _ = writeln!(md, "![score distribution: {}]({file})", k.name);
    }

    let _ = writeln!(
        md,
        "\n## Time to detect\n\nShare of all campaigns detected within a given time of their \
         first record (each curve ends at the detector's recall).\n"
    );
    let horizon = r
        .detectors
        .iter()
        .flat_map(|d| d.scenarios.iter().flat_map(|s| s.minutes_to_detect.iter()))
        .fold(60.0f64, |m, &x| m.max(x))
        / 60.0;
    let series: Vec<Series> = r
        .detectors
        .iter()
        .map(|d| {
            let total: usize = d.scenarios.iter().map(|s| s.campaigns).sum();
            let mut minutes: Vec<f64> = d
                .scenarios
                .iter()
                .flat_map(|s| s.minutes_to_detect.iter().copied())
                .collect();
            minutes.sort_by(f64::total_cmp);
            let mut points = vec![(0.0, 0.0)];
            for (i, m) in minutes.iter().enumerate() {
                let h = (m / 60.0).max(0.0);
                points.push((h, i as f64 / total.max(1) as f64));
                points.push((h, (i + 1) as f64 / total.max(1) as f64));
            }
            let end = points.last().map_or(0.0, |p| p.1);
            points.push((horizon, end));
            Series {
                name: d.detector.clone(),
                points,
            }
        })
        .collect();
    lines(
        &dir.join("time-to-detect.svg"),
        &Axes {
            title: "time to detect",
            x: "hours after the campaign's first record",
            y: "share of campaigns detected",
            x_range: (0.0, horizon),
            y_range: (0.0, 1.05),
        },
        &series,
    )?;
    let _ = writeln!(md, "![time to detect](time-to-detect.svg)");
    let _ = writeln!(
        md,
        "\nA campaign is detected when an alert names its tenant and connector, fires from 5 \
         minutes before its first record to 6 hours after its last, and shares a source \
         address with it (reference rules that name no address match on tenant, connector and \
         time). False alerts are detections after the learning period matching no campaign."
    );
    let path = dir.join("REPORT.md");
    std::fs::write(&path, md).map_err(io_at(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_headers_rule_every_column() {
        let mut md = String::new();
        table_header(
            &mut md,
            "| a | b |",
            "|---|---:|",
            ["x", "y"].into_iter(),
            "---:|",
        );
        assert_eq!(md, "| a | b | x | y |\n|---|---:|---:|---:|\n");
        let mut none = String::new();
        table_header(&mut none, "| a |", "|---|", std::iter::empty(), "---|");
        assert_eq!(none, "| a |\n|---|\n");
    }

    #[test]
    fn average_precision_of_a_perfect_and_a_useless_ranking() {
        let rows = Rows {
            width: 0,
            first: vec![0; 6],
            label: vec![
                Some(true),
                Some(true),
                Some(false),
                Some(false),
                Some(false),
                Some(false),
            ],
            scenario: vec![Some("s".into()), Some("s".into()), None, None, None, None],
            ..Rows::default()
        };
        let perfect = ranking("p", &rows, &|i| if i < 2 { 10.0 } else { 1.0 });
        assert!((perfect.scenarios[0].average_precision - 1.0).abs() < 1e-12);
        assert_eq!(perfect.scenarios[0].auc, Some(1.0));
        // Every session tied: one threshold, precision 2/6 at recall 1.
        let flat = ranking("f", &rows, &|_| 1.0);
        assert!((flat.scenarios[0].average_precision - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(flat.scenarios[0].auc, Some(0.5));
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("vendor IP, abnormal hour and volume"),
            "vendor-ip-abnormal-hour-and-volume"
        );
    }
}
