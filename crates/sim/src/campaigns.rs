//! Attack campaigns and benign confounders: when and where each happens, and the records it
//! adds to a tenant-day.

use crate::activity::CredentialUpdate;
use crate::activity::{AccessKind, Hop, Item, MailAccess, Message, Record};
use crate::address_plan::Net;
use crate::seeded::{guid, hex_upper, Seeded};
use crate::traffic::{TenantDay, Worker};
use crate::world::{Connector, Credential, Shape};
use chrono::Duration;
use mailsentry_events::Difficulty;
use rand::Rng;
use std::sync::Arc;

/// The attack scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Stolen certificate used from a hosting ASN for bulk reads at night.
    HostingBulkNight,
    /// Stolen certificate used for a few executive mailboxes from a residential ISP in the
    /// tenant's country during office hours.
    ResidentialExecutives,
    /// The same key used from the vendor's own cloud provider, an unseen prefix, concurrently
    /// with the real workers.
    VendorCloudConcurrent,
    /// A rotated-out key used after the rotation.
    RotatedKey,
    /// A credential added to the connector, then used from a new source.
    CredentialAddedThenUsed,
    /// Reads from a known vendor IP at an abnormal hour and volume.
    VendorIpAbnormalHour,
    /// Low-and-slow reads over days.
    LowAndSlow,
    /// Mail relayed through a hop that is not the gateway, with weak TLS.
    RogueRelay,
}

impl Scenario {
    /// Every scenario, in campaign order.
    pub const ALL: [Scenario; 8] = [
        Scenario::HostingBulkNight,
        Scenario::ResidentialExecutives,
        Scenario::VendorCloudConcurrent,
        Scenario::RotatedKey,
        Scenario::CredentialAddedThenUsed,
        Scenario::VendorIpAbnormalHour,
        Scenario::LowAndSlow,
        Scenario::RogueRelay,
    ];

    /// Label name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HostingBulkNight => "hosting_bulk_night",
            Scenario::ResidentialExecutives => "residential_executives_office_hours",
            Scenario::VendorCloudConcurrent => "vendor_cloud_unseen_prefix_concurrent",
            Scenario::RotatedKey => "rotated_key_used",
            Scenario::CredentialAddedThenUsed => "credential_added_then_used",
            Scenario::VendorIpAbnormalHour => "vendor_ip_abnormal_hour_volume",
            Scenario::LowAndSlow => "low_and_slow",
            Scenario::RogueRelay => "rogue_relay_weak_tls",
        }
    }

    /// Intended difficulty.
    pub fn difficulty(self) -> Difficulty {
        match self {
            Scenario::HostingBulkNight => Difficulty::Easy,
            Scenario::RotatedKey | Scenario::CredentialAddedThenUsed | Scenario::RogueRelay => {
                Difficulty::Medium
            }
            _ => Difficulty::Hard,
        }
    }

    /// What happens, in words.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::HostingBulkNight => "the backup connector's current certificate used from a hosting provider (DigitalOcean) between 02:00 and 04:00 local time to sync and bulk-read most mailboxes",
            Scenario::ResidentialExecutives => "the backup connector's certificate used from a residential ISP in the tenant's own country during office hours to read a few executive mailboxes, a little every hour",
            Scenario::VendorCloudConcurrent => "the backup connector's certificate used from an AWS /24 the vendor never used, during the vendor's own nightly sweep, reading part of the mailboxes",
            Scenario::RotatedKey => "the backup connector's previous certificate, replaced in the planned rotation, used from an OVH VPS in the evening",
            Scenario::CredentialAddedThenUsed => "a certificate added to the archive connector's application by an admin account signing in from abroad, then used from Hetzner to read executive mailboxes through Graph",
            Scenario::VendorIpAbnormalHour => "the continuity monitor's own worker address reading most mailboxes in bulk at 03:00 local time instead of polling its two probe mailboxes",
            Scenario::LowAndSlow => "the backup connector's certificate used from a small VPS host a few times a day for four days, reading a handful of items in two executive mailboxes",
            Scenario::RogueRelay => "inbound mail delivered through a relay that is not the mail gateway, over TLS 1.0 with a non-forward-secret cipher, failing DMARC",
        }
    }

    /// Days the campaign lasts.
    pub fn span_days(self) -> u32 {
        match self {
            Scenario::LowAndSlow => 4,
            _ => 1,
        }
    }
}

