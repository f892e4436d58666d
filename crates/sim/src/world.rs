//! The simulated world: tenants with their mailboxes and time zones, and the connectors each
//! tenant trusts. Everything here is fixed for a run and derived from the seed.

use crate::address_plan::Net;
use crate::seeded::{guid, hex_upper, Seeded};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use mailsentry_events::MICROSOFT_GRAPH_APP_ID;
use rand::Rng;

/// A tenant template: name, zone, country, size, public holidays (month, day).
struct TenantTemplate {
    name: &'static str,
    tz: Tz,
    country: &'static str,
    mailboxes: u32,
    holidays: &'static [(u32, u32)],
}

const TEMPLATES: &[TenantTemplate] = &[
    TenantTemplate {
        name: "contoso",
        tz: chrono_tz::Europe::Berlin,
        country: "DE",
        mailboxes: 120,
        holidays: &[(1, 1), (3, 29), (4, 1), (5, 1), (10, 3), (12, 25), (12, 26)],
    },
    TenantTemplate {
        name: "fabrikam",
        tz: chrono_tz::America::New_York,
        country: "US",
        mailboxes: 60,
        holidays: &[(1, 1), (5, 27), (7, 4), (9, 2), (11, 28), (12, 25)],
    },
    TenantTemplate {
        name: "northwind",
        tz: chrono_tz::Asia::Tokyo,
        country: "JP",
        mailboxes: 40,
        holidays: &[(1, 1), (3, 20), (4, 29), (5, 3), (5, 6), (11, 3)],
    },
    TenantTemplate {
        name: "tailspin",
        tz: chrono_tz::Australia::Sydney,
        country: "AU",
        mailboxes: 80,
        holidays: &[(1, 1), (1, 26), (3, 29), (4, 1), (4, 25), (12, 25)],
    },
    TenantTemplate {
        name: "adatum",
        tz: chrono_tz::Europe::London,
        country: "GB",
        mailboxes: 200,
        holidays: &[(1, 1), (3, 29), (4, 1), (5, 6), (12, 25), (12, 26)],
    },
    TenantTemplate {
        name: "litware",
        tz: chrono_tz::America::Chicago,
        country: "US",
        mailboxes: 30,
        holidays: &[(1, 1), (5, 27), (7, 4), (9, 2), (11, 28), (12, 25)],
    },
];

/// Folder names connectors and users touch.
pub const FOLDERS: &[&str] = &[
    "\\Inbox",
    "\\Sent Items",
    "\\Archive",
    "\\Deleted Items",
    "\\Drafts",
    "\\Inbox\\Projects",
];

/// One mailbox.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// UPN.
    pub upn: String,
    /// Exchange mailbox GUID.
    pub guid: String,
    /// Owner SID.
    pub sid: String,
    /// How much mail it gets, relative (lognormal around 1).
    pub weight: f64,
    /// Executive (a thief's favourite).
    pub executive: bool,
}

/// A simulated tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Position in the run.
    pub index: usize,
    /// Entra tenant id.
    pub id: String,
    /// Short name.
    pub name: String,
    /// Mail domain.
    pub domain: String,
    /// Users' time zone.
    pub tz: Tz,
    /// Users' country.
    pub country: &'static str,
    /// Mailboxes; the first `initial_mailboxes` exist from the start (growth adds the rest).
    pub mailboxes: Vec<Mailbox>,
    /// Mailboxes at the start.
    pub initial_mailboxes: usize,
    /// Public holidays (month, day).
    holidays: &'static [(u32, u32)],
    /// Has an on-prem Exchange server with EWS.
    pub on_prem: bool,
    /// Connectors this tenant trusts.
    pub connectors: Vec<Connector>,
}

impl Tenant {
    /// Is `date` (local) a public holiday or a weekend day?
    pub fn is_day_off(&self, date: NaiveDate) -> bool {
        date.weekday().number_from_monday() >= 6
            || self
                .holidays
                .iter()
                .any(|&(m, d)| date.month() == m && date.day() == d)
    }

    /// Local wall time on `date` at `hour` (fractional) as UTC. In the hour a DST change skips,
    /// the later offset is used; in the repeated hour, the earlier.
    pub fn local_to_utc(&self, date: NaiveDate, hour: f64) -> DateTime<Utc> {
        let secs = (hour.clamp(0.0, 23.9999) * 3600.0) as u32;
        let naive = date
            .and_hms_opt(secs / 3600, (secs / 60) % 60, secs % 60)
            .expect("valid time");
        match self.tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            chrono::LocalResult::None => self
                .tz
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .expect("an hour after a DST gap exists")
                .with_timezone(&Utc),
        }
    }

    /// The UTC offset in seconds at a UTC day's noon.
    pub fn offset_on(&self, date: NaiveDate) -> i32 {
        use chrono::Offset;
        let noon = Utc.from_utc_datetime(&date.and_hms_opt(12, 0, 0).expect("noon"));
        self.tz
            .offset_from_utc_datetime(&noon.naive_utc())
            .fix()
            .local_minus_utc()
    }
}

