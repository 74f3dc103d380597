//! Warrant: no capability without a warrant.
//!
//! The broker runs the pipeline — resolve, fetch, verify, decide, instantiate — and provides
//! the `warrant` command line. See `ARCHITECTURE.md` for the code map and invariants.

pub mod attest;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod compiled;
pub mod config;
pub mod cosign;
pub mod exit;
pub mod keys;
pub mod pipeline;
pub mod policy;
pub mod policy_tests;
pub mod progress;
pub mod referrers;
pub mod sandbox;
pub mod state;
pub mod verify;

pub use exit::Exit;
