//! The audit log: an append-only, tamper-evident record of every decision Warrant takes.
//!
//! This crate stores and proves records; the broker decides what goes into them. It knows
//! nothing of Cedar or wasmtime. It holds no code yet: records, hashing and checkpoints arrive
//! with the audit log itself.
