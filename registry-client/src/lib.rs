//! OCI registry client, OCI image-layout reader and content-addressed store for Warrant.
//!
//! Everything a registry or a layout directory sends is untrusted. This crate's promise is that
//! what it hands on is exactly what a digest names:
//!
//! - a reference is resolved to a manifest digest **once** ([`RegistryClient::resolve`]); every
//!   later step uses digests taken from that manifest;
//! - every read is bounded (manifests 4 MiB, configs 1 MiB, layers by their descriptor and a
//!   module limit), JSON nesting is bounded, every operation has a deadline, and a
//!   [`RegistryClient::budgeted`] client bounds all of a command's operations together, in
//!   time and in requests;
//! - layers stream into a quarantine file while being hashed and reach the store only by an
//!   atomic rename after size and digest matched ([`store::Ingest`]).
//!
//! It knows nothing of signatures, policies or Wasm execution.
#![forbid(unsafe_code)]

pub mod attached;
pub mod auth;
mod budget;
pub mod digest;
pub mod error;
pub mod image_layer;
pub mod json;
pub mod layout;
pub mod limits;
pub mod manifest;
pub mod private_dir;
mod pull;
pub mod reference;
mod remote;
pub mod store;
pub mod text;

pub use auth::{Credential, Credentials};
pub use digest::Digest;
pub use error::{Error, Result};
pub use layout::Layout;
pub use manifest::{
    Descriptor, Form, ImageConfig, ImageIndex, ImageManifest, Platform, WasmConfig, WasmKind,
    WasmManifest,
};
pub use private_dir::{PrivateDir, Secrecy};
pub use pull::{
    Attachment, Fetched, ImageModule, NoProgress, Progress, Pushed, Referrers, ReferrersSource,
    Resolved, ResolvedIndex, WasmArtifact, wasm_artifact, wasm_image, wasm_image_index,
};
pub use reference::{LayoutRef, Reference, RegistryRef, Selector};
pub use remote::{ClientOptions, RegistryClient, USER_AGENT};
pub use store::Store;
