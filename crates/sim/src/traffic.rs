//! Normal traffic of one tenant on one local day: mail arriving, the connectors reading it in
//! their own rhythms with hourly tokens, people reading their own mail, and the Exchange
//! behaviours the logs show (Bind aggregation, throttling, late audit records).

use crate::activity::{
    AccessKind, Activity, Hop, IisRequest, Item, MailAccess, Message, Record, SignIn, TokenRef,
};
use crate::address_plan::{AddressPlan, Net};
use crate::seeded::{guid, normal, poisson, token_id, Seeded};
use crate::world::{Connector, Shape, Tenant};
use crate::SimConfig;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A mail item that arrived in a mailbox.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When.
    pub time: DateTime<Utc>,
    /// Mailbox index.
    pub mailbox: usize,
    /// Folder.
    pub folder: &'static str,
    /// The item.
    pub item: Item,
}

/// Run-wide facts the day generators consult.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The backup vendor's key rotation: keys[0] before, keys[1] from then on.
    pub rotation: DateTime<Utc>,
    /// The backup vendor moves its workers to its new /24 (confounder), if it does.
    pub vendor_migration: Option<DateTime<Utc>>,
}

/// A connector worker: one source address with its current token.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Address.
    pub ip: Ipv4Addr,
    token: Option<(TokenRef, DateTime<Utc>, Arc<str>)>,
}

impl Worker {
    /// A worker at `ip` without a token.
    pub fn new(ip: Ipv4Addr) -> Self {
        Worker { ip, token: None }
    }
}

/// Generation state for one tenant and local day.
pub struct TenantDay<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// Connectors active this day (the tenant's plus any onboarded).
    pub connectors: Vec<Connector>,
    /// Local date.
    pub date: NaiveDate,
    /// Day index in the run.
    pub day: u32,
    /// Addresses.
    pub plan: &'a AddressPlan,
    /// Run configuration.
    pub config: &'a SimConfig,
    /// Run-wide facts.
    pub facts: &'a RunFacts,
    /// Mailboxes that exist today.
    pub mailboxes: usize,
    /// Mail that arrives today, in time order.
    pub arrivals: Vec<Arrival>,
    /// Output.
    pub out: Vec<Activity>,
    /// The campaign activities being generated belong to.
    pub campaign: Option<u16>,
    /// Randomness for this tenant-day.
    pub rng: ChaCha8Rng,
    /// Hours (local, half-open) in which the backup connector is down (backfill confounder).
    pub backup_outage: Option<(f64, f64)>,
    /// When today's backup sweep started.
    pub backup_sweep_start: Option<DateTime<Utc>>,
}