/// The shapes of connector the simulation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Backup / sync: nightly Sync sweep of every mailbox plus hourly incremental Binds, EWS.
    Backup,
    /// Continuity monitor: polls a few mailboxes every few minutes, EWS.
    Continuity,
    /// Archiving through Microsoft Graph, every half hour.
    ArchiveGraph,
    /// On-prem EWS service account (IIS logs).
    OnPremEws,
    /// An eDiscovery connector onboarded mid-run (confounder).
    Onboarded,
}

impl Shape {
    /// The name used in labels.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Backup => "backup",
            Shape::Continuity => "continuity",
            Shape::ArchiveGraph => "archive_graph",
            Shape::OnPremEws => "onprem_ews",
            Shape::Onboarded => "onboarded",
        }
    }
}

/// A certificate credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Key id.
    pub key_id: String,
    /// SHA-1 thumbprint.
    pub thumbprint: String,
    /// Subject name.
    pub display_name: String,
}

impl Credential {
    fn new(seeded: &Seeded, tag: &str, display_name: &str) -> Self {
        let mut rng = seeded.rng(&["credential", tag]);
        Credential {
            key_id: guid(&mut rng),
            thumbprint: hex_upper(&mut rng, 20),
            display_name: display_name.to_owned(),
        }
    }
}

/// A connector in one tenant.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Shape.
    pub shape: Shape,
    /// Display name (service principal name).
    pub name: String,
    /// Application id (multi-tenant vendor apps share it across tenants).
    pub app_id: String,
    /// Service principal object id in this tenant.
    pub sp_id: String,
    /// `ClientInfoString` / user agent.
    pub user_agent: String,
    /// Network its workers run in.
    pub net: Net,
    /// Indexes of its worker /24s in that network.
    pub prefixes: Vec<usize>,
    /// Worker hosts (last octet) per prefix.
    pub hosts: Vec<u8>,
    /// Credentials in order of use; rotation switches from the first to the second.
    pub credentials: Vec<Credential>,
    /// Mailboxes polled (continuity monitor).
    pub polled: Vec<usize>,
}

impl Connector {
    /// The resource the connector's tokens are for.
    pub fn resource(&self) -> (&'static str, &'static str) {
        match self.shape {
            Shape::ArchiveGraph | Shape::Onboarded => (MICROSOFT_GRAPH_APP_ID, "Microsoft Graph"),
            _ => (
                mailsentry_events::EXCHANGE_ONLINE_APP_ID,
                "Office 365 Exchange Online",
            ),
        }
    }

    /// True for app-only Entra connectors (not the on-prem service account).
    pub fn is_app(&self) -> bool {
        self.shape != Shape::OnPremEws
    }
}

/// The multi-tenant vendor apps and their credentials, shared by every tenant.
#[derive(Debug, Clone)]
pub struct Vendors {
    /// Backup vendor app id.
    pub backup_app: String,
    /// Backup vendor certificates: the one in use, then its planned successor.
    pub backup_keys: Vec<Credential>,
    /// Continuity vendor app id.
    pub continuity_app: String,
    /// Continuity vendor certificate.
    pub continuity_key: Credential,
    /// eDiscovery vendor app id (onboarded mid-run).
    pub ediscovery_app: String,
    /// eDiscovery certificate.
    pub ediscovery_key: Credential,
}

impl Vendors {
    /// The vendors of a run.
    pub fn new(seeded: &Seeded) -> Self {
        let mut rng = seeded.rng(&["vendors"]);
        Vendors {
            backup_app: guid(&mut rng),
            backup_keys: vec![
                Credential::new(seeded, "backup-1", "CN=sync.backupvendor.example 2023"),
                Credential::new(seeded, "backup-2", "CN=sync.backupvendor.example 2024"),
            ],
            continuity_app: guid(&mut rng),
            continuity_key: Credential::new(seeded, "continuity", "CN=monitor.continuity.example"),
            ediscovery_app: guid(&mut rng),
            ediscovery_key: Credential::new(seeded, "ediscovery", "CN=collect.ediscovery.example"),
        }
    }
}

