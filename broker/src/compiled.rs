//! The compile cache: the native code Warrant compiled for a guest, kept in the state
//! (`compiled/`) so that a later run of the same guest with the same engine does not compile it
//! again.
//!
//! Compiled code is executed, so an entry whose bytes are not the bytes Warrant wrote under
//! that name must never be loaded. Warrant keeps this cache end to end rather than using
//! wasmtime's (which reads its entries by path and deserializes whatever it finds there):
//!
//! - an entry is named by a SHA-256 over the engine's compatibility fingerprint, the guest's
//!   kind and the SHA-256 of the guest's bytes — so a guest's entry can only be found by a
//!   guest with those exact bytes, compiled by an engine configured the same way;
//! - it holds an HMAC-SHA256, under the state's MAC key for this cache, of what follows: its
//!   name, then the serialized code;
//! - it is read once, into memory, from a regular file of the user's in a directory only the
//!   user can change ([`registry_client::PrivateDir`]); the MAC is checked over those bytes,
//!   and those same bytes — not the file again — are handed to wasmtime.
//!
//! An entry copied from another guest's name, edited, truncated, made under another key, or
//! written by another version fails the MAC (or wasmtime's own compatibility check) and is a
//! miss: the guest is compiled afresh and the entry replaced. Entries are never synced: a torn
//! one fails its MAC. Nothing is compressed, so nothing is decompressed without a bound; an
//! entry is read up to [`MAX_ENTRY_BYTES`].

use std::hash::Hasher;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use registry_client::{PrivateDir, Secrecy, WasmKind};
use ring::hmac;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::state::{State, StateError};

/// The cache's directory in the state, and its MAC key's purpose.
pub const COMPILED_DIR: &str = "compiled";
/// Largest entry read: compiled code runs to a few times its Wasm, and guests are at most
/// [`crate::sandbox::limits::MAX_GUEST_BYTES`].
pub const MAX_ENTRY_BYTES: u64 = 4 * crate::sandbox::limits::MAX_GUEST_BYTES;
/// Most entries kept: past it, the oldest written are removed when a new one is kept.
/// Compiling a guest again costs what it cost the first time; a directory that grew without
/// bound would cost disk for every guest ever run.
pub const MAX_ENTRIES: usize = 1024;
/// Most bytes the entries take together, removed oldest first past it like [`MAX_ENTRIES`].
pub const MAX_TOTAL_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Bytes of the MAC at the head of an entry.
const MAC_BYTES: usize = 32;
/// What the entry name's hash starts with: the format, so a new one never reads an old one.
const NAME_DOMAIN: &[u8] = b"warrant compiled code v1\0";

/// A guest compiled by the engine: a core module or a component.
pub(crate) enum Compiled {
    /// A core module.
    Module(wasmtime::Module),
    /// A component.
    Component(Component),
}

impl Compiled {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Self::Module(module) => module.serialize(),
            Self::Component(component) => component.serialize(),
        }
    }
}

/// Authenticated compiled code in a private directory.
pub struct CompileCache {
    dir: PrivateDir,
    key: hmac::Key,
    hits: AtomicUsize,
    /// [`MAX_ENTRIES`] and [`MAX_TOTAL_BYTES`] (smaller in tests).
    limits: (usize, u64),
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir.path())
            .field("hits", &self.hits)
            .finish_non_exhaustive()
    }
}

