//! The simulator's promises: deterministic bytes, output that decodes without a reject into the
//! counts it reports, and campaigns, confounders and Exchange behaviours really present in the
//! data.

use chrono::{DateTime, Duration, Timelike, Utc};
use mailsentry_events::{Event, EventKind, GroundTruth};
use mailsentry_ingest::{collect_input_files, DecodeOptions, DecodeStats, Decoded, StreamDecoder};
use mailsentry_sim::{simulate, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        days: 14,
        tenants: 3,
        scale: 0.15,
        learning_days: 10,
        ..Default::default()
    }
}

/// One simulation shared by the tests that only read it.
fn shared() -> &'static (tempfile::TempDir, GroundTruth, Vec<Event>, DecodeStats) {
    static RUN: OnceLock<(tempfile::TempDir, GroundTruth, Vec<Event>, DecodeStats)> =
        OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        simulate(&small(42), dir.path()).unwrap();
        let labels: GroundTruth =
            serde_json::from_slice(&std::fs::read(dir.path().join("labels.json")).unwrap())
                .unwrap();
        let (events, stats) = decode_dir(&dir.path().join("logs"));
        (dir, labels, events, stats)
    })
}

fn decode_dir(dir: &Path) -> (Vec<Event>, DecodeStats) {
    let mut events = Vec::new();
    let mut total = DecodeStats::default();
    for path in collect_input_files(&[dir.to_owned()]) {
        let path = path.unwrap();
        let mut stream = StreamDecoder::open(&path, DecodeOptions::default()).unwrap();
        for item in stream.by_ref() {
            match item {
                Decoded::Event(e) => events.push(e),
                Decoded::Reject(r) => panic!("reject in simulated data: {r}"),
            }
        }
        total.merge(stream.stats());
    }
    (events, total)
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_owned(), bytes)
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn ip_of(e: &Event) -> Vec<IpAddr> {
    match &e.kind {
        EventKind::MailboxAccess(m) => m.client.iter().map(|c| c.ip).collect(),
        EventKind::SignIn(s) => s.client.iter().map(|c| c.ip).collect(),
        EventKind::Transport(t) => t.hops.iter().filter_map(|h| h.from_ip).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    simulate(&small(7), a.path()).unwrap();
    simulate(&small(7), b.path()).unwrap();
    simulate(&small(8), c.path()).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert!(fa.len() > 50, "{} files", fa.len());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(
            fb[path] == *bytes,
            "{} differs between two runs of seed 7",
            path.display()
        );
    }
    let same = fa.iter().filter(|(p, b)| fc.get(*p) == Some(b)).count();
    assert!(
        same < fa.len() / 2,
        "seed 8 repeats {same} of {} files",
        fa.len()
    );
}

#[test]
fn gzip_output_decodes_to_the_same_events() {
    let plain = shared();
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        gzip: true,
        ..small(42)
    };
    simulate(&config, dir.path()).unwrap();
    assert!(walk(&dir.path().join("logs"))
        .iter()
        .all(|p| p.extension().is_some_and(|e| e == "gz")));
    let (events, _) = decode_dir(&dir.path().join("logs"));
    assert_eq!(events.len(), plain.2.len());
}

#[test]
fn output_decodes_without_rejects_into_the_reported_counts() {
    let (_, labels, events, stats) = shared();
    assert_eq!(stats.rejected_total(), 0);
    let written: u64 = labels.records.values().sum();
    assert_eq!(
        stats.records, written,
        "decoder records vs simulator's count"
    );
    for format in [
        "management_api",
        "entra_signin",
        "entra_audit",
        "iis_w3c",
        "mbox",
    ] {
        assert!(
            labels.records.get(format).copied().unwrap_or(0) > 0,
            "no {format} records"
        );
    }
    // The only skipped records are the IIS lines of failed (anonymous) requests.
    assert!(stats.skipped.keys().all(|k| *k == "iis_anonymous_request"));
    assert!(!events.is_empty());
}

