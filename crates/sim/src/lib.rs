//! A deterministic simulator of Microsoft 365 tenants and the connectors they trust, writing
//! the real log formats mailsentry reads, with labelled attack campaigns and benign
//! confounders.
//!
//! `simulate(config, dir)` writes, under `dir`:
//! - `logs/m365-audit/<tenant>/<date>.ndjson|.json` — Management Activity API MailItemsAccessed
//!   records (NDJSON, or content-blob arrays for every other tenant), filed by when the audit
//!   record becomes available (20 min to 2 h late, sometimes 12 h), so files overlap in time;
//! - `logs/entra-signins/<tenant>/<date>.json|.ndjson` — ServicePrincipalSignInLogs
//!   (`{"records":[…]}` envelopes, or one record per line), with credential key id and
//!   thumbprint and the token id the audit records carry;
//! - `logs/entra-audit/<tenant>/<date>.ndjson` — AuditLogs credential changes;
//! - `logs/exchange-iis/<tenant>/u_exYYMMDD.log` — IIS W3C logs of on-prem Exchange EWS;
//! - `logs/mail/<tenant>/<date>.mbox` — a sample of inbound mail with `Received:` chains;
//! - `asn.csv`, `country.csv` — IP-to-ASN and IP-to-country tables (ip-location-db layout)
//!   covering every address used;
//! - `labels.json` — the ground truth ([`mailsentry_events::GroundTruth`]).
//!
//! Same seed and parameters, same bytes. Memory stays flat: days are generated in order and
//! written as soon as no later day can add to their files.

pub mod activity;
pub mod address_plan;
pub mod campaigns;
pub mod log_formats;
pub mod seeded;
pub mod traffic;
pub mod world;

use activity::{Activity, Record};
use address_plan::{AddressPlan, Net};
use campaigns::{run_campaign, schedule, throttling_burst, ConfounderKind};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use mailsentry_events::{
    Campaign, Confounder, ConnectorTruth, CredentialTruth, GroundTruth, TenantTruth,
};
use seeded::{guid, Seeded};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use traffic::{RunFacts, TenantDay, ThrottleState};
use world::{build_tenants, dst_changes, ediscovery_connector, Shape, Tenant, Vendors};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed: same seed and parameters, same output bytes.
    pub seed: u64,
    /// Days to simulate.
    pub days: u32,
    /// Number of tenants.
    pub tenants: u32,
    /// Mailboxes per tenant relative to each tenant template (0.25 for a small demo).
    pub scale: f64,
    /// First day (UTC date; tenants' local days start on it).
    pub start: NaiveDate,
    /// Days before the first attack.
    pub learning_days: u32,
    /// Write files gzip-compressed (`.gz`).
    pub gzip: bool,
    /// Continuity monitor poll interval, minutes.
    pub poll_minutes: u32,
    /// Mail arrival rate multiplier.
    pub mail_rate: f64,
    /// Share of inbound messages written to mbox.
    pub mail_sample: f64,
    /// How many times each attack scenario is played (on different tenants and days).
    pub campaign_rounds: usize,
    /// The command line, recorded in labels.
    pub command: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            days: 21,
            tenants: 3,
            scale: 1.0,
            start: NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid date"),
            learning_days: 10,
            gzip: false,
            poll_minutes: 15,
            mail_rate: 1.0,
            mail_sample: 0.03,
            campaign_rounds: 1,
            command: String::new(),
        }
    }
}

/// Errors of a simulation run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a run wrote.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Records by format.
    pub records: BTreeMap<String, u64>,
    /// Files written (logs only).
    pub files: u64,
    /// Bytes written (logs only, after compression).
    pub bytes: u64,
    /// Campaigns placed.
    pub campaigns: usize,
    /// Records suppressed by mailbox throttling.
    pub throttled_records: u64,
}

impl SimReport {
    /// All records.
    pub fn total_records(&self) -> u64 {
        self.records.values().sum()
    }
}

