//! Scorers: each signal family compares a session with its connector's baseline and gives a
//! tail probability and a sentence; hard rules give fixed scores; a weighted Cauchy
//! combination (valid under dependence between signals) gives the session's p-value and the
//! fixed 0–100 score.

use crate::baseline::Secs;
use crate::baseline::ValueCounts;
use crate::connector_state::ConnectorState;
use crate::key_text::KeyText;
use crate::sessions::{Activity, Session};
use crate::DetectConfig;
use mailsentry_events::{score_of_p, Reason};

/// One signal's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Signal id.
    pub id: &'static str,
    /// Tail probability under the baseline.
    pub p: f64,
    /// Weight in the combination.
    pub weight: f64,
    /// Sentence.
    pub summary: String,
    /// Observed value.
    pub observed: String,
    /// Baseline value.
    pub baseline: String,
}

/// A rule that fired: a hard fact with a fixed score.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// Signal id.
    pub id: &'static str,
    /// Fixed score.
    pub score: u8,
    /// Sentence.
    pub summary: String,
    /// Observed.
    pub observed: String,
    /// Baseline.
    pub baseline: String,
}

/// A session's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Combined p-value of the statistical signals.
    pub p: f64,
    /// Final score (the higher of the statistical score and any rule).
    pub score: u8,
    /// Reasons, strongest first (only when the evaluation was explained: see
    /// [`ScoringContext::explain`]).
    pub reasons: Vec<Reason>,
    /// The connector is still learning (only rules may alert).
    pub learning: bool,
    /// How settled the baseline is: learning time and sessions seen, each as a share of what
    /// the learning period asks, multiplied (0–1).
    pub confidence: f64,
    /// Every statistical signal computed, with its p-value (the model layer's inputs).
    pub signals: Vec<(&'static str, f64)>,
    /// The rules that fired.
    pub rules: Vec<&'static str>,
    /// The model layer's re-ranker attack probability, when a model with one is loaded.
    pub model_probability: Option<f64>,
}

/// Weighted Cauchy combination (Liu & Xie 2020): valid whatever the dependence between
/// the p-values. Weights are normalised to sum to one.
pub fn cauchy_combine(signals: &[(f64, f64)]) -> f64 {
    cauchy_combine_iter(signals.iter().copied())
}

/// [`cauchy_combine`] of (p-value, weight) pairs given by an iterator (no list built).
fn cauchy_combine_iter(signals: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let wsum: f64 = signals.clone().map(|(_, w)| w).sum();
    if signals.clone().next().is_none() || wsum <= 0.0 {
        return 1.0;
    }
    let t: f64 = signals
        .map(|(p, w)| {
            let p = p.clamp(1e-300, 1.0);
            let term = if p < 1e-12 {
                1.0 / (p * std::f64::consts::PI)
            } else {
                ((0.5 - p) * std::f64::consts::PI).tan()
            };
            w / wsum * term
        })
        .sum();
    if t > 1e12 {
        return (1.0 / (t * std::f64::consts::PI)).max(1e-300);
    }
    (0.5 - t.atan() / std::f64::consts::PI).clamp(1e-300, 1.0)
}

/// `format!` when the evaluation is to be explained, else an empty string: the sentences cost
/// more than the arithmetic, and only evaluations that reach an alert are read
/// ([`crate::Detector`] scores first, then explains the evaluations that alert).
macro_rules! say {
    ($explain:expr, $($arg:tt)*) => {
        explained!($explain, format!($($arg)*))
    };
}

/// The text `$text` when the evaluation is to be explained, else an empty string (`$text` is
/// not evaluated then).
macro_rules! explained {
    ($explain:expr, $text:expr) => {
        if $explain {
            $text
        } else {
            String::new()
        }
    };
}

/// The `n` most used values of a baseline, for an explanation (none when not explaining).
fn explained_top(explain: bool, counts: &ValueCounts, n: usize, now: Secs, hl: f64) -> Vec<String> {
    if !explain {
        return Vec::new();
    }
    counts.top(n, now, hl).into_iter().map(|(k, _)| k).collect()
}

