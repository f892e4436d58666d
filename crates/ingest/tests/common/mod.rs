//! Helpers shared by the ingest crate's integration tests.

/// The package's directory as cargo gives it when running the tests (the path compiled in
/// otherwise): a test binary reused from a build of another checkout then still reads this
/// checkout's files.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}
