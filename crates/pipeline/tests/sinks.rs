//! Push sinks against real sockets on loopback: a webhook that fails twice then recovers gets
//! every alert once, in order, signed; syslog frames are octet-counted RFC 5424 with CEF; HEC
//! carries its token; a restarted sink resumes from its cursor without re-sending.

use mailsentry_events::Alert;
use mailsentry_pipeline::sinks::{signature, start_sink, Sink, SinkKind};
use mailsentry_store::Store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

fn alert(i: u32) -> Alert {
    serde_json::from_value(serde_json::json!({
        "id": format!("a{i}"), "version": 1, "created_at": "2024-03-12T10:00:00Z",
        "detected_at": "2024-03-12T10:00:00Z", "tenant_id": "t1", "connector": {"app_id": "app"},
        "session": {"client_ips": ["203.0.113.9"], "asns": [], "first_event": null, "last_event": null,
                    "events": 1, "mailboxes": 1, "items": 1, "bytes": 0},
        "score": 65, "severity": "high", "p_value": 1e-6, "reasons": [], "evidence": {"event_ids": []}, "status": "new"
    }))
    .unwrap()
}

fn cef(a: &Alert) -> String {
    format!("CEF:0|mailsentry|mailsentry|test|x|{}|7|", a.id)
}

struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 server: answers `fail_first` requests with 500, then 200.
fn http_server(fail_first: usize) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            n += 1;
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if n > fail_first {
                log.lock().unwrap().push(Request { headers, body });
            }
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, seen)
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webhook_retries_signs_and_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    store
        .upsert_alerts(&[alert(0), alert(1), alert(2)])
        .unwrap();
    let (url, seen) = http_server(2);
    let sink = Sink {
        name: "hook".into(),
        kind: SinkKind::Webhook {
            url: url.clone(),
            secret: "s3cret".into(),
        },
    };
    let handle = start_sink(sink.clone(), store.clone(), cef, Duration::from_millis(50));
    wait_for("three deliveries", || seen.lock().unwrap().len() == 3);
    handle.stop();
    {
        let got = seen.lock().unwrap();
        let ids: Vec<String> = got
            .iter()
            .map(|r| serde_json::from_slice::<Alert>(&r.body).unwrap().id)
            .collect();
        assert_eq!(ids, ["a0", "a1", "a2"]);
        for r in got.iter() {
            let sig = r
                .headers
                .iter()
                .find(|(k, _)| k == "x-mailsentry-signature")
                .unwrap()
                .1
                .clone();
            assert_eq!(sig, signature("s3cret", &r.body));
        }
    }
    assert_eq!(
        store
            .load_checkpoint("sink-cursor:hook")
            .unwrap()
            .as_deref(),
        Some(&b"3"[..])
    );
    // Restarted: nothing old is sent again; a new alert is.
    store.upsert_alerts(&[alert(3)]).unwrap();
    let handle = start_sink(sink, store.clone(), cef, Duration::from_millis(50));
    wait_for("the new alert", || seen.lock().unwrap().len() == 4);
    std::thread::sleep(Duration::from_millis(300));
    handle.stop();
    let got = seen.lock().unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(
        serde_json::from_slice::<Alert>(&got[3].body).unwrap().id,
        "a3"
    );
}

#[test]
fn syslog_frames_are_octet_counted_rfc5424_with_cef() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    store.upsert_alerts(&[alert(0), alert(1)]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let log = frames.clone();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut len = Vec::new();
            if reader.read_until(b' ', &mut len).unwrap() == 0 {
                return;
            }
            let n: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
            let mut msg = vec![0; n];
            reader.read_exact(&mut msg).unwrap();
            log.lock().unwrap().push(String::from_utf8(msg).unwrap());
        }
    });
    let handle = start_sink(
        Sink {
            name: "syslog".into(),
            kind: SinkKind::Syslog { address },
        },
        store,
        cef,
        Duration::from_millis(50),
    );
    wait_for("two frames", || frames.lock().unwrap().len() == 2);
    handle.stop();
    let got = frames.lock().unwrap();
    assert!(
        got[0].starts_with("<35>1 2024-03-12T10:00:00Z "),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains(" mailsentry - alert [mailsentry@32473 seq=\"1\" id=\"a0\"] CEF:0|"),
        "{}",
        got[0]
    );
    assert!(got[1].contains("id=\"a1\""));
}

#[test]
fn splunk_hec_gets_its_token_and_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    store.upsert_alerts(&[alert(0)]).unwrap();
    let (url, seen) = http_server(0);
    let handle = start_sink(
        Sink {
            name: "hec".into(),
            kind: SinkKind::SplunkHec {
                url,
                token: "hec-token".into(),
            },
        },
        store,
        cef,
        Duration::from_millis(50),
    );
    wait_for("one event", || seen.lock().unwrap().len() == 1);
    handle.stop();
    let got = seen.lock().unwrap();
    assert!(got[0]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Splunk hec-token"));
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"]["id"], "a0");
    assert_eq!(body["sourcetype"], "mailsentry:alert");
}

#[test]
fn syslog_over_tls_verifies_the_collector_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
    store.upsert_alerts(&[alert(0)]).unwrap();
    // A TLS syslog collector with a certificate for "localhost"; its certificate is the CA.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let server_config = common::tls_server_config(&cert);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let log = frames.clone();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // One octet-counted frame: "LEN SP MSG".
                    if let Some(sp) = buf.iter().position(|&b| b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                        if buf.len() >= sp + 1 + len {
                            log.lock().unwrap().push(
                                String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap(),
                            );
                            buf.drain(..sp + 1 + len);
                        }
                    }
                }
            }
        }
    });
    let sink = Sink {
        name: "syslog-tls".into(),
        kind: SinkKind::SyslogTls {
            address: format!("localhost:{port}"),
            ca_pem: ca,
        },
    };
    let handle = start_sink(sink, store.clone(), cef, Duration::from_millis(50));
    wait_for("a frame over TLS", || frames.lock().unwrap().len() == 1);
    handle.stop();
    assert!(frames.lock().unwrap()[0].contains("id=\"a0\""));
    assert_eq!(
        store
            .load_checkpoint("sink-cursor:syslog-tls")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
}