/// Feeds what `Hash` writes into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// Open (creating) the cache in `state`.
    pub fn open(state: &State) -> Result<Self, StateError> {
        Ok(Self {
            dir: state.subdir(COMPILED_DIR)?,
            key: state.mac_key(COMPILED_DIR)?,
            hits: AtomicUsize::new(0),
            limits: (MAX_ENTRIES, MAX_TOTAL_BYTES),
        })
    }

    /// The directory (for tests).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// How many guests were found compiled.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// The entry name of `wasm`, of `kind`, compiled by `engine`.
    fn name(engine: &Engine, kind: WasmKind, wasm: &[u8]) -> String {
        let mut fingerprint = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut fingerprint);
        let mut name = Sha256::new();
        name.update(NAME_DOMAIN);
        name.update(fingerprint.0.finalize());
        name.update(kind.as_str().as_bytes());
        name.update([0]);
        name.update(Sha256::digest(wasm));
        hex::encode(name.finalize())
    }

    /// `wasm` compiled, if its entry is there and is exactly what Warrant wrote under its name.
    pub(crate) fn get(&self, engine: &Engine, kind: WasmKind, wasm: &[u8]) -> Option<Compiled> {
        let name = Self::name(engine, kind, wasm);
        let entry = match self.dir.read(&name, MAX_ENTRY_BYTES, Secrecy::Owner) {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!("{e}; compiling afresh");
                return None;
            }
        };
        // An entry: the MAC, then the name and a newline, then the code; the MAC covers all
        // that follows it.
        let (mac, signed) = entry.split_at_checked(MAC_BYTES)?;
        if hmac::verify(&self.key, signed, mac).is_err() {
            tracing::warn!(
                path = %self.dir.path().join(&name).display(),
                "compiled code fails its MAC; compiling afresh"
            );
            return None;
        }
        let code = signed
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"\n"))?;
        match Self::load(engine, kind, code) {
            Ok(compiled) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(compiled)
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "compiled code not loaded; compiling afresh");
                None
            }
        }
    }

    /// INVARIANT (compiled code): the only place compiled code is loaded.
    #[expect(
        unsafe_code,
        reason = "deserializing compiled code is unsafe by contract; see the SAFETY comment"
    )]
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place compiled code is loaded, after its MAC was checked over these bytes"
    )]
    fn load(engine: &Engine, kind: WasmKind, code: &[u8]) -> wasmtime::Result<Compiled> {
        // SAFETY: wasmtime requires that the bytes be what its own `serialize` produced (it
        // checks the version and the engine's configuration itself, but cannot check the
        // machine code). `code` is exactly the bytes `put` wrote under this entry's name: the
        // caller (`get`, above) read the entry once into memory and verified, over these very
        // bytes, an HMAC-SHA256 of the name and the code under a key that lives in, and is
        // readable only through, the user's private state; nothing rereads the file. The
        // name binds the code to the SHA-256 of the guest's bytes and the engine's
        // compatibility fingerprint, so code compiled for another guest never loads here.
        unsafe {
            match kind {
                WasmKind::Module => {
                    wasmtime::Module::deserialize(engine, code).map(Compiled::Module)
                }
                WasmKind::Component => {
                    Component::deserialize(engine, code).map(Compiled::Component)
                }
            }
        }
    }

    /// Keep `compiled`, the compilation of `wasm` by `engine`. Only a saving: a failure is
    /// logged and the next run compiles again.
    pub(crate) fn put(&self, engine: &Engine, kind: WasmKind, wasm: &[u8], compiled: &Compiled) {
        let name = Self::name(engine, kind, wasm);
        let code = match compiled.serialize() {
            Ok(code) => code,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "compiled code not kept");
                return;
            }
        };
        let mut entry = Vec::with_capacity(MAC_BYTES + name.len() + 1 + code.len());
        entry.extend_from_slice(&[0; MAC_BYTES]);
        entry.extend_from_slice(name.as_bytes());
        entry.push(b'\n');
        entry.extend_from_slice(&code);
        let (mac, signed) = entry.split_at_mut(MAC_BYTES);
        mac.copy_from_slice(hmac::sign(&self.key, signed).as_ref());
        if let Err(e) = self.dir.write_atomically(&name, &entry, 0o600, false) {
            tracing::debug!(error = %e, "compiled code not kept");
        }
        self.evict();
    }

    /// Keep the cache within [`MAX_ENTRIES`] and [`MAX_TOTAL_BYTES`]: the entries written
    /// longest ago go first. Only a saving, like the cache itself: nothing here can fail a run.
    fn evict(&self) {
        let Ok(names) = self.dir.names() else {
            return;
        };
        let mut entries: Vec<((i64, i64), u64, String)> = names
            .into_iter()
            .filter_map(|name| {
                let stat = self.dir.stat(&name).ok()??;
                let size = u64::try_from(stat.st_size).unwrap_or(0);
                let written = (
                    stat.st_mtime,
                    i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
                );
                Some((written, size, name))
            })
            .collect();
        let (max_entries, max_bytes) = self.limits;
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        if entries.len() <= max_entries && total <= max_bytes {
            return;
        }
        entries.sort();
        let mut left = entries.len();
        for (_, size, name) in entries {
            if left <= max_entries && total <= max_bytes {
                break;
            }
            if self.dir.remove(&name).is_ok() {
                left = left.saturating_sub(1);
                total = total.saturating_sub(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(engine: &Engine, n: u32) -> (Vec<u8>, Compiled) {
        let wasm = wat::parse_str(format!("(module (func (export \"f{n}\")))")).unwrap();
        let module = wasmtime::Module::new(engine, &wasm).unwrap();
        (wasm, Compiled::Module(module))
    }

    /// Past its bounds the cache drops the entries written longest ago, and keeps finding the
    /// rest.
    #[test]
    fn the_oldest_entries_go_first_past_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let mut cache = CompileCache::open(&state).unwrap();
        cache.limits = (2, u64::MAX);
        let engine = Engine::default();
        let guests: Vec<_> = (0..3).map(|n| module(&engine, n)).collect();
        for (wasm, compiled) in &guests {
            cache.put(&engine, WasmKind::Module, wasm, compiled);
            // Distinct modification times, oldest first.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let found: Vec<bool> = guests
            .iter()
            .map(|(wasm, _)| cache.get(&engine, WasmKind::Module, wasm).is_some())
            .collect();
        assert_eq!(found, [false, true, true]);
        assert_eq!(cache.dir.names().unwrap().len(), 2);
        // A byte bound: one entry's worth keeps only the newest.
        cache.limits = (usize::MAX, 1);
        cache.put(&engine, WasmKind::Module, &guests[0].0, &guests[0].1);
        assert_eq!(
            cache.dir.names().unwrap().len(),
            0,
            "even the newest is over one byte"
        );
    }
}