#[test]
fn every_address_is_in_the_asn_table() {
    let (dir, _, events, _) = shared();
    let table = std::fs::read_to_string(dir.path().join("asn.csv")).unwrap();
    let prefixes: BTreeSet<String> = table
        .lines()
        .map(|l| {
            l.split(',')
                .next()
                .unwrap()
                .rsplit_once('.')
                .unwrap()
                .0
                .to_owned()
        })
        .collect();
    let mut checked = 0;
    for e in events {
        for ip in ip_of(e) {
            let IpAddr::V4(v4) = ip else {
                panic!("unexpected IPv6 {ip}")
            };
            if v4.is_private() {
                continue;
            }
            let o = v4.octets();
            assert!(
                prefixes.contains(&format!("{}.{}.{}", o[0], o[1], o[2])),
                "{ip} is not in asn.csv"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

#[test]
fn every_campaign_is_in_the_data_in_its_window_and_sources() {
    let (_, labels, events, _) = shared();
    assert_eq!(
        labels.campaigns.len(),
        8,
        "all eight scenarios fit in 14 days"
    );
    for c in &labels.campaigns {
        assert!(
            c.start
                >= labels_start(labels) + Duration::days(labels.learning_days as i64)
                    - Duration::hours(14),
            "{} starts inside the learning period",
            c.id
        );
        let ips: BTreeSet<IpAddr> = c.source_ips.iter().map(|s| s.parse().unwrap()).collect();
        let hits: Vec<&Event> = events
            .iter()
            .filter(|e| e.time >= c.start && e.time <= c.end)
            .filter(|e| ip_of(e).iter().any(|ip| ips.contains(ip)))
            .collect();
        let expected: u64 = c.records.values().sum();
        assert!(expected > 0, "{} wrote nothing", c.id);
        assert!(
            hits.len() as u64 >= expected.min(1),
            "{}: no event from {:?} in window",
            c.id,
            c.source_ips
        );
        if c.scenario != "rogue_relay_weak_tls" {
            let tenant_hits = hits
                .iter()
                .filter(|e| e.tenant_id.as_deref() == Some(&c.tenant_id))
                .count();
            assert!(tenant_hits > 0, "{}: no event in its tenant", c.id);
        }
    }
    let rogue = labels
        .campaigns
        .iter()
        .find(|c| c.scenario == "rogue_relay_weak_tls")
        .unwrap();
    let weak = events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Transport(t) => t.hops.iter().any(|h| {
                h.from_ip
                    .is_some_and(|ip| rogue.source_ips.contains(&ip.to_string()))
                    && h.tls_cipher.as_deref() == Some("AES128-SHA")
            }),
            _ => false,
        })
        .count();
    assert_eq!(weak as u64, rogue.records["mbox"]);
}

fn labels_start(labels: &GroundTruth) -> DateTime<Utc> {
    labels.start.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

#[test]
fn credential_campaigns_use_the_keys_they_claim() {
    let (_, labels, events, _) = shared();
    let backup = labels
        .connectors
        .iter()
        .find(|c| c.shape == "backup")
        .unwrap();
    let rotation = backup.credentials[0].until.unwrap();
    let rotated = labels
        .campaigns
        .iter()
        .find(|c| c.scenario == "rotated_key_used")
        .unwrap();
    assert_eq!(
        rotated.key_id.as_deref(),
        Some(backup.credentials[0].key_id.as_str())
    );
    assert!(rotated.start > rotation);
    let old_key_after_rotation: Vec<&Event> = events
        .iter()
        .filter(|e| e.time > rotation)
        .filter(|e| matches!(&e.kind, EventKind::SignIn(s) if s.credential_key_id.as_deref() == Some(&backup.credentials[0].key_id)))
        .collect();
    assert!(!old_key_after_rotation.is_empty());
    assert!(
        old_key_after_rotation.iter().all(|e| ip_of(e)
            .iter()
            .all(|ip| rotated.source_ips.contains(&ip.to_string()))),
        "only the attacker uses the old key after rotation"
    );
    let added = labels
        .campaigns
        .iter()
        .find(|c| c.scenario == "credential_added_then_used")
        .unwrap();
    let key = added.key_id.clone().unwrap();
    let change = events
        .iter()
        .find(
            |e| matches!(&e.kind, EventKind::CredentialChange(c) if c.key_ids_added.contains(&key)),
        )
        .expect("audit record of the added key");
    let first_use = events.iter().filter(|e| matches!(&e.kind, EventKind::SignIn(s) if s.credential_key_id.as_deref() == Some(&key))).map(|e| e.time).min().expect("sign-in with the added key");
    assert!(first_use > change.time);
}

#[test]
fn tokens_in_audit_records_come_from_sign_ins() {
    let (_, _, events, _) = shared();
    let issued: BTreeMap<&str, (&str, DateTime<Utc>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SignIn(s) => s
                .token_id
                .as_deref()
                .map(|t| (t, (s.actor.app_id.as_deref().unwrap_or(""), e.time))),
            _ => None,
        })
        .collect();
    let mut app_reads = 0;
    for e in events {
        if let EventKind::MailboxAccess(m) = &e.kind {
            if m.user_type != Some(5) {
                continue;
            }
            app_reads += 1;
            let token = m.token_id.as_deref().expect("app-only reads carry a token");
            let (app, at) = issued
                .get(token)
                .unwrap_or_else(|| panic!("token {token} has no sign-in"));
            assert!(
                *at <= e.time && e.time - *at < Duration::minutes(70),
                "token used {} after issue",
                e.time - *at
            );
            assert_eq!(Some(*app), m.actor.client_app_id.as_deref());
        }
    }
    assert!(app_reads > 1000);
}

#[test]
fn throttled_mailbox_goes_quiet_for_a_day() {
    let (_, labels, events, _) = shared();
    let q = labels
        .confounders
        .iter()
        .find(|c| c.kind == "throttled_mailbox")
        .unwrap();
    let throttled: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::MailboxAccess(m) if m.throttled))
        .collect();
    assert_eq!(throttled.len(), 1, "one IsThrottled record");
    let t = throttled[0];
    assert!(t.time >= q.start && t.time <= q.end);
    let EventKind::MailboxAccess(m) = &t.kind else {
        unreachable!()
    };
    let later = events.iter().filter(|e| e.time > t.time && e.time < t.time + Duration::hours(24)).filter(|e| {
        matches!(&e.kind, EventKind::MailboxAccess(x) if x.mailbox_upn == m.mailbox_upn && e.tenant_id == t.tenant_id)
    }).count();
    assert_eq!(later, 0, "records of a throttled mailbox within 24 h");
}

