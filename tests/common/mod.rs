//! Helpers shared by the end-to-end tests of the binary (each test file is its own crate and
//! uses what it needs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The package's directory as cargo gives it when running the tests (the path compiled in
/// otherwise): a test binary reused from a build of another checkout then still reads this
/// checkout's files.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

/// The repository's root (where `datasets/demo` lives).
pub fn repo_root() -> PathBuf {
    manifest_dir().join("../..").canonicalize().unwrap()
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

/// The value of the unlabelled metric `name` on `serve`'s `/metrics` (0 when it is not there
/// yet); `None` when the server does not answer.
pub fn metric(port: u16, token: &str, name: &str) -> Option<u64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()?
        .into_string()
        .unwrap();
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap()),
    )
}

/// Stops a `serve` process as an operator would (SIGINT) and waits up to 30 s for it to exit.
pub fn interrupt(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "instance did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A schema of its own in a shared PostgreSQL database, so a store on it starts empty.
pub struct PgSchema {
    admin: postgres::Client,
    name: String,
    /// The connection string whose `search_path` selects the schema.
    pub url: String,
}

impl PgSchema {
    /// Creates the empty schema `name` in the database at `base`.
    pub fn create(base: &str, name: &str) -> PgSchema {
        let mut admin = postgres::Client::connect(base, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        PgSchema {
            admin,
            name: name.to_owned(),
            url: format!("{base} options='-c search_path={name}'"),
        }
    }

    /// Drops the schema with everything in it.
    pub fn drop_schema(mut self) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .unwrap();
    }
}
