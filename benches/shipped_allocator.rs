//! The allocator the `mailsentry` binary ships with (`crates/cli/src/main.rs`), so a bench's
//! figures are the binary's. Included by the benches with `#[path]`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