/// A campaign placed in the run.
#[derive(Debug, Clone)]
pub struct CampaignPlan {
    /// Index in the run.
    pub index: u16,
    /// Scenario.
    pub scenario: Scenario,
    /// Tenant index.
    pub tenant: usize,
    /// First local day (run day index).
    pub day: u32,
    /// The credential added by a credential-added campaign.
    pub added_key: Option<Credential>,
}

impl CampaignPlan {
    /// Is the campaign active on run day `day`?
    pub fn active_on(&self, day: u32) -> bool {
        day >= self.day && day < self.day + self.scenario.span_days()
    }
}

/// Confounder kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfounderKind {
    /// The backup vendor adds a /24 in its ASN and moves its workers there.
    VendorNewPrefix,
    /// The backup connector is down for ten hours, then catches up.
    BackfillAfterOutage,
    /// A new connector (eDiscovery) is onboarded.
    NewConnector,
    /// A mailbox hits the MailItemsAccessed throttle.
    ThrottledMailbox,
    /// The tenant grows by a quarter more mailboxes.
    TenantGrowth,
}

impl ConfounderKind {
    /// Label name.
    pub fn name(self) -> &'static str {
        match self {
            ConfounderKind::VendorNewPrefix => "vendor_new_prefix",
            ConfounderKind::BackfillAfterOutage => "backfill_after_outage",
            ConfounderKind::NewConnector => "new_connector",
            ConfounderKind::ThrottledMailbox => "throttled_mailbox",
            ConfounderKind::TenantGrowth => "tenant_growth",
        }
    }
}

/// A confounder placed in the run (the vendor move is run-wide: `tenant` is `None`).
#[derive(Debug, Clone)]
pub struct ConfounderPlan {
    /// Kind.
    pub kind: ConfounderKind,
    /// Tenant index, or every tenant.
    pub tenant: Option<usize>,
    /// Run day.
    pub day: u32,
}

/// Places campaigns (every scenario `rounds` times, each round on other tenants and days)
/// and confounders. Attacks start after `learning_days`; with fewer days after learning than
/// campaigns, several share a day. A run too short for any attack has none.
pub fn schedule(
    seeded: &Seeded,
    tenants: usize,
    days: u32,
    learning_days: u32,
    rounds: usize,
) -> (Vec<CampaignPlan>, Vec<ConfounderPlan>) {
    if days <= learning_days || tenants == 0 {
        return (Vec::new(), Vec::new());
    }
    let window = days - learning_days;
    let mut rng = seeded.rng(&["schedule"]);
    let offset = rng.random_range(0..window);
    let mut campaigns = Vec::new();
    for round in 0..rounds.max(1) {
        for (i, &scenario) in Scenario::ALL.iter().enumerate() {
            let span = scenario.span_days().min(window);
            let latest = window - span;
            let r = round as u32;
            let day = learning_days + (offset + i as u32 * 3 + r * 5) % (latest + 1);
            let added_key = (scenario == Scenario::CredentialAddedThenUsed).then(|| {
                let round_tag = round.to_string();
                let tags: Vec<&str> = if round == 0 {
                    vec!["added-key"]
                } else {
                    vec!["added-key", &round_tag]
                };
                let mut rng = seeded.rng(&tags);
                Credential {
                    key_id: guid(&mut rng),
                    thumbprint: hex_upper(&mut rng, 20),
                    display_name: "CN=archive-sync-backup".into(),
                }
            });
            campaigns.push(CampaignPlan {
                index: (round * Scenario::ALL.len() + i) as u16,
                scenario,
                tenant: (i + round * 3) % tenants,
                day,
                added_key,
            });
        }
    }
    let at = |k: u32| learning_days + (offset + 1 + k * 2) % window;
    let confounders = vec![
        ConfounderPlan {
            kind: ConfounderKind::VendorNewPrefix,
            tenant: None,
            day: at(0),
        },
        ConfounderPlan {
            kind: ConfounderKind::BackfillAfterOutage,
            tenant: Some(1 % tenants),
            day: at(1),
        },
        ConfounderPlan {
            kind: ConfounderKind::NewConnector,
            tenant: Some(2 % tenants),
            day: at(2),
        },
        ConfounderPlan {
            kind: ConfounderKind::ThrottledMailbox,
            tenant: Some(0),
            day: at(3),
        },
        ConfounderPlan {
            kind: ConfounderKind::TenantGrowth,
            tenant: Some(tenants.saturating_sub(1)),
            day: at(4),
        },
    ];
    (campaigns, confounders)
}