impl<'a> TenantDay<'a> {
    /// Starts a tenant-day.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seeded: &Seeded,
        tenant: &'a Tenant,
        connectors: Vec<Connector>,
        date: NaiveDate,
        day: u32,
        plan: &'a AddressPlan,
        config: &'a SimConfig,
        facts: &'a RunFacts,
        mailboxes: usize,
    ) -> Self {
        let rng = seeded.rng(&["tenant-day", &tenant.index.to_string(), &day.to_string()]);
        TenantDay {
            tenant,
            connectors,
            date,
            day,
            plan,
            config,
            facts,
            mailboxes,
            arrivals: Vec::new(),
            out: Vec::new(),
            campaign: None,
            rng,
            backup_outage: None,
            backup_sweep_start: None,
        }
    }

    /// UTC time of a local hour today.
    pub fn at(&self, hour: f64) -> DateTime<Utc> {
        self.tenant.local_to_utc(self.date, hour)
    }

    /// UTC time of a random local moment in `[hour, hour + width)` today.
    pub fn at_random(&mut self, hour: f64, width: f64) -> DateTime<Utc> {
        let h = hour + self.rng.random::<f64>() * width;
        self.at(h)
    }

    fn day_off(&self) -> bool {
        self.tenant.is_day_off(self.date)
    }

    /// Mail arriving per mailbox per hour at a local hour.
    fn mail_rate(&self, hour: u32) -> f64 {
        let base = if self.day_off() {
            0.12
        } else if (8..18).contains(&hour) {
            1.1
        } else if (6..8).contains(&hour) || (18..21).contains(&hour) {
            0.4
        } else {
            0.08
        };
        base * self.config.mail_rate
    }

    /// Draws today's mail arrivals.
    pub fn draw_arrivals(&mut self) {
        let mut arrivals = Vec::new();
        for hour in 0..24u32 {
            let rate = self.mail_rate(hour);
            for m in 0..self.mailboxes {
                let mean = rate * self.tenant.mailboxes[m].weight;
                for _ in 0..poisson(&mut self.rng, mean) {
                    let t = self.at_random(hour as f64, 1.0);
                    let folder = if self.rng.random_bool(0.15) {
                        "\\Sent Items"
                    } else {
                        "\\Inbox"
                    };
                    let size = (10.3 + 1.1 * normal(&mut self.rng))
                        .exp()
                        .clamp(900.0, 4.0e7);
                    let message_id: Arc<str> = Arc::from(format!(
                        "<{:016x}.{}@{}>",
                        self.rng.random::<u64>(),
                        hour,
                        sender_domain(&mut self.rng)
                    ));
                    arrivals.push(Arrival {
                        time: t,
                        mailbox: m,
                        folder,
                        item: Item {
                            message_id,
                            size: size as u32,
                        },
                    });
                }
            }
        }
        arrivals.sort_by_key(|a| a.time);
        self.arrivals = arrivals;
    }

    /// Adds an activity: audit records become available 20 min to 2 h later (sometimes 12 h).
    pub fn push(&mut self, time: DateTime<Utc>, record: Record) {
        let delay_secs = match &record {
            Record::MailAccess(_) | Record::CredentialUpdate(_) => {
                if self.rng.random_bool(0.02) {
                    self.rng.random_range(6 * 3600..12 * 3600)
                } else {
                    self.rng.random_range(20 * 60..120 * 60)
                }
            }
            Record::SignIn(_) => self.rng.random_range(60..600),
            Record::Iis(_) | Record::Message(_) => 0,
        };
        self.out.push(Activity {
            time,
            available: time + Duration::seconds(delay_secs),
            campaign: self.campaign,
            record,
        });
    }

    /// The backup connector's worker addresses at `time` (the vendor may have moved).
    pub fn backup_workers(&self, connector: &Connector, time: DateTime<Utc>) -> Vec<Ipv4Addr> {
        let net = self.plan.get(connector.net);
        let migrated = self.facts.vendor_migration.is_some_and(|m| time >= m);
        let prefixes: Vec<usize> = if migrated {
            vec![3]
        } else {
            connector.prefixes.clone()
        };
        prefixes
            .iter()
            .flat_map(|&p| connector.hosts.iter().map(move |&h| net.ip(p, h)))
            .collect()
    }

    /// The credential a connector uses at `time`.
    pub fn credential_at<'c>(
        &self,
        connector: &'c Connector,
        time: DateTime<Utc>,
    ) -> &'c crate::world::Credential {
        if connector.shape == Shape::Backup && time >= self.facts.rotation {
            &connector.credentials[connector.credentials.len() - 1]
        } else {
            &connector.credentials[0]
        }
    }

    /// Makes sure `worker` holds a token valid at `time` (a sign-in about hourly), returning it
    /// and its Exchange session id.
    pub fn ensure_token(
        &mut self,
        connector: &Connector,
        worker: &mut Worker,
        time: DateTime<Utc>,
        key: &crate::world::Credential,
    ) -> (TokenRef, Arc<str>) {
        if let Some((token, expires, session)) = &worker.token {
            if time >= token.issued && time < *expires {
                return (token.clone(), session.clone());
            }
        }
        let issued = time - Duration::milliseconds(self.rng.random_range(600..8_000));
        let token = TokenRef {
            id: Arc::from(token_id(&mut self.rng)),
            issued,
            aad_session: Arc::from(guid(&mut self.rng)),
        };
        let country = self
            .plan
            .lookup(worker.ip)
            .map(|n| n.country)
            .unwrap_or("US");
        self.push(
            issued,
            Record::SignIn(SignIn {
                app_id: Arc::from(connector.app_id.as_str()),
                sp_id: Arc::from(connector.sp_id.as_str()),
                sp_name: Arc::from(connector.name.as_str()),
                ip: worker.ip,
                country,
                key_id: Arc::from(key.key_id.as_str()),
                thumbprint: Arc::from(key.thumbprint.as_str()),
                resource: connector.resource(),
                token_id: token.id.clone(),
                error_code: 0,
            }),
        );
        let lifetime = Duration::minutes(self.rng.random_range(55..66));
        let session: Arc<str> = Arc::from(guid(&mut self.rng));
        worker.token = Some((token.clone(), issued + lifetime, session.clone()));
        (token, session)
    }

    /// An app-only MailItemsAccessed record.
    #[allow(clippy::too_many_arguments)]
    pub fn app_access(
        &mut self,
        connector: &Connector,
        worker: &mut Worker,
        time: DateTime<Utc>,
        mailbox: usize,
        kind: AccessKind,
        folders: Vec<(&'static str, Vec<Item>)>,
        key: &crate::world::Credential,
    ) {
        let (token, session) = self.ensure_token(connector, worker, time, key);
        let count = match kind {
            AccessKind::Sync => folders.len().max(1) as u32,
            AccessKind::Bind => folders.iter().map(|(_, i)| i.len()).sum::<usize>().max(1) as u32,
        };
        let (app_id, client_app_id) = match connector.shape {
            Shape::ArchiveGraph | Shape::Onboarded => (
                Arc::from(mailsentry_events::MICROSOFT_GRAPH_APP_ID),
                Arc::from(connector.app_id.as_str()),
            ),
            _ => (
                Arc::from(connector.app_id.as_str()),
                Arc::from(connector.app_id.as_str()),
            ),
        };
        let port =
            (connector.shape == Shape::Backup).then(|| self.rng.random_range(40_000..65_000));
        self.push(
            time,
            Record::MailAccess(MailAccess {
                app_id: Some(app_id),
                client_app_id: Some(client_app_id),
                user_id: Arc::from(connector.sp_id.as_str()),
                user_type: 5,
                ip: worker.ip,
                port,
                client_info: Arc::from(connector.user_agent.as_str()),
                mailbox,
                kind,
                count,
                folders,
                token: Some(token),
                session_id: session,
                throttled: false,
            }),
        );
    }

    /// Reads a batch of new items mailbox by mailbox from `start`, `gap` seconds apart.
    pub fn read_batch(
        &mut self,
        connector: &Connector,
        worker: &mut Worker,
        start: DateTime<Utc>,
        batch: Vec<(usize, FolderReads)>,
        gap: std::ops::Range<i64>,
        key: &crate::world::Credential,
    ) {
        let mut t = start;
        for (mailbox, folders) in batch {
            t += Duration::seconds(self.rng.random_range(gap.clone()));
            self.app_access(
                connector,
                worker,
                t,
                mailbox,
                AccessKind::Bind,
                folders,
                key,
            );
        }
    }

    /// Items that arrived in `[from, to)`, grouped per mailbox and folder.
    pub fn new_items(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(usize, FolderReads)> {
        let mut per: std::collections::BTreeMap<usize, FolderReads> = Default::default();
        for a in self
            .arrivals
            .iter()
            .filter(|a| a.time >= from && a.time < to)
        {
            let folders = per.entry(a.mailbox).or_default();
            match folders.iter_mut().find(|(f, _)| *f == a.folder) {
                Some((_, items)) => items.push(a.item.clone()),
                None => folders.push((a.folder, vec![a.item.clone()])),
            }
        }
        per.into_iter().collect()
    }

    fn in_outage(&self, hour: f64) -> bool {
        self.backup_outage
            .is_some_and(|(from, to)| hour >= from && hour < to)
    }

    /// The backup connector: nightly Sync sweep of every mailbox, hourly incremental Binds.
    pub fn backup(&mut self, connector: &Connector) {
        // Nightly sweep from about 01:00 local, mailboxes spread over the workers.
        let start_hour = 1.0 + self.rng.random::<f64>() * 0.3;
        let sweep_start = self.at(start_hour);
        self.backup_sweep_start = Some(sweep_start);
        let ips = self.backup_workers(connector, sweep_start);
        let mut workers: Vec<Worker> = (0..3)
            .map(|w| Worker::new(ips[(self.day as usize + w * 2) % ips.len()]))
            .collect();
        let mut clocks = vec![sweep_start; workers.len()];
        if !self.in_outage(start_hour) {
            for m in 0..self.mailboxes {
                let w = m % workers.len();
                clocks[w] += Duration::seconds(self.rng.random_range(15..90));
                let t = clocks[w];
                let key = self.credential_at(connector, t).clone();
                let n_folders = self.rng.random_range(1..=3);
                let folders: Vec<(&'static str, Vec<Item>)> = crate::world::FOLDERS[..n_folders]
                    .iter()
                    .map(|f| (*f, Vec::new()))
                    .collect();
                let mut worker = workers[w].clone();
                self.app_access(
                    connector,
                    &mut worker,
                    t,
                    m,
                    AccessKind::Sync,
                    folders,
                    &key,
                );
                workers[w] = worker;
            }
        }
        // Hourly incremental: at about hh:05 read what arrived in the last hour. After an
        // outage the first run catches up on everything missed.
        let mut last_run = self.at(0.0) - Duration::minutes(55);
        for hour in 0..24 {
            let h = hour as f64 + 5.0 / 60.0 + self.rng.random::<f64>() * 0.03;
            if self.in_outage(h) {
                continue;
            }
            let run = self.at(h);
            let ips = self.backup_workers(connector, run);
            let mut worker = Worker::new(ips[(hour + self.day as usize) % ips.len()]);
            let batch = self.new_items(last_run, run);
            last_run = run;
            let key = self.credential_at(connector, run).clone();
            self.read_batch(connector, &mut worker, run, batch, 2..12, &key);
        }
    }

    /// The continuity monitor: polls a few mailboxes every `poll_minutes`.
    pub fn continuity(&mut self, connector: &Connector) {
        let net = self.plan.get(connector.net);
        let mut worker = Worker::new(net.ip(connector.prefixes[0], connector.hosts[0]));
        let key = connector.credentials[0].clone();
        let step = self.config.poll_minutes as f64 / 60.0;
        let mut h = self.rng.random::<f64>() * step;
        while h < 24.0 {
            let t0 = self.at(h);
            for (k, &mailbox) in connector.polled.iter().enumerate() {
                let t = t0 + Duration::seconds(3 * k as i64 + self.rng.random_range(0..3));
                let probe = Item {
                    message_id: Arc::from(format!(
                        "<probe-{}-{}@continuity.example>",
                        self.day,
                        (h * 60.0) as u32
                    )),
                    size: 2048,
                };
                self.app_access(
                    connector,
                    &mut worker,
                    t,
                    mailbox,
                    AccessKind::Bind,
                    vec![("\\Inbox", vec![probe])],
                    &key,
                );
            }
            h += step;
        }
    }

    /// The Graph archiver: hourly at about hh:35, reads what arrived since its last run.
    pub fn archive(&mut self, connector: &Connector) {
        let net = self.plan.get(connector.net);
        let ips: Vec<Ipv4Addr> = connector
            .hosts
            .iter()
            .map(|&h| net.ip(connector.prefixes[0], h))
            .collect();
        let key = connector.credentials[0].clone();
        let mut last_run = self.at(0.0) - Duration::minutes(25);
        let mut worker = Worker::new(ips[self.day as usize % ips.len()]);
        for hour in 0..24 {
            let run = self.at_random(hour as f64 + 35.0 / 60.0, 0.02);
            let batch = self.new_items(last_run, run);
            last_run = run;
            self.read_batch(connector, &mut worker, run, batch, 1..6, &key);
        }
    }

    /// The on-prem journaling service account: EWS requests every half hour per mailbox with
    /// new mail, and the odd failed authentication.
    pub fn onprem_ews(&mut self, connector: &Connector) {
        let net = self.plan.get(connector.net);
        let ip = net.ip(connector.prefixes[0], connector.hosts[0]);
        let server = Ipv4Addr::new(10, 20, self.tenant.index as u8, 5);
        let mut last = self.at(0.0) - Duration::minutes(30);
        for half in 0..48 {
            let run = self.at_random(half as f64 / 2.0, 0.01);
            let batch = self.new_items(last, run);
            last = run;
            let mut t = run;
            for (mailbox, folders) in batch {
                t += Duration::seconds(self.rng.random_range(1..4));
                let bytes: u64 = folders
                    .iter()
                    .flat_map(|(_, items)| items.iter().map(|i| i.size as u64))
                    .sum();
                let status = if self.rng.random_bool(0.003) {
                    401
                } else {
                    200
                };
                let time_taken = self.rng.random_range(15..400);
                self.push(
                    t,
                    Record::Iis(IisRequest {
                        server_ip: server,
                        method: "POST",
                        stem: "/EWS/Exchange.asmx",
                        query: format!("MailboxId={}", self.tenant.mailboxes[mailbox].upn),
                        username: connector.app_id.clone(),
                        client_ip: ip,
                        user_agent: Arc::from(connector.user_agent.replace(' ', "+")),
                        status,
                        bytes: if status == 200 { bytes + 1800 } else { 0 },
                        time_taken,
                    }),
                );
            }
        }
    }

    /// People reading their own mail in Outlook on the web from the office.
    pub fn people(&mut self) {
        let office = self.plan.office(self.tenant.index).clone();
        let active = if self.day_off() { 0.05 } else { 0.4 };
        for m in 0..self.mailboxes {
            if !self.rng.random_bool(active) {
                continue;
            }
            let sessions = self.rng.random_range(1..=3);
            let session_id: Arc<str> = Arc::from(guid(&mut self.rng));
            for _ in 0..sessions {
                let h = 8.0 + self.rng.random::<f64>() * 9.5;
                let t = self.at(h);
                let read: Vec<Item> = self
                    .arrivals
                    .iter()
                    .filter(|a| a.mailbox == m && a.time < t && a.folder == "\\Inbox")
                    .rev()
                    .take(self.rng.random_range(1..5))
                    .map(|a| a.item.clone())
                    .collect();
                if read.is_empty() {
                    continue;
                }
                let upn: Arc<str> = Arc::from(self.tenant.mailboxes[m].upn.as_str());
                self.push(
                    t,
                    Record::MailAccess(MailAccess {
                        app_id: None,
                        client_app_id: None,
                        user_id: upn,
                        user_type: 0,
                        ip: office.ip(0, 10 + (m % 200) as u8),
                        port: None,
                        client_info: Arc::from(
                            "Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36;",
                        ),
                        mailbox: m,
                        kind: AccessKind::Bind,
                        count: read.len() as u32,
                        folders: vec![("\\Inbox", read)],
                        token: None,
                        session_id: session_id.clone(),
                        throttled: false,
                    }),
                );
            }
        }
    }

    /// Inbound mail relayed by the gateway, a sample of today's arrivals written to mbox.
    pub fn relayed_mail(&mut self) {
        let gateway = self.plan.get(Net::Gateway).clone();
        let senders = self.plan.get(Net::Senders).clone();
        let sample: Vec<Arrival> = self
            .arrivals
            .iter()
            .filter(|a| a.folder == "\\Inbox")
            .cloned()
            .collect();
        for a in sample {
            if !self.rng.random_bool(self.config.mail_sample) {
                continue;
            }
            let sender_ip = senders.ip(self.rng.random_range(0..3), self.rng.random_range(1..255));
            let gw_ip = gateway.ip(self.rng.random_range(0..2), self.rng.random_range(10..14));
            let hops = vec![
                Hop {
                    from_host: format!("mx{}.gateway.example", gw_ip.octets()[3]),
                    from_ip: gw_ip,
                    by_host: format!("mail.{}", self.tenant.domain),
                    tls: Some(("TLSv1.3", "TLS_AES_256_GCM_SHA384")),
                    time: a.time,
                },
                Hop {
                    from_host: format!("mail-{}.google.example", sender_ip.octets()[3]),
                    from_ip: sender_ip,
                    by_host: format!("mx{}.gateway.example", gw_ip.octets()[3]),
                    tls: Some(("TLSv1.3", "TLS_AES_128_GCM_SHA256")),
                    time: a.time - Duration::seconds(self.rng.random_range(1..20)),
                },
            ];
            let domain = a
                .item
                .message_id
                .rsplit('@')
                .next()
                .unwrap_or("example.net")
                .trim_end_matches('>')
                .to_owned();
            self.push(
                a.time,
                Record::Message(Message {
                    from: format!("news@{domain}"),
                    to: a.mailbox,
                    subject: "Weekly update".into(),
                    message_id: a.item.message_id.clone(),
                    hops,
                    auth: ("pass", "pass", "pass"),
                    sender_domain: domain,
                }),
            );
        }
    }

    /// Generates the tenant's normal traffic for the day.
    pub fn normal_traffic(&mut self) {
        self.draw_arrivals();
        let connectors = self.connectors.clone();
        for c in &connectors {
            match c.shape {
                Shape::Backup => self.backup(c),
                Shape::Continuity => self.continuity(c),
                Shape::ArchiveGraph => self.archive(c),
                Shape::OnPremEws => self.onprem_ews(c),
                Shape::Onboarded => self.onboarded(c),
            }
        }
        self.people();
        self.relayed_mail();
    }

    /// An onboarded eDiscovery connector: a first full collection, then daily deltas.
    pub fn onboarded(&mut self, connector: &Connector) {
        let net = self.plan.get(connector.net);
        let mut worker = Worker::new(net.ip(0, connector.hosts[self.day as usize % 2]));
        let key = connector.credentials[0].clone();
        let mut t = self.at_random(9.0, 1.0);
        let picks = (self.mailboxes / 3).max(2);
        for m in 0..picks {
            t += Duration::seconds(self.rng.random_range(20..120));
            self.app_access(
                connector,
                &mut worker,
                t,
                m,
                AccessKind::Sync,
                vec![("\\Inbox", Vec::new()), ("\\Sent Items", Vec::new())],
                &key,
            );
        }
    }

    /// Exchange's MailItemsAccessed throttling: a mailbox with more than 1,000 records in 24
    /// hours gets one record marked `IsThrottled` and no more for 24 hours. `state` carries
    /// each mailbox's recent record times and pause across days.
    pub fn apply_throttling(&mut self, state: &mut ThrottleState) {
        self.out.sort_by_key(|a| a.time);
        let mut kept = Vec::with_capacity(self.out.len());
        for mut a in std::mem::take(&mut self.out) {
            if let Record::MailAccess(access) = &mut a.record {
                let m = access.mailbox;
                if state.paused_until.len() <= m {
                    state.paused_until.resize(m + 1, None);
                    state.recent.resize_with(m + 1, Default::default);
                }
                if state.paused_until[m].is_some_and(|until| a.time < until) {
                    state.suppressed += 1;
                    continue;
                }
                let recent = &mut state.recent[m];
                while recent
                    .front()
                    .is_some_and(|t| *t <= a.time - Duration::hours(24))
                {
                    recent.pop_front();
                }
                recent.push_back(a.time);
                if recent.len() > 1000 {
                    access.throttled = true;
                    state.paused_until[m] = Some(a.time + Duration::hours(24));
                    state.throttled_events.push((m, a.time));
                    recent.clear();
                }
            }
            kept.push(a);
        }
        self.out = kept;
    }
}

/// Folders and the items read in each, as one MailItemsAccessed record lists them.
pub type FolderReads = Vec<(&'static str, Vec<Item>)>;

/// Throttling state of a tenant's mailboxes.
#[derive(Debug, Default)]
pub struct ThrottleState {
    paused_until: Vec<Option<DateTime<Utc>>>,
    recent: Vec<std::collections::VecDeque<DateTime<Utc>>>,
    /// Records not written because their mailbox was throttled.
    pub suppressed: u64,
    /// (mailbox, when) of each throttling.
    pub throttled_events: Vec<(usize, DateTime<Utc>)>,
}

fn sender_domain(rng: &mut impl Rng) -> &'static str {
    const DOMAINS: &[&str] = &[
        "partner.example.net",
        "supplier.example.org",
        "newsletter.example.com",
        "customer.example.net",
        "law.example",
        "bank.example",
    ];
    DOMAINS[rng.random_range(0..DOMAINS.len())]
}
