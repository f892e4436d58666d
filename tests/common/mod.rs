//! Helpers shared by the end-to-end tests of the binary (each test file is its own crate and
//! uses what it needs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository's root (where `datasets/demo` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 30 s for `serve` on `port` to answer `/healthz`; panics with `why()` after.
pub fn wait_healthy(port: u16, why: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}