fn connector_of(day: &TenantDay<'_>, shape: Shape) -> Connector {
    day.connectors
        .iter()
        .find(|c| c.shape == shape)
        .cloned()
        .expect("every tenant has the connector shapes campaigns use")
}

/// Old items a thief reads (not today's arrivals).
fn old_items(day: &mut TenantDay<'_>, mailbox: usize, n: usize) -> Vec<Item> {
    (0..n)
        .map(|k| Item {
            message_id: Arc::from(format!(
                "<{:012x}.{mailbox}.{k}@{}>",
                day.rng.random::<u64>() & 0xffff_ffff_ffff,
                day.tenant.domain
            )),
            size: day.rng.random_range(4_000..400_000),
        })
        .collect()
}

/// Reads `items` items of `mailbox` as Bind records of at most 50 items each (Exchange
/// aggregates a mailbox's Binds per two minutes), starting at `t`. The reader works on
/// several mailboxes at once: the returned time, when the next mailbox starts, is seconds
/// later, not after this mailbox is done.
#[allow(clippy::too_many_arguments)]
fn bulk_read(
    day: &mut TenantDay<'_>,
    connector: &Connector,
    worker: &mut Worker,
    t: chrono::DateTime<chrono::Utc>,
    mailbox: usize,
    items: usize,
    key: &Credential,
    sync_first: bool,
) -> chrono::DateTime<chrono::Utc> {
    let mut at = t;
    if sync_first {
        let folders = vec![("\\Inbox", Vec::new()), ("\\Sent Items", Vec::new())];
        day.app_access(
            connector,
            worker,
            at,
            mailbox,
            AccessKind::Sync,
            folders,
            key,
        );
        at += Duration::seconds(day.rng.random_range(5..20));
    }
    let mut left = items;
    while left > 0 {
        let n = left.min(50);
        left -= n;
        let batch = old_items(day, mailbox, n);
        let folder = if day.rng.random_bool(0.8) {
            "\\Inbox"
        } else {
            "\\Archive"
        };
        day.app_access(
            connector,
            worker,
            at,
            mailbox,
            AccessKind::Bind,
            vec![(folder, batch)],
            key,
        );
        at += Duration::seconds(day.rng.random_range(100..130));
    }
    t + Duration::milliseconds(day.rng.random_range(4_000..25_000))
}

/// A thief's small read: a few old Inbox items of one mailbox with the connector's current key.
fn read_few(
    day: &mut TenantDay<'_>,
    connector: &Connector,
    worker: &mut Worker,
    t: chrono::DateTime<chrono::Utc>,
    mailbox: usize,
    items: std::ops::Range<usize>,
) {
    let key = day.credential_at(connector, t).clone();
    let n = day.rng.random_range(items);
    let batch = old_items(day, mailbox, n);
    let folders = vec![("\\Inbox", batch)];
    day.app_access(
        connector,
        worker,
        t,
        mailbox,
        AccessKind::Bind,
        folders,
        &key,
    );
}

