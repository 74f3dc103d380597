//! Test support for Warrant's end-to-end tests: a real OCI registry on loopback, a
//! deliberately hostile one, Wasm fixtures, and store assertions.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a panic here is a failed test, not an attacker's win"
)]

pub mod components;
pub mod containerd;
pub mod fixtures;
pub mod hostile;
pub mod http_guests;
pub mod registry;
pub mod serve;
pub mod sigstore;
pub mod store_check;
pub mod toolchain;
