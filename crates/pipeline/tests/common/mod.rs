//! Helpers shared by the pipeline's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

/// The package's directory as cargo gives it when running the tests (the path compiled in
/// otherwise): a test binary reused from a build of another checkout then still reads this
/// checkout's files.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

/// A rustls server configuration (safe defaults) presenting the self-signed `cert`: the TLS
/// peer the tests stand up in front of a plaintext service.
pub fn tls_server_config(cert: &rcgen::CertifiedKey) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into()),
        )
        .unwrap(),
    )
}