/// Adds a campaign's records for the day.
pub fn run_campaign(day: &mut TenantDay<'_>, plan: &CampaignPlan) {
    day.campaign = Some(plan.index);
    let n_mailboxes = day.mailboxes;
    match plan.scenario {
        Scenario::HostingBulkNight => {
            let c = connector_of(day, Shape::Backup);
            let ip = day
                .plan
                .get(Net::DigitalOcean)
                .ip(0, day.rng.random_range(20..200));
            let mut w = Worker::new(ip);
            let mut t = day.at_random(2.0, 0.4);
            let key = day.credential_at(&c, t).clone();
            let targets = (n_mailboxes * 7 / 10).max(3);
            for m in 0..targets {
                let items = day.rng.random_range(40..160);
                t = bulk_read(day, &c, &mut w, t, m, items, &key, true);
            }
        }
        Scenario::ResidentialExecutives => {
            let c = connector_of(day, Shape::Backup);
            let isp = day.plan.residential(day.tenant.country).clone();
            let mut w = Worker::new(isp.ip(0, day.rng.random_range(2..250)));
            for hour in 10..16 {
                for exec in 0..3usize.min(n_mailboxes) {
                    let t = day.at_random(hour as f64, 0.8);
                    read_few(day, &c, &mut w, t, exec, 4..15);
                }
            }
        }
        Scenario::VendorCloudConcurrent => {
            let c = connector_of(day, Shape::Backup);
            let ip = day.plan.get(Net::Aws).ip(4, day.rng.random_range(20..200));
            let mut w = Worker::new(ip);
            // Inside the vendor's own sweep, a minute or two after it starts.
            let sweep = day.backup_sweep_start.unwrap_or_else(|| day.at(1.1));
            let mut t = sweep + Duration::seconds(day.rng.random_range(30..150));
            let key = day.credential_at(&c, t).clone();
            let targets = (n_mailboxes * 4 / 10).max(3);
            for k in 0..targets {
                let m = (k * 7 + 3) % n_mailboxes;
                let items = day.rng.random_range(10..60);
                t = bulk_read(day, &c, &mut w, t, m, items, &key, true);
            }
        }
        Scenario::RotatedKey => {
            let c = connector_of(day, Shape::Backup);
            let ip = day.plan.get(Net::Ovh).ip(0, day.rng.random_range(20..200));
            let mut w = Worker::new(ip);
            let old_key = c.credentials[0].clone();
            let mut t = day.at_random(21.0, 1.0);
            for k in 0..10usize.min(n_mailboxes) {
                let m = (k * 5) % n_mailboxes;
                let items = day.rng.random_range(20..80);
                t = bulk_read(day, &c, &mut w, t, m, items, &old_key, false);
            }
        }
        Scenario::CredentialAddedThenUsed => {
            let c = connector_of(day, Shape::ArchiveGraph);
            let added = plan.added_key.clone().expect("scheduled with a key");
            let admin_ip = day
                .plan
                .foreign_residential(day.tenant.country)
                .ip(1, day.rng.random_range(2..250));
            let t_add = day.at_random(15.0, 0.5);
            let current = &c.credentials[0];
            let old_keys = vec![(
                Arc::from(current.key_id.as_str()),
                Arc::from(current.display_name.as_str()),
            )];
            let mut new_keys = old_keys.clone();
            new_keys.push((
                Arc::from(added.key_id.as_str()),
                Arc::from(added.display_name.as_str()),
            ));
            let id = format!("Directory_{}", guid(&mut day.rng));
            day.push(
                t_add,
                Record::CredentialUpdate(CredentialUpdate {
                    app_name: Arc::from(c.name.as_str()),
                    app_id: Arc::from(c.app_id.as_str()),
                    old_keys,
                    new_keys,
                    actor: format!("it.admin@{}", day.tenant.domain),
                    actor_ip: admin_ip,
                    id,
                }),
            );
            let ip = day
                .plan
                .get(Net::Hetzner)
                .ip(0, day.rng.random_range(20..200));
            let mut w = Worker::new(ip);
            let mut t = t_add + Duration::minutes(day.rng.random_range(60..150));
            for m in 0..8usize.min(n_mailboxes) {
                let items = day.rng.random_range(10..50);
                t = bulk_read(day, &c, &mut w, t, m, items, &added, false);
            }
        }
        Scenario::VendorIpAbnormalHour => {
            let c = connector_of(day, Shape::Continuity);
            let net = day.plan.get(c.net).clone();
            let mut w = Worker::new(net.ip(c.prefixes[0], c.hosts[0]));
            let key = c.credentials[0].clone();
            let mut t = day.at_random(3.0, 0.3);
            let targets = (n_mailboxes * 6 / 10).max(3);
            for m in 0..targets {
                let items = day.rng.random_range(20..100);
                t = bulk_read(day, &c, &mut w, t, m, items, &key, false);
            }
        }
        Scenario::LowAndSlow => {
            let c = connector_of(day, Shape::Backup);
            let ip = day.plan.get(Net::SmallVps).ip(0, 77);
            let mut w = Worker::new(ip);
            let reads = day.rng.random_range(2..=4);
            for _ in 0..reads {
                let t = day.at_random(0.0, 23.0);
                let exec = day.rng.random_range(0..2usize.min(n_mailboxes));
                read_few(day, &c, &mut w, t, exec, 3..9);
            }
        }
        Scenario::RogueRelay => {
            let relay_ip = day
                .plan
                .get(Net::DigitalOcean)
                .ip(1, day.rng.random_range(20..200));
            let sender_ip = day
                .plan
                .get(Net::Senders)
                .ip(2, day.rng.random_range(1..255));
            let count = day.rng.random_range(8..16);
            for k in 0..count {
                let t = day.at_random(8.0, 9.0);
                let to = day.rng.random_range(0..n_mailboxes);
                let message_id: Arc<str> = Arc::from(format!(
                    "<{:016x}.{k}@invoices.example.com>",
                    day.rng.random::<u64>()
                ));
                let hops = vec![
                    Hop {
                        from_host: format!("relay{}.mailer.example.com", relay_ip.octets()[3]),
                        from_ip: relay_ip,
                        by_host: format!("mail.{}", day.tenant.domain),
                        tls: Some(("TLSv1", "AES128-SHA")),
                        time: t,
                    },
                    Hop {
                        from_host: "smtp.invoices.example.com".into(),
                        from_ip: sender_ip,
                        by_host: format!("relay{}.mailer.example.com", relay_ip.octets()[3]),
                        tls: None,
                        time: t - Duration::seconds(day.rng.random_range(2..30)),
                    },
                ];
                day.push(
                    t,
                    Record::Message(Message {
                        from: "billing@invoices.example.com".into(),
                        to,
                        subject: "Overdue invoice".into(),
                        message_id,
                        hops,
                        auth: ("softfail", "none", "fail"),
                        sender_domain: "invoices.example.com".into(),
                    }),
                );
            }
        }
    }
    day.campaign = None;
}

