//! Memory of the detector's state: bytes per open session (1 million sessions held open at
//! once) and per learned connector baseline, each measured in a fresh child process as the
//! growth of its resident set (`VmRSS`) over an empty detector.
//!
//! `cargo bench -p mailsentry-detect --bench detector_memory`; results in benches/RESULTS.md.
//! `MAILSENTRY_MEM_SESSIONS` (1,000,000) and `MAILSENTRY_MEM_CONNECTORS` (20,000) set the sizes.

use chrono::{Duration, TimeZone, Utc};
use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_events::{
    ClientAddress, ConnectorIdentity, Event, EventKind, MailAccessType, MailboxAccess, Origin,
    SourceFormat,
};
use std::process::Command;
use std::sync::Arc;

#[path = "shipped_allocator.rs"]
mod shipped_allocator;

const CHILD_ENV: &str = "MAILSENTRY_DETECTOR_MEM_CHILD";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn access(
    tenant: &str,
    app: &str,
    ip: std::net::IpAddr,
    t: chrono::DateTime<Utc>,
    mailbox: &str,
) -> Event {
    Event {
        id: format!("{app}-{ip}-{}", t.timestamp()),
        time: t,
        tenant_id: Some(tenant.into()),
        origin: Origin {
            format: SourceFormat::ManagementApi,
            file: Arc::from("bench"),
            line: 1,
            offset: 0,
            record_id: None,
        },
        kind: EventKind::MailboxAccess(MailboxAccess {
            operation: "MailItemsAccessed".into(),
            actor: ConnectorIdentity {
                app_id: Some(app.into()),
                client_app_id: Some(app.into()),
                ..Default::default()
            },
            user_type: Some(5),
            client: Some(ClientAddress { ip, port: None }),
            access_type: Some(MailAccessType::Bind),
            operation_count: 3,
            mailbox_upn: Some(mailbox.into()),
            client_info: Some("Client=WebServices;Vendor/1.0;".into()),
            ..Default::default()
        }),
    }
}

fn ip(i: u64) -> std::net::IpAddr {
    std::net::Ipv4Addr::from(0x0b00_0000u32 + i as u32).into()
}

fn child(what: &str, n: u64) {
    let t0 = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let config = DetectConfig {
        max_open_sessions: 2_000_000,
        ..Default::default()
    };
    let mut d = Detector::new(config, Arc::new(Enrichment::none()));
    let before = rss_kib();
    match what {
        "sessions" => {
            // n sources of one connector, all active within the same minute: n open sessions.
            for i in 0..n {
                d.process(&access(
                    "tenant",
                    "app",
                    ip(i),
                    t0 + Duration::milliseconds(i as i64 % 60_000),
                    "user@x",
                ));
            }
            assert_eq!(d.open_sessions() as u64, n);
        }
        _ => {
            // n connectors, each with a baseline learned from 24 hourly sessions from 3 sources
            // reading 20 mailboxes; then every session is closed.
            for c in 0..n {
                let app = format!("app-{c}");
                for h in 0..24 {
                    let t = t0 + Duration::hours(h);
                    for m in 0..20 {
                        let mailbox = format!("user{m}@tenant{}", c % 100);
                        d.process(&access(
                            &format!("tenant{}", c % 100),
                            &app,
                            ip(c * 3 + (h as u64 % 3)),
                            t + Duration::seconds(m),
                            &mailbox,
                        ));
                    }
                }
            }
            d.finish();
            assert_eq!(d.connector_count() as u64, n);
        }
    }
    let after = rss_kib();
    println!("{}", (after.saturating_sub(before)) * 1024 / n);
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (what, n) = spec.split_once(':').expect("what:n");
        child(what, n.parse().expect("count"));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("detector_memory: bench");
        return;
    }
    let sessions: u64 = std::env::var("MAILSENTRY_MEM_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let connectors: u64 = std::env::var("MAILSENTRY_MEM_CONNECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let exe = std::env::current_exe().expect("own path");
    for (what, n) in [("sessions", sessions), ("connectors", connectors)] {
        let out = Command::new(&exe)
            .env(CHILD_ENV, format!("{what}:{n}"))
            .output()
            .expect("child");
        assert!(out.status.success(), "child failed: {out:?}");
        let per: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("bytes");
        println!(
            "{what}: {n} -> {per} bytes each, {:.0} MiB in all",
            (per * n) as f64 / (1 << 20) as f64
        );
    }
}