#[test]
fn the_nightly_sweep_follows_local_time_across_dst() {
    let (_, labels, events, _) = shared();
    let tenant = labels
        .tenants
        .iter()
        .find(|t| !t.dst_changes.is_empty())
        .expect("a tenant with a DST change");
    let change = tenant.dst_changes[0];
    let backup = labels
        .connectors
        .iter()
        .find(|c| c.shape == "backup")
        .unwrap();
    // Earliest Sync record per UTC day from the backup connector in that tenant.
    let mut first: BTreeMap<chrono::NaiveDate, DateTime<Utc>> = BTreeMap::new();
    for e in events {
        if let EventKind::MailboxAccess(m) = &e.kind {
            if e.tenant_id.as_deref() == Some(&tenant.id)
                && m.actor.app_id.as_deref() == Some(&backup.app_id)
                && m.access_type == Some(mailsentry_events::MailAccessType::Sync)
                && e.time.hour() < 12
                && ip_of(e).iter().all(|ip| {
                    !labels
                        .campaigns
                        .iter()
                        .any(|c| c.source_ips.contains(&ip.to_string()))
                })
            {
                let d = e.time.date_naive();
                let entry = first.entry(d).or_insert(e.time);
                *entry = (*entry).min(e.time);
            }
        }
    }
    let before = first[&(change - Duration::days(2))];
    let after = first[&(change + Duration::days(2))];
    let shift = (before.time().num_seconds_from_midnight() as i64
        - after.time().num_seconds_from_midnight() as i64) as f64
        / 3600.0;
    assert!(
        (shift - 1.0).abs() < 0.5,
        "sweep moved by {shift} h in UTC at the DST change"
    );
}
