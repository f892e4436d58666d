//! Push sinks: each follows the alert feed from its own persisted cursor on its own thread, so
//! a sink that is down never blocks detection and never loses an alert — it retries the same
//! alert with exponential backoff and resumes where it stopped, even across restarts.
//!
//! - webhook: `POST` of the native alert JSON with `X-Mailsentry-Signature: sha256=<hex>`
//!   (HMAC-SHA256 of the body with a shared secret) and `X-Mailsentry-Sequence`;
//! - syslog: RFC 5424 over TCP with octet-counting framing (RFC 6587), the message a CEF line;
//! - Splunk HTTP Event Collector: `POST /services/collector/event` with `Authorization: Splunk`;
//! - Kafka: the native alert JSON to a topic, keyed by alert id (so a compacted topic keeps each
//!   alert's latest state), with the feed sequence in a `mailsentry-sequence` header; the
//!   cursor moves only once the broker has acknowledged the message.

use hmac::{Hmac, Mac};
use mailsentry_store::{AlertStore, StoredAlert};
use sha2::Sha256;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where alerts go.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// A webhook URL and the HMAC secret.
    Webhook {
        /// URL.
        url: String,
        /// Shared secret for the signature.
        secret: String,
    },
    /// A syslog collector (`host:port`, TCP).
    Syslog {
        /// Address.
        address: String,
    },
    /// A syslog collector over TLS (`host:port`; the host is the certificate's name), trusting
    /// the CA certificates in `ca_pem` (TLS 1.3 / 1.2 ECDHE, as the server side).
    SyslogTls {
        /// Address.
        address: String,
        /// PEM file of the CA certificates to trust.
        ca_pem: std::path::PathBuf,
    },
    /// Splunk HEC base URL (`https://splunk:8088`) and token.
    SplunkHec {
        /// Base URL.
        url: String,
        /// HEC token.
        token: String,
    },
    /// A Kafka topic.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// Topic.
        topic: String,
        /// librdkafka properties (security protocol, SASL, CA ...).
        properties: Vec<(String, String)>,
    },
}

/// A configured sink.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Name (its cursor is kept under this name).
    pub name: String,
    /// Kind.
    pub kind: SinkKind,
}

/// Signs a body: `sha256=` and the hex HMAC-SHA256.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// An RFC 5424 syslog message framed by octet counting.
pub fn syslog_frame(a: &StoredAlert, hostname: &str, cef: &str) -> Vec<u8> {
    // Facility 4 (security), severity from the alert: critical 2, high 3, medium 4, low 5.
    let severity = match a.alert.severity {
        mailsentry_events::Severity::Critical => 2,
        mailsentry_events::Severity::High => 3,
        mailsentry_events::Severity::Medium => 4,
        mailsentry_events::Severity::Low => 5,
    };
    let msg = format!(
        "<{}>1 {} {} mailsentry - alert [mailsentry@32473 seq=\"{}\" id=\"{}\"] {}",
        4 * 8 + severity,
        a.alert
            .detected_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        hostname,
        a.seq,
        a.alert.id.replace(['"', '\\', ']'], "_"),
        cef
    );
    format!("{} {}", msg.len(), msg).into_bytes()
}

/// A delivery error without the URL (which may carry credentials).
fn http_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => format!("transport: {}", t.kind()),
    }
}

fn cursor_key(name: &str) -> String {
    format!("sink-cursor:{name}")
}