fn fmt_count(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn days(secs: Secs) -> f64 {
    secs as f64 / 86400.0
}

/// Hour of week (Monday 00:00 = 0) of a time, shifted by `offset` seconds.
pub fn hour_of_week(t: Secs, offset: i64) -> usize {
    let local = t + offset;
    // 1970-01-01 was a Thursday: shift so Monday is day 0.
    let days_since = local.div_euclid(86400) + 3;
    let day = days_since.rem_euclid(7) as usize;
    let hour = (local.rem_euclid(86400) / 3600) as usize;
    day * 24 + hour
}

/// Pooled novelty rates (see [`crate::baseline::NoveltyPool`]) at the time of scoring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolRates {
    /// New addresses.
    pub ip: f64,
    /// New networks.
    pub network: f64,
    /// New ASNs.
    pub asn: f64,
    /// New countries.
    pub country: f64,
    /// New user agents.
    pub agent: f64,
    /// New credential keys.
    pub key: f64,
}

/// How many observations the pooled novelty rate weighs in one connector's estimate.
const POOL_WEIGHT: f64 = 200.0;
/// How the hours in sentences are named: tenant-local when a zone or offset is configured.
fn clock_name(offset: i64, config: &DetectConfig) -> &'static str {
    if offset == 0 && config.tenant_zones.is_empty() && config.utc_offset_secs == 0 {
        "UTC"
    } else {
        "tenant-local time"
    }
}

/// Sessions an hour-of-day volume profile weighs against the connector's overall profile.
const HOUR_POOL: f64 = 10.0;
/// Floor for a new address or network inside an ASN the connector already uses.
const NEW_ADDRESS_IN_KNOWN_ASN_P: f64 = 1e-3;

/// What a session is scored with, besides the session and its connector.
#[derive(Clone, Copy)]
pub struct ScoringContext<'a> {
    /// Detector settings.
    pub config: &'a DetectConfig,
    /// Pooled novelty rates now.
    pub rates: PoolRates,
    /// The tenant's UTC offset at the session's start.
    pub utc_offset_secs: i64,
    /// The time of the decision (the latest event it rests on).
    pub now: Secs,
    /// The model layer, when loaded.
    pub model: Option<&'a crate::model::Model>,
    /// Write the reasons and their sentences (the score is the same either way).
    pub explain: bool,
}