/// The throttled-mailbox confounder: a user's Outlook re-syncs a large shared mailbox
/// (cached mode rebuild), producing more than 1,000 records in two hours.
pub fn throttling_burst(day: &mut TenantDay<'_>) {
    let m = 5.min(day.mailboxes - 1);
    let office = day.plan.office(day.tenant.index).clone();
    let upn: Arc<str> = Arc::from(day.tenant.mailboxes[m].upn.as_str());
    let session: Arc<str> = Arc::from(guid(&mut day.rng));
    let mut t = day.at(9.5);
    for _ in 0..1100 {
        t += Duration::seconds(day.rng.random_range(3..9));
        let n = day.rng.random_range(1..4);
        let items = old_items(day, m, n);
        day.push(
            t,
            Record::MailAccess(MailAccess {
                app_id: None,
                client_app_id: None,
                user_id: upn.clone(),
                user_type: 0,
                ip: office.ip(0, 10 + (m % 200) as u8),
                port: None,
                client_info: Arc::from("Client=MSExchangeRPC;Outlook/16.0.17328;"),
                mailbox: m,
                kind: AccessKind::Bind,
                count: n as u32,
                folders: vec![("\\Inbox", items)],
                token: None,
                session_id: session.clone(),
                throttled: false,
            }),
        );
    }
}