fn load_cursor(store: &dyn AlertStore, name: &str) -> u64 {
    store
        .load_checkpoint(&cursor_key(name))
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

struct Deliverer {
    kind: SinkKind,
    syslog: Option<std::net::TcpStream>,
    syslog_tls: Option<Box<TlsStream>>,
    agent: ureq::Agent,
    producer: Option<rdkafka::producer::BaseProducer<DeliveryContext>>,
}

fn connect_tls(address: &str, ca_pem: &std::path::Path) -> Result<TlsStream, String> {
    let pem = std::fs::read(ca_pem).map_err(|e| format!("{}: {e}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_pem.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_pem.display()))?;
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: crate::tls_suites(),
        ..rustls::crypto::ring::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(10))).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Records a failed delivery so the sink retries instead of moving its cursor.
#[derive(Default)]
struct DeliveryContext {
    failed: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for DeliveryContext {}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

impl Deliverer {
    fn deliver(&mut self, a: &StoredAlert, cef: &str) -> Result<(), String> {
        match &self.kind {
            SinkKind::Webhook { url, secret } => {
                let body = serde_json::to_vec(&a.alert).expect("alert serializes");
                self.agent
                    .post(url)
                    .set("Content-Type", "application/json")
                    .set("X-Mailsentry-Signature", &signature(secret, &body))
                    .set("X-Mailsentry-Sequence", &a.seq.to_string())
                    .send_bytes(&body)
                    .map(|_| ())
                    .map_err(http_error)
            }
            SinkKind::SplunkHec { url, token } => {
                let body = serde_json::json!({
                    "time": a.alert.detected_at.timestamp(),
                    "sourcetype": "mailsentry:alert",
                    "source": "mailsentry",
                    "event": a.alert,
                });
                self.agent
                    .post(&format!(
                        "{}/services/collector/event",
                        url.trim_end_matches('/')
                    ))
                    .set("Authorization", &format!("Splunk {token}"))
                    .send_string(&body.to_string())
                    .map(|_| ())
                    .map_err(http_error)
            }
            SinkKind::SyslogTls { address, ca_pem } => {
                if self.syslog_tls.is_none() {
                    self.syslog_tls = Some(Box::new(connect_tls(address, ca_pem)?));
                }
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mailsentry".into());
                let frame = syslog_frame(a, &host, cef);
                let stream = self.syslog_tls.as_mut().expect("connected");
                let result = stream.write_all(&frame).and_then(|_| stream.flush());
                if result.is_err() {
                    self.syslog_tls = None;
                }
                result.map_err(|e| e.to_string())
            }
            SinkKind::Kafka {
                brokers,
                topic,
                properties,
            } => {
                use rdkafka::producer::{BaseRecord, Producer};
                if self.producer.is_none() {
                    let mut props = vec![("message.timeout.ms".to_owned(), "10000".to_owned())];
                    props.extend(properties.iter().cloned());
                    let producer = crate::kafka_source::client_config(brokers, &props)
                        .create_with_context(DeliveryContext::default())
                        .map_err(|e| e.to_string())?;
                    self.producer = Some(producer);
                }
                let producer = self.producer.as_ref().expect("created");
                let body = serde_json::to_vec(&a.alert).expect("alert serializes");
                let seq = a.seq.to_string();
                let headers =
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: "mailsentry-sequence",
                        value: Some(seq.as_bytes()),
                    });
                producer
                    .send(
                        BaseRecord::to(topic)
                            .key(&a.alert.id)
                            .payload(&body)
                            .headers(headers),
                    )
                    .map_err(|(e, _)| e.to_string())?;
                // Wait for the broker's acknowledgement before the cursor moves.
                producer
                    .flush(Duration::from_secs(15))
                    .map_err(|e| e.to_string())?;
                match producer
                    .context()
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            SinkKind::Syslog { address } => {
                if self.syslog.is_none() {
                    let stream =
                        std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
                    stream.set_write_timeout(Some(Duration::from_secs(10))).ok();
                    self.syslog = Some(stream);
                }
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mailsentry".into());
                let frame = syslog_frame(a, &host, cef);
                let result = self.syslog.as_mut().expect("connected").write_all(&frame);
                if result.is_err() {
                    self.syslog = None;
                }
                result.map_err(|e| e.to_string())
            }
        }
    }
}

/// A running sink thread; dropping the handle does not stop it, [`SinkHandle::stop`] does.
pub struct SinkHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SinkHandle {
    /// Stops the sink after its current attempt.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a sink following the store's feed. `cef` renders an alert as a CEF line (the
/// server's formatter, passed in to keep the crate graph one-way).
pub fn start_sink(
    sink: Sink,
    store: Arc<dyn AlertStore>,
    cef: fn(&mailsentry_events::Alert) -> String,
    poll: Duration,
) -> SinkHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sink-{}", sink.name))
        .spawn(move || {
            let mut deliverer = Deliverer {
                kind: sink.kind.clone(),
                syslog: None,
                syslog_tls: None,
                agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build(),
                producer: None,
            };
            let mut cursor = load_cursor(store.as_ref(), &sink.name);
            let mut backoff = Duration::from_millis(200);
            while !flag.load(Ordering::Relaxed) {
                let page = match store.feed(cursor, 100) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(sink = %sink.name, error = %e, "reading the feed failed");
                        std::thread::sleep(poll);
                        continue;
                    }
                };
                if page.items.is_empty() {
                    std::thread::sleep(poll);
                    continue;
                }
                for item in &page.items {
                    loop {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        match deliverer.deliver(item, &cef(&item.alert)) {
                            Ok(()) => {
                                backoff = Duration::from_millis(200);
                                cursor = item.seq;
                                if let Err(e) = store.save_checkpoint(&cursor_key(&sink.name), cursor.to_string().as_bytes()) {
                                    tracing::error!(sink = %sink.name, error = %e, "saving the sink cursor failed");
                                }
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(sink = %sink.name, seq = item.seq, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed");
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(60));
                            }
                        }
                    }
                }
            }
        })
        .expect("spawn sink thread");
    SinkHandle {
        stop,
        thread: Some(thread),
    }
}