#[derive(Debug, Default, Clone)]
struct CampaignLog {
    ips: BTreeSet<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    records: BTreeMap<String, u64>,
}

/// Files activities as they become final.
struct Output<'a> {
    root: PathBuf,
    gzip: bool,
    seeded: Seeded,
    tenants: &'a [Tenant],
    pending: Vec<(usize, Activity)>,
    report: SimReport,
    campaign_logs: Vec<CampaignLog>,
}

impl Output<'_> {
    fn add(&mut self, tenant: usize, activities: Vec<Activity>) {
        for a in activities {
            if let Some(c) = a.campaign {
                let log = &mut self.campaign_logs[c as usize];
                let ip = match &a.record {
                    Record::MailAccess(m) => Some(m.ip),
                    Record::SignIn(s) => Some(s.ip),
                    Record::CredentialUpdate(u) => Some(u.actor_ip),
                    Record::Message(m) => m.hops.first().map(|h| h.from_ip),
                    Record::Iis(r) => Some(r.client_ip),
                };
                if let Some(ip) = ip {
                    log.ips.insert(ip.to_string());
                }
                log.start = Some(log.start.map_or(a.time, |s| s.min(a.time)));
                log.end = Some(log.end.map_or(a.time, |e| e.max(a.time)));
                *log.records.entry(a.record.format().to_owned()).or_default() += 1;
            }
            self.pending.push((tenant, a));
        }
    }

    /// Writes every file whose date is at most `through` (all when `None`).
    fn flush(&mut self, through: Option<NaiveDate>) -> Result<(), SimError> {
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, a)| through.is_none_or(|d| a.available.date_naive() <= d));
        self.pending = keep;
        let mut files: BTreeMap<(usize, &'static str, NaiveDate), Vec<Activity>> = BTreeMap::new();
        for (t, a) in ready {
            files
                .entry((t, a.record.format(), a.available.date_naive()))
                .or_default()
                .push(a);
        }
        for ((t, format, date), mut acts) in files {
            acts.sort_by_key(|a| a.available);
            self.write_file(t, format, date, &acts)?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        t: usize,
        format: &'static str,
        date: NaiveDate,
        acts: &[Activity],
    ) -> Result<(), SimError> {
        let tenant = &self.tenants[t];
        let day = date.format("%Y-%m-%d");
        let (dir, name) = match format {
            "management_api" if t % 2 == 1 => ("m365-audit", format!("{day}.json")),
            "management_api" => ("m365-audit", format!("{day}.ndjson")),
            "entra_signin" if t.is_multiple_of(2) => ("entra-signins", format!("{day}.json")),
            "entra_signin" => ("entra-signins", format!("{day}.ndjson")),
            "entra_audit" => ("entra-audit", format!("{day}.ndjson")),
            "iis_w3c" => ("exchange-iis", format!("u_ex{}.log", date.format("%y%m%d"))),
            _ => ("mail", format!("{day}.mbox")),
        };
        let folder = self.root.join("logs").join(dir).join(&tenant.name);
        fs::create_dir_all(&folder).map_err(io_err(&folder))?;
        let mut path = folder.join(name);
        if self.gzip {
            path.set_extension(format!(
                "{}.gz",
                path.extension().and_then(|e| e.to_str()).unwrap_or("")
            ));
        }
        let file = File::create(&path).map_err(io_err(&path))?;
        let buffered = BufWriter::with_capacity(1 << 16, file);
        let mut sink: Box<dyn Write> = if self.gzip {
            Box::new(flate2::write::GzEncoder::new(
                buffered,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(buffered)
        };
        let mut ids = self
            .seeded
            .rng(&["record-ids", &t.to_string(), format, &day.to_string()]);
        let blob = format == "management_api" && t % 2 == 1;
        let envelope = format == "entra_signin" && t.is_multiple_of(2);
        let w = &mut sink;
        let result: io::Result<()> = (|| {
            if blob {
                w.write_all(b"[")?;
            }
            if envelope {
                w.write_all(b"{\"records\":[\n")?;
            }
            if format == "iis_w3c" {
                log_formats::iis_header(w, date)?;
            }
            for (i, a) in acts.iter().enumerate() {
                if (blob || envelope) && i > 0 {
                    w.write_all(if blob { b"," } else { b",\n" })?;
                }
                match &a.record {
                    Record::MailAccess(m) => {
                        let id = guid(&mut ids);
                        log_formats::write_ual(w, tenant, a.time, &id, m)?;
                    }
                    Record::SignIn(s) => log_formats::write_signin(w, tenant, a.time, s)?,
                    Record::CredentialUpdate(c) => log_formats::write_audit(w, tenant, a.time, c)?,
                    Record::Iis(r) => log_formats::write_iis(w, a.time, r)?,
                    Record::Message(m) => log_formats::write_mbox(w, tenant, a.time, m)?,
                }
                if !blob
                    && !envelope
                    && matches!(
                        a.record,
                        Record::MailAccess(_) | Record::SignIn(_) | Record::CredentialUpdate(_)
                    )
                {
                    w.write_all(b"\n")?;
                }
            }
            if blob {
                w.write_all(b"]\n")?;
            }
            if envelope {
                w.write_all(b"\n]}\n")?;
            }
            w.flush()
        })();
        result.map_err(io_err(&path))?;
        drop(sink);
        self.report.files += 1;
        self.report.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        *self.report.records.entry(format.to_owned()).or_default() += acts.len() as u64;
        Ok(())
    }
}

/// Runs the simulation into `out` (created if missing).
pub fn simulate(config: &SimConfig, out: &Path) -> Result<SimReport, SimError> {
    if config.days == 0 || config.tenants == 0 {
        return Err(SimError::Invalid(
            "--days and --tenants must be at least 1".into(),
        ));
    }
    if !(config.scale > 0.0 && config.scale <= 100.0) {
        return Err(SimError::Invalid(format!(
            "--scale {} is outside (0, 100]",
            config.scale
        )));
    }
    if config.poll_minutes == 0 {
        return Err(SimError::Invalid(
            "poll interval must be at least one minute".into(),
        ));
    }
    fs::create_dir_all(out).map_err(io_err(out))?;
    let seeded = Seeded::new(config.seed);
    let vendors = Vendors::new(&seeded);
    let n = config.tenants as usize;
    let tenants = build_tenants(&seeded, n, config.scale, &vendors);
    let countries: Vec<&'static str> = tenants.iter().map(|t| t.country).collect();
    let plan = AddressPlan::new(&countries);
    let (campaigns, confounders) = schedule(
        &seeded,
        n,
        config.days,
        config.learning_days,
        config.campaign_rounds,
    );
    let day_start = |d: u32| {
        Utc.from_utc_datetime(
            &(config.start + Duration::days(d as i64))
                .and_hms_opt(0, 0, 0)
                .expect("midnight"),
        )
    };
    let rotation_day = config
        .learning_days
        .saturating_sub(3)
        .max(1)
        .min(config.days);
    let facts = RunFacts {
        rotation: day_start(rotation_day) + Duration::hours(10),
        vendor_migration: confounders
            .iter()
            .find(|c| c.kind == ConfounderKind::VendorNewPrefix)
            .map(|c| day_start(c.day) + Duration::hours(12)),
    };
    let mut output = Output {
        root: out.to_owned(),
        gzip: config.gzip,
        seeded,
        tenants: &tenants,
        pending: Vec::new(),
        report: SimReport::default(),
        campaign_logs: vec![CampaignLog::default(); campaigns.len()],
    };
    let mut throttle: Vec<ThrottleState> = (0..n).map(|_| ThrottleState::default()).collect();
    let mut confounder_times: BTreeMap<usize, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    // Tenant by tenant, day by day: files are per tenant, so only one tenant's last two days
    // are ever held in memory. Every stream of randomness is per tenant and day, so the order
    // does not change the output.
    for tenant in &tenants {
        let t = tenant.index;
        for day in 0..config.days {
            let date = config.start + Duration::days(day as i64);
            let here = |k: ConfounderKind| {
                confounders
                    .iter()
                    .position(|c| c.kind == k && c.tenant == Some(t))
                    .filter(|&i| confounders[i].day <= day)
            };
            let mut connectors = tenant.connectors.clone();
            if let Some(i) = here(ConfounderKind::NewConnector) {
                connectors.push(ediscovery_connector(&seeded, tenant, &vendors));
                if confounders[i].day == day {
                    confounder_times
                        .insert(i, (tenant.local_to_utc(date, 9.0), day_start(config.days)));
                }
            }
            let mailboxes = match here(ConfounderKind::TenantGrowth) {
                Some(i) => {
                    if confounders[i].day == day {
                        confounder_times
                            .insert(i, (tenant.local_to_utc(date, 0.0), day_start(config.days)));
                    }
                    tenant.mailboxes.len()
                }
                None => tenant.initial_mailboxes,
            };
            let mut td = TenantDay::new(
                &seeded, tenant, connectors, date, day, &plan, config, &facts, mailboxes,
            );
            if let Some(i) =
                here(ConfounderKind::BackfillAfterOutage).filter(|&i| confounders[i].day == day)
            {
                td.backup_outage = Some((4.0, 14.0));
                confounder_times.insert(i, (td.at(4.0), td.at(16.0)));
            }
            td.normal_traffic();
            if let Some(i) =
                here(ConfounderKind::ThrottledMailbox).filter(|&i| confounders[i].day == day)
            {
                throttling_burst(&mut td);
                confounder_times.insert(i, (td.at(9.5), td.at(9.5) + Duration::hours(27)));
            }
            for c in campaigns
                .iter()
                .filter(|c| c.tenant == t && c.active_on(day))
            {
                run_campaign(&mut td, c);
            }
            td.apply_throttling(&mut throttle[t]);
            let acts = std::mem::take(&mut td.out);
            output.add(t, acts);
            // The tenant's later local days start no earlier than 14 h before their UTC
            // midnight, and records are never available before they happen: every file of
            // this tenant dated before today is final.
            output.flush(Some(date - Duration::days(1)))?;
        }
        output.flush(None)?;
    }
    output.report.campaigns = campaigns.len();
    output.report.throttled_records = throttle.iter().map(|s| s.suppressed).sum();

    // Tables of every address used.
    let asn_path = out.join("asn.csv");
    fs::write(&asn_path, plan.asn_csv()).map_err(io_err(&asn_path))?;
    let country_path = out.join("country.csv");
    fs::write(&country_path, plan.country_csv()).map_err(io_err(&country_path))?;

    let end = day_start(config.days);
    let truth = ground_truth(
        config,
        &tenants,
        &vendors,
        &plan,
        &facts,
        &campaigns,
        &output.campaign_logs,
        &confounders,
        &confounder_times,
        end,
        &output.report,
    );
    let labels_path = out.join("labels.json");
    let json = serde_json::to_string_pretty(&truth).expect("labels serialize");
    fs::write(&labels_path, json + "\n").map_err(io_err(&labels_path))?;
    Ok(output.report)
}

#[allow(clippy::too_many_arguments)]
fn ground_truth(
    config: &SimConfig,
    tenants: &[Tenant],
    vendors: &Vendors,
    plan: &AddressPlan,
    facts: &RunFacts,
    campaigns: &[campaigns::CampaignPlan],
    logs: &[CampaignLog],
    confounders: &[campaigns::ConfounderPlan],
    confounder_times: &BTreeMap<usize, (DateTime<Utc>, DateTime<Utc>)>,
    end: DateTime<Utc>,
    report: &SimReport,
) -> GroundTruth {
    let start = Utc.from_utc_datetime(&config.start.and_hms_opt(0, 0, 0).expect("midnight"));
    let tenant_truth = tenants
        .iter()
        .map(|t| TenantTruth {
            id: t.id.clone(),
            name: t.name.clone(),
            domain: t.domain.clone(),
            time_zone: t.tz.name().to_owned(),
            country: t.country.to_owned(),
            mailboxes: t.initial_mailboxes as u32,
            on_prem: t.on_prem,
            dst_changes: dst_changes(t, config.start, config.days),
        })
        .collect();
    let mut connectors = Vec::new();
    for t in tenants {
        let mut list = t.connectors.clone();
        if confounders
            .iter()
            .any(|c| c.kind == ConfounderKind::NewConnector && c.tenant == Some(t.index))
        {
            list.push(ediscovery_connector(&Seeded::new(config.seed), t, vendors));
        }
        for c in list {
            let net = plan.get(c.net);
            let mut prefixes: Vec<String> = c.prefixes.iter().map(|&p| net.cidr(p)).collect();
            if c.shape == Shape::Backup && facts.vendor_migration.is_some() {
                prefixes.push(net.cidr(3));
            }
            let credentials = match c.shape {
                Shape::OnPremEws => Vec::new(),
                Shape::Backup => vec![
                    CredentialTruth {
                        key_id: c.credentials[0].key_id.clone(),
                        thumbprint: c.credentials[0].thumbprint.clone(),
                        from: start,
                        until: Some(facts.rotation),
                    },
                    CredentialTruth {
                        key_id: c.credentials[1].key_id.clone(),
                        thumbprint: c.credentials[1].thumbprint.clone(),
                        from: facts.rotation,
                        until: None,
                    },
                ],
                _ => vec![CredentialTruth {
                    key_id: c.credentials[0].key_id.clone(),
                    thumbprint: c.credentials[0].thumbprint.clone(),
                    from: start,
                    until: None,
                }],
            };
            connectors.push(ConnectorTruth {
                tenant_id: t.id.clone(),
                shape: c.shape.name().to_owned(),
                name: c.name.clone(),
                app_id: c.app_id.clone(),
                service_principal_id: (!c.sp_id.is_empty()).then(|| c.sp_id.clone()),
                asn: Some(net.asn),
                prefixes,
                credentials,
            });
        }
        let gw = plan.get(Net::Gateway);
        connectors.push(ConnectorTruth {
            tenant_id: t.id.clone(),
            shape: "gateway".into(),
            name: "Mail Gateway".into(),
            app_id: "mail-gateway".into(),
            service_principal_id: None,
            asn: Some(gw.asn),
            prefixes: (0..gw.prefixes.len()).map(|p| gw.cidr(p)).collect(),
            credentials: Vec::new(),
        });
    }
    let campaign_truth = campaigns
        .iter()
        .zip(logs)
        .filter(|(_, log)| log.start.is_some())
        .map(|(c, log)| {
            let tenant = &tenants[c.tenant];
            let backup = || vendors.backup_app.clone();
            let archive = || {
                tenant
                    .connectors
                    .iter()
                    .find(|x| x.shape == Shape::ArchiveGraph)
                    .map(|x| x.app_id.clone())
                    .unwrap_or_default()
            };
            use campaigns::Scenario::*;
            let rotated_from = log.start.unwrap_or(start) >= facts.rotation;
            let (app_id, key_id) = match c.scenario {
                CredentialAddedThenUsed => {
                    (archive(), c.added_key.as_ref().map(|k| k.key_id.clone()))
                }
                VendorIpAbnormalHour => (
                    vendors.continuity_app.clone(),
                    Some(vendors.continuity_key.key_id.clone()),
                ),
                RotatedKey => (backup(), Some(vendors.backup_keys[0].key_id.clone())),
                RogueRelay => ("mail-gateway".into(), None),
                _ => (
                    backup(),
                    Some(
                        vendors.backup_keys[usize::from(rotated_from)]
                            .key_id
                            .clone(),
                    ),
                ),
            };
            Campaign {
                id: format!("c{:02}-{}", c.index + 1, c.scenario.name()),
                scenario: c.scenario.name().to_owned(),
                description: c.scenario.description().to_owned(),
                tenant_id: tenant.id.clone(),
                app_id,
                key_id,
                source_ips: log.ips.iter().cloned().collect(),
                start: log.start.unwrap_or(start),
                end: log.end.unwrap_or(start),
                difficulty: c.scenario.difficulty(),
                expected: "alert".into(),
                records: log.records.clone(),
            }
        })
        .collect();
    let mut confounder_truth: Vec<Confounder> = Vec::new();
    for (i, c) in confounders.iter().enumerate() {
        let tenant_ids: Vec<String> = match c.tenant {
            Some(t) => vec![tenants[t].id.clone()],
            None => tenants.iter().map(|t| t.id.clone()).collect(),
        };
        let (from, to, app_id, ips, description) = match c.kind {
            ConfounderKind::VendorNewPrefix => {
                let net = plan.get(Net::Aws);
                let backup = &tenants[0].connectors[0];
                let Some(m) = facts.vendor_migration else {
                    continue;
                };
                (
                    m,
                    end,
                    Some(vendors.backup_app.clone()),
                    backup.hosts.iter().map(|&h| net.ip(3, h).to_string()).collect(),
                    "the backup vendor moves all its workers to a new /24 in its own cloud ASN (AS16509)".to_owned(),
                )
            }
            ConfounderKind::BackfillAfterOutage => {
                let Some(&(f, t)) = confounder_times.get(&i) else {
                    continue;
                };
                (f, t, Some(vendors.backup_app.clone()), Vec::new(),
                 "the backup connector is down from 04:00 to 14:00 local time, then its first run reads everything it missed".to_owned())
            }
            ConfounderKind::NewConnector => {
                let Some(&(f, t)) = confounder_times.get(&i) else {
                    continue;
                };
                let net = plan.get(Net::Ediscovery);
                (f, t, Some(vendors.ediscovery_app.clone()),
                 [90u8, 91].iter().map(|&h| net.ip(0, h).to_string()).collect(),
                 "an eDiscovery connector is onboarded: new app, new certificate, new ASN, and a first collection of a third of the mailboxes".to_owned())
            }
            ConfounderKind::ThrottledMailbox => {
                let Some(&(f, t)) = confounder_times.get(&i) else {
                    continue;
                };
                (f, t, None, Vec::new(),
                 "a user's Outlook rebuilds its cache of a large mailbox: over 1,000 MailItemsAccessed records in two hours throttle the mailbox's auditing for 24 h".to_owned())
            }
            ConfounderKind::TenantGrowth => {
                let Some(&(f, t)) = confounder_times.get(&i) else {
                    continue;
                };
                (f, t, None, Vec::new(),
                 "the tenant adds a quarter more mailboxes; connectors start reading mailboxes they never read".to_owned())
            }
        };
        confounder_truth.push(Confounder {
            id: String::new(),
            kind: c.kind.name().to_owned(),
            description,
            tenant_ids,
            app_id,
            source_ips: ips,
            start: from,
            end: to,
            expected: "quiet".into(),
        });
    }
    for t in tenants {
        for date in dst_changes(t, config.start, config.days) {
            let from = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"));
            confounder_truth.push(Confounder {
                id: String::new(),
                kind: "dst".into(),
                description: format!("{} changes its clocks (daylight saving time): the connectors' local schedules move by an hour in UTC", t.tz.name()),
                tenant_ids: vec![t.id.clone()],
                app_id: None,
                source_ips: Vec::new(),
                start: from,
                end: from + Duration::days(2),
                expected: "quiet".into(),
            });
        }
    }
    for (i, c) in confounder_truth.iter_mut().enumerate() {
        c.id = format!("q{:02}-{}", i + 1, c.kind);
    }
    GroundTruth {
        version: 1,
        command: config.command.clone(),
        seed: config.seed,
        start: config.start,
        days: config.days,
        learning_days: config.learning_days,
        tenants: tenant_truth,
        connectors,
        campaigns: campaign_truth,
        confounders: confounder_truth,
        records: report.records.clone(),
    }
}
