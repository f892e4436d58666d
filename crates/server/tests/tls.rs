//! TLS on loopback against real clients (openssl s_client, curl): TLS 1.3 and TLS 1.2 ECDHE
//! are accepted; a TLS 1.2 client offering only a non-forward-secret suite, and TLS 1.1, are
//! refused.

use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_pipeline::Pipeline;
use mailsentry_server::{router, tls, AppState};
use mailsentry_store::Store;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn openssl(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn tls_13_and_12_ecdhe_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = tls::server_config(&cert_path, &key_path).unwrap();
    // A wrong key file is refused with its name.
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let err = tls::server_config(&cert_path, &dir.path().join("empty.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty.pem"), "{err}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Store::open(&dir.path().join("alerts.db")).unwrap());
    let pipeline = Pipeline::start(
        DetectConfig::default(),
        Arc::new(Enrichment::none()),
        store.clone(),
        4,
    )
    .unwrap();
    let state = Arc::new(AppState {
        store,
        pipeline,
        bootstrap_token: None,
        limiter: Default::default(),
    });
    let listener = runtime
        .block_on(tls::bind("127.0.0.1:0".parse().unwrap(), config))
        .unwrap();
    let port = axum::serve::Listener::local_addr(&listener).unwrap().port();
    runtime.spawn(async move {
        axum::serve(listener, router(state, 1 << 20)).await.unwrap();
    });

    let (ok, text) = openssl(port, &["-tls1_3"]);
    assert!(ok && text.contains("TLSv1.3"), "TLS 1.3 refused: {text}");
    let (ok, text) = openssl(
        port,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert!(
        ok && text.contains("ECDHE-ECDSA-AES128-GCM-SHA256"),
        "TLS 1.2 ECDHE refused: {text}"
    );
    for (what, args) in [
        (
            "non-PFS TLS 1.2 (RSA key exchange)",
            vec!["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-SHA"],
        ),
        ("TLS 1.1", vec!["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
    ] {
        let (ok, text) = openssl(port, &args);
        let negotiated = text.contains("Cipher is AES") || text.contains("New, TLSv1.1");
        assert!(!ok || !negotiated, "{what} was accepted: {text}");
        assert!(!negotiated, "{what} negotiated: {text}");
    }
    // And the API answers over TLS.
    let out = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port}/healthz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
}