/// Scores a session against its connector.
pub fn evaluate(session: &Session, state: &ConnectorState, ctx: &ScoringContext) -> Evaluation {
    let ScoringContext {
        config,
        rates,
        utc_offset_secs,
        now,
        model,
        explain,
    } = *ctx;
    let hl = config.half_life_secs();
    let b = &state.baseline;
    let age = now - b.first_seen;
    let learning = age < config.learning_secs() || b.sessions < config.min_sessions;
    let mut signals: Vec<Signal> = Vec::new();
    let mut rules: Vec<RuleHit> = Vec::new();

    // Source: one signal at the coarsest level where the source is new (a new country or ASN
    // says more than a new address inside a known network), else the network's rarity.
    let ip_text = session.ip.map(KeyText::ip);
    let asn_text = session.asn.map(KeyText::asn);
    let levels: [(&'static str, &'static str, Option<&str>, &ValueCounts, f64); 4] = [
        (
            "country",
            "source.country.first_seen",
            session.country.as_deref(),
            &b.countries,
            rates.country,
        ),
        (
            "ASN",
            "source.asn.first_seen",
            asn_text.as_ref().map(KeyText::as_str),
            &b.asns,
            rates.asn,
        ),
        (
            "network",
            "source.network.first_seen",
            Some(session.network.as_str()),
            &b.networks,
            rates.network,
        ),
        (
            "address",
            "source.ip.first_seen",
            ip_text.as_ref().map(KeyText::as_str),
            &b.ips,
            rates.ip,
        ),
    ];
    let novel = || {
        levels.iter().filter(|(_, _, v, counts, _)| {
            v.is_some_and(|v| !counts.is_empty() && counts.get(v).is_none())
        })
    };
    let usual = explained_top(explain, &b.networks, 3, now, hl);
    let place = say!(
        explain,
        "{}{}{}",
        ip_text
            .as_ref()
            .map_or(session.network.as_str(), KeyText::as_str),
        asn_text
            .as_ref()
            .map(|asn| format!(
                " ({}{})",
                asn.as_str(),
                session
                    .org
                    .as_deref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default(),
        session
            .country
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    );
    let known = config.known(&session.key.connector);
    let declared = known.and_then(|k| k.declares_source(session.ip, session.asn));
    if declared == Some(false) && session.activity == Activity::MailboxAccess {
        rules.push(RuleHit {
            id: "source.outside_vendor_ranges",
            score: 55,
            summary: say!(
                explain,
                "source {place} is outside the vendor ranges declared for this connector"
            ),
            observed: explained!(explain, place.clone()),
            baseline: "declared in the configuration".into(),
        });
    }
    if declared == Some(true) {
        // Inside the declared ranges: a new address or network there is the vendor's own.
    } else if let Some((level, id, value, counts, rate)) = novel().next() {
        let mut p = counts.novelty(now, hl, *rate, POOL_WEIGHT);
        if matches!(*level, "network" | "address") && session.asn.is_some() {
            // Vendors add addresses inside networks they already use: weak on its own.
            p = p.max(NEW_ADDRESS_IN_KNOWN_ASN_P);
        }
        let what: Vec<String> = if explain {
            novel()
                .map(|(l, _, v, _, _)| format!("{l} {}", v.unwrap_or("")))
                .collect()
        } else {
            Vec::new()
        };
        signals.push(Signal {
            id,
            p,
            weight: 0.30,
            summary: say!(
                explain,
                "source {place} is new for this connector: never-seen {} (in {:.0} days it used {} ASNs, {} networks, {} addresses)",
                what.join(", "),
                days(age),
                b.asns.len(),
                b.networks.len(),
                b.ips.len()
            ),
            observed: explained!(explain, value.unwrap_or_default().to_owned()),
            baseline: say!(explain, "usual networks: {}", usual.join(", ")),
        });
    } else if !b.networks.is_empty() {
        let r = b.networks.rarity(&session.network, now, hl);
        signals.push(Signal {
            id: "source.network.rare",
            p: r.p,
            weight: 0.30,
            summary: say!(
                explain,
                "source {place} is in a network this connector rarely uses ({} of {} sessions)",
                fmt_count(r.count),
                fmt_count(r.total)
            ),
            observed: explained!(explain, session.network.clone()),
            baseline: say!(explain, "usual networks: {}", usual.join(", ")),
        });
    }
    if let Some(agent) = session.agents.first() {
        if !b.agents.is_empty() && b.agents.get(agent).is_none() {
            let known = explained_top(explain, &b.agents, 2, now, hl);
            signals.push(Signal {
                id: "source.user_agent.first_seen",
                p: b.agents.novelty(now, hl, rates.agent, POOL_WEIGHT),
                weight: 0.05,
                summary: say!(explain, "client {agent:?} never seen for this connector"),
                observed: explained!(explain, agent.clone()),
                baseline: say!(explain, "usual: {}", known.join(", ")),
            });
        }
    }

    if session.activity == Activity::MailboxAccess {
        // Volume.
        if session.items > 0 && b.items.total(now, hl) > 0.0 {
            // The hour's own profile, pooled toward the connector's overall one: an hour with
            // few sessions borrows the overall tail.
            let overall = b.items.upper_tail(session.items as f64, now, hl);
            let hour = hour_of_week(session.first, utc_offset_secs) % 24;
            let slot = b
                .items_by_hour
                .get(hour)
                .map(|h| h.upper_tail(session.items as f64, now, hl));
            let (p, shown, at_hour) = match slot {
                Some(s) if s.total > 0.0 => {
                    let p = (s.total * s.p + HOUR_POOL * overall.p) / (s.total + HOUR_POOL);
                    if s.total >= HOUR_POOL {
                        (p, s, true)
                    } else {
                        (p, overall, false)
                    }
                }
                _ => (overall.p, overall, false),
            };
            signals.push(Signal {
                id: "volume.items",
                p,
                weight: 0.12,
                summary: if !explain {
                    String::new()
                } else if at_hour {
                    format!(
                        "{} items read in one session at {hour:02}:00 {}; at that hour this connector's sessions read {} typically, {} at the 99th percentile",
                        session.items,
                        clock_name(utc_offset_secs, config),
                        fmt_count(shown.median),
                        fmt_count(shown.p99)
                    )
                } else {
                    format!(
                        "{} items read in one session; this connector's sessions read {} typically, {} at the 99th percentile",
                        session.items,
                        fmt_count(shown.median),
                        fmt_count(shown.p99)
                    )
                },
                observed: explained!(explain, session.items.to_string()),
                baseline: say!(explain, "median {}, p99 {}", fmt_count(shown.median), fmt_count(shown.p99)),
            });
        }
        if !session.mailboxes.is_empty() && b.mailboxes.total(now, hl) > 0.0 {
            let n = session.mailboxes.len() as f64;
            let t = b.mailboxes.upper_tail(n, now, hl);
            signals.push(Signal {
                id: "volume.mailboxes",
                p: t.p,
                weight: 0.10,
                summary: say!(
                    explain,
                    "{} mailboxes in one session; typical {}, 99th percentile {}",
                    n,
                    fmt_count(t.median),
                    fmt_count(t.p99)
                ),
                observed: explained!(explain, n.to_string()),
                baseline: say!(
                    explain,
                    "median {}, p99 {}",
                    fmt_count(t.median),
                    fmt_count(t.p99)
                ),
            });
        }
        // Target.
        if session.new_targets > 0 {
            let t = b
                .new_targets
                .upper_tail(session.new_targets as f64, now, hl);
            let names: Vec<&str> = session
                .mailbox_names
                .iter()
                .map(String::as_str)
                .take(3)
                .collect();
            signals.push(Signal {
                id: "target.new_mailboxes",
                p: t.p,
                weight: 0.15,
                summary: say!(
                    explain,
                    "{} mailboxes this connector never read before (the tenant's, e.g. {})",
                    session.new_targets,
                    names.join(", ")
                ),
                observed: explained!(explain, session.new_targets.to_string()),
                baseline: say!(explain, "{} mailboxes read by this connector", b.read.len()),
            });
        }
        // Credential: a key never seen (weak when it comes from a network the connector
        // uses: that is how a planned rotation looks).
        for key in &session.keys {
            if b.keys.is_empty() || b.keys.get(key).is_some() {
                continue;
            }
            let from_known_network = b.networks.get(&session.network).is_some();
            let mut p = b.keys.novelty(now, hl, rates.key, POOL_WEIGHT);
            if from_known_network {
                p = p.max(0.01);
            }
            let known = explained_top(explain, &b.keys, 3, now, hl);
            signals.push(Signal {
                id: "credential.key.first_seen",
                p,
                weight: 0.10,
                summary: say!(
                    explain,
                    "credential key {key} never used by this connector before"
                ),
                observed: explained!(explain, key.clone()),
                baseline: say!(explain, "keys in use: {}", known.join(", ")),
            });
        }
    }

    // Timing.
    if b.sessions >= 20 {
        let h = hour_of_week(session.first, utc_offset_secs);
        let (p, density) = b.week.rarity(h);
        signals.push(Signal {
            id: "timing.hour_of_week",
            p,
            weight: 0.08,
            summary: say!(
                explain,
                "active at a rare hour for this connector (hour {} of the week, {:.0}% of its usual density)",
                h,
                density * 100.0
            ),
            observed: say!(explain, "hour-of-week {h}"),
            baseline: say!(explain, "{:.2} of the average hourly activity", density),
        });
    }

    // Concurrency: a parallel stream beside the usual one (not when the operator declared
    // the source as the vendor's).
    if let Some(other) = session
        .concurrent_with
        .as_ref()
        .filter(|_| declared != Some(true))
    {
        let new_asn = asn_text
            .as_ref()
            .is_some_and(|asn| b.asns.get(asn.as_str()).is_none());
        if new_asn {
            rules.push(RuleHit {
                id: "credential.concurrent_networks",
                score: 65,
                summary: say!(
                    explain,
                    "the connector's identity is used from {} ({}) while its usual network {} is active at the same time",
                    ip_text.as_ref().map_or("", KeyText::as_str),
                    asn_text.as_ref().map_or("", KeyText::as_str),
                    other
                ),
                observed: explained!(explain, session.network.clone()),
                baseline: other.clone(),
            });
        } else {
            signals.push(Signal {
                id: "timing.parallel_stream",
                p: 1e-5,
                weight: 0.12,
                summary: say!(
                    explain,
                    "a second stream from {} runs beside the connector's usual network {}",
                    session.network,
                    other
                ),
                observed: explained!(explain, session.network.clone()),
                baseline: other.clone(),
            });
        }
    }

    // Credential rules.
    if let Some(k) = known.filter(|k| !k.expected_key_ids.is_empty()) {
        for key in &session.keys {
            if !k
                .expected_key_ids
                .iter()
                .any(|e| e.eq_ignore_ascii_case(key))
            {
                rules.push(RuleHit {
                    id: "credential.unexpected_key",
                    score: 60,
                    summary: say!(
                        explain,
                        "credential key {key} is not one of the keys declared for this connector"
                    ),
                    observed: explained!(explain, key.clone()),
                    baseline: say!(explain, "declared: {}", k.expected_key_ids.join(", ")),
                });
            }
        }
    }
    for key in &session.keys {
        let Some(k) = state.keys.get(key) else {
            continue;
        };
        if let Some(removed) = k.removed_at.filter(|&r| r <= session.last) {
            rules.push(RuleHit {
                id: "credential.removed_key_used",
                score: 85,
                summary: say!(
                    explain,
                    "credential key {key} was removed {:.1} days earlier and is still used",
                    days(session.last - removed)
                ),
                observed: explained!(explain, key.clone()),
                baseline: "removed".into(),
            });
        } else if let Some(superseded) = k.superseded_at.filter(|&s| s <= session.first) {
            rules.push(RuleHit {
                id: "credential.rotated_key_used",
                score: 75,
                summary: say!(
                    explain,
                    "credential key {key} was rotated out {:.1} days earlier (a newer key took over) and is used again",
                    days(session.first - superseded)
                ),
                observed: explained!(explain, key.clone()),
                baseline: "rotated out".into(),
            });
        }
        if let Some((added, by)) = &k.added {
            let network_new = b.networks.get(&session.network).is_none();
            if network_new && session.first - added < 30 * 86400 {
                rules.push(RuleHit {
                    id: "credential.added_then_used",
                    score: 70,
                    summary: say!(
                        explain,
                        "credential key {key}, added by {by} {:.1} hours earlier, is used from a network this connector never used ({})",
                        (session.first - added) as f64 / 3600.0,
                        session.network
                    ),
                    observed: explained!(explain, session.network.clone()),
                    baseline: "key added recently".into(),
                });
            }
        }
    }

    // Transport.
    if session.activity == Activity::Transport {
        if let Some(weak) = &session.weak_tls {
            let seen_weak = b.tls.get(weak).is_some();
            signals.push(Signal {
                id: "transport.weak_tls",
                p: if seen_weak { 0.05 } else { 1e-5 },
                weight: 0.3,
                summary: say!(
                    explain,
                    "mail delivered over {weak}, below TLS 1.2 or without forward secrecy"
                ),
                observed: explained!(explain, weak.clone()),
                baseline: say!(
                    explain,
                    "usual: {}",
                    b.tls
                        .top(2, now, hl)
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if session.dmarc_fail > 0 {
            signals.push(Signal {
                id: "transport.dmarc_fail",
                p: 0.01,
                weight: 0.1,
                summary: say!(
                    explain,
                    "{} messages failing DMARC through this hop",
                    session.dmarc_fail
                ),
                observed: explained!(explain, session.dmarc_fail.to_string()),
                baseline: "pass".into(),
            });
        }
    }

    // The model layer sees the signals and rules above (its features), never its own output.
    let base_signals: Vec<(&'static str, f64)> = signals.iter().map(|s| (s.id, s.p)).collect();
    let rule_ids: Vec<&'static str> = rules.iter().map(|r| r.id).collect();
    let mut model_probability = None;
    if let Some(m) = model.filter(|_| !learning) {
        let values =
            crate::features::feature_values(session, &base_signals, &rule_ids, utc_offset_secs);
        let verdict = m.judge(&values);
        model_probability = verdict.probability;
        signals.push(m.signal(&verdict));
    }

    let combined = cauchy_combine_iter(signals.iter().map(|s| (s.p, s.weight)));
    let mut score = score_of_p(combined);
    if learning {
        score = score.min(config.learning_score_cap);
    }
    let rule_score = rules.iter().map(|r| r.score).max().unwrap_or(0);
    score = score.max(rule_score);

    let mut reasons = if explain {
        reasons_of(&rules, &signals, config.reason_p)
    } else {
        Vec::new()
    };
    if let Some(q) = model_probability.filter(|_| explain && score >= config.alert_score()) {
        reasons.push(Reason {
            signal: "model.reranker".into(),
            summary: format!(
                "the supervised re-ranker gives this session an attack probability of {q:.2}"
            ),
            observed: format!("{q:.3}"),
            baseline: "labelled sessions".into(),
            weight: 0.0,
            p_value: 1.0 - q,
        });
    }
    let confidence = ((age as f64 / config.learning_secs().max(1) as f64).clamp(0.0, 1.0)
        * (b.sessions as f64 / config.min_sessions.max(1) as f64).clamp(0.0, 1.0)
        * 100.0)
        .round()
        / 100.0;
    Evaluation {
        p: combined,
        score,
        reasons,
        learning,
        confidence,
        signals: base_signals,
        rules: rule_ids,
        model_probability,
    }
}

/// The reasons of an explained evaluation: rules first, then the signals below `reason_p` by
/// strength; a signal's weight is its share of the combination statistic.
fn reasons_of(rules: &[RuleHit], signals: &[Signal], reason_p: f64) -> Vec<Reason> {
    let wsum: f64 = signals.iter().map(|s| s.weight).sum::<f64>().max(1e-12);
    let contrib = |s: &Signal| s.weight / wsum / (s.p.max(1e-300) * std::f64::consts::PI);
    let total_contrib: f64 = signals.iter().map(contrib).sum::<f64>().max(1e-300);
    let mut strong: Vec<&Signal> = signals.iter().filter(|s| s.p < reason_p).collect();
    strong.sort_by(|a, b| a.p.total_cmp(&b.p).then_with(|| a.id.cmp(b.id)));
    let mut reasons: Vec<Reason> = rules
        .iter()
        .map(|r| Reason {
            signal: r.id.into(),
            summary: r.summary.clone(),
            observed: r.observed.clone(),
            baseline: r.baseline.clone(),
            weight: 1.0,
            p_value: 10f64.powf(-(r.score as f64) / 10.0),
        })
        .collect();
    reasons.extend(strong.into_iter().map(|s| Reason {
        signal: s.id.into(),
        summary: s.summary.clone(),
        observed: s.observed.clone(),
        baseline: s.baseline.clone(),
        weight: (contrib(s) / total_contrib * 1000.0).round() / 1000.0,
        p_value: s.p,
    }));
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cauchy_is_valid_and_monotone() {
        assert!((cauchy_combine(&[(0.5, 1.0), (0.5, 1.0)]) - 0.5).abs() < 1e-9);
        let one = cauchy_combine(&[(1e-6, 1.0), (0.5, 1.0)]);
        assert!(one > 1e-6 && one < 1e-5, "{one}");
        let two = cauchy_combine(&[(1e-6, 1.0), (1e-6, 1.0)]);
        assert!((two - 1e-6).abs() / 1e-6 < 0.01, "{two}");
        assert!(cauchy_combine(&[(1e-200, 1.0), (0.9, 3.0)]) < 1e-190);
    }

    #[test]
    fn hour_of_week_starts_monday() {
        // 2024-03-04 was a Monday.
        let monday = chrono::NaiveDate::from_ymd_opt(2024, 3, 4)
            .unwrap()
            .and_hms_opt(5, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        assert_eq!(hour_of_week(monday, 0), 5);
        assert_eq!(hour_of_week(monday + 86400 * 6 + 3600 * 18, 0), 6 * 24 + 23);
        assert_eq!(hour_of_week(monday, -6 * 3600), 6 * 24 + 23);
    }
}