/// Builds the tenants of a run.
pub fn build_tenants(seeded: &Seeded, count: usize, scale: f64, vendors: &Vendors) -> Vec<Tenant> {
    (0..count)
        .map(|index| {
            let template = &TEMPLATES[index % TEMPLATES.len()];
            let round = index / TEMPLATES.len();
            let name = if round == 0 {
                template.name.to_owned()
            } else {
                format!("{}{}", template.name, round + 1)
            };
            let domain = format!("{name}.example");
            let mut rng = seeded.rng(&["tenant", &index.to_string()]);
            let id = guid(&mut rng);
            let initial = ((template.mailboxes as f64 * scale).round() as usize).max(8);
            // Growth (a confounder) adds a quarter more mailboxes later in the run.
            let total = initial + initial / 4;
            let mailboxes = (0..total)
                .map(|m| {
                    let upn = format!("{}@{domain}", mailbox_name(m));
                    let weight = (rng.random::<f64>() * 1.6 - 0.8).exp();
                    Mailbox {
                        upn,
                        guid: guid(&mut rng),
                        sid: format!(
                            "S-1-5-21-{}-{}-{}-{}",
                            rng.random_range(1_000_000_000u64..4_000_000_000),
                            rng.random_range(1_000_000_000u64..4_000_000_000),
                            rng.random_range(1_000_000_000u64..4_000_000_000),
                            1100 + m
                        ),
                        weight,
                        executive: m < 5,
                    }
                })
                .collect();
            let on_prem = index % 3 == 1;
            let mut connectors = vec![
                Connector {
                    shape: Shape::Backup,
                    name: "BackupVendor Sync".into(),
                    app_id: vendors.backup_app.clone(),
                    sp_id: guid(&mut rng),
                    user_agent: "Client=WebServices;BackupVendor-Sync/2.1;".into(),
                    net: Net::Aws,
                    prefixes: vec![0, 1, 2],
                    hosts: vec![11, 12, 13, 14, 21, 22],
                    credentials: vendors.backup_keys.clone(),
                    polled: Vec::new(),
                },
                Connector {
                    shape: Shape::Continuity,
                    name: "Continuity Monitor".into(),
                    app_id: vendors.continuity_app.clone(),
                    sp_id: guid(&mut rng),
                    user_agent: "Client=WebServices;ContinuityProbe/4.7;".into(),
                    net: Net::Azure,
                    prefixes: vec![0, 1],
                    hosts: vec![40 + (index % 50) as u8],
                    credentials: vec![vendors.continuity_key.clone()],
                    polled: vec![0, 1 + index % (initial - 1)],
                },
                Connector {
                    shape: Shape::ArchiveGraph,
                    name: format!("{name} Mail Archive"),
                    app_id: guid(&mut rng),
                    sp_id: guid(&mut rng),
                    user_agent: "ArchiveVendor-Graph/5.2".into(),
                    net: Net::ArchiveVendor,
                    prefixes: vec![index % 2],
                    hosts: vec![60, 61],
                    credentials: vec![Credential::new(
                        seeded,
                        &format!("archive-{index}"),
                        &format!("CN=archive.{domain}"),
                    )],
                    polled: Vec::new(),
                },
            ];
            if on_prem {
                connectors.push(Connector {
                    shape: Shape::OnPremEws,
                    name: "svc-journal".into(),
                    app_id: format!("{}\\svc-journal", name.to_uppercase()),
                    sp_id: String::new(),
                    user_agent: "JournalArchiver/3.1 (EWS)".into(),
                    net: Net::ArchiveVendor,
                    prefixes: vec![index % 2],
                    hosts: vec![70],
                    credentials: Vec::new(),
                    polled: Vec::new(),
                });
            }
            Tenant {
                index,
                id,
                name,
                domain,
                tz: template.tz,
                country: template.country,
                mailboxes,
                initial_mailboxes: initial,
                holidays: template.holidays,
                on_prem,
                connectors,
            }
        })
        .collect()
}

/// The onboarded eDiscovery connector (confounder), added to a tenant mid-run.
pub fn ediscovery_connector(seeded: &Seeded, tenant: &Tenant, vendors: &Vendors) -> Connector {
    let mut rng = seeded.rng(&["ediscovery-sp", &tenant.index.to_string()]);
    Connector {
        shape: Shape::Onboarded,
        name: "eDiscovery Collector".into(),
        app_id: vendors.ediscovery_app.clone(),
        sp_id: guid(&mut rng),
        user_agent: "eDiscoveryCollector/1.0".into(),
        net: Net::Ediscovery,
        prefixes: vec![0],
        hosts: vec![90, 91],
        credentials: vec![vendors.ediscovery_key.clone()],
        polled: Vec::new(),
    }
}

const FIRST: &[&str] = &[
    "anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas", "kira",
    "leon", "maria", "nils", "olga", "paul", "quinn", "rosa", "sam", "tara", "uwe", "vera", "will",
    "xena", "yusuf", "zoe",
];
const LAST: &[&str] = &[
    "adams", "becker", "chen", "diaz", "evans", "fischer", "garcia", "hansen", "ito", "jones",
    "kim", "lopez", "meyer", "novak", "obi", "patel", "quint", "rossi", "sato", "tanaka",
];
const EXECUTIVES: &[&str] = &["ceo", "cfo", "general.counsel", "cto", "board.chair"];

fn mailbox_name(m: usize) -> String {
    if m < EXECUTIVES.len() {
        return EXECUTIVES[m].to_owned();
    }
    let f = FIRST[m % FIRST.len()];
    let l = LAST[(m / FIRST.len()) % LAST.len()];
    let n = m / (FIRST.len() * LAST.len());
    if n == 0 {
        format!("{f}.{l}")
    } else {
        format!("{f}.{l}{n}")
    }
}

/// UTC dates within `[start, start + days)` on which `tz`'s offset changes.
pub fn dst_changes(tenant: &Tenant, start: NaiveDate, days: u32) -> Vec<NaiveDate> {
    (0..days)
        .filter_map(|d| {
            let date = start + chrono::Duration::days(d as i64);
            let before = tenant.offset_on(date - chrono::Duration::days(1));
            (tenant.offset_on(date) != before && d > 0).then_some(date)
        })
        .collect()
}
