//! The broker's engines, built once each, one of them ahead of first use.

use std::sync::{Arc, Mutex, OnceLock};

use super::Error;
use crate::compiled::CompileCache;
use crate::sandbox::{Sandbox, SandboxError};

/// The engines: one metering fuel and one not, each built once, on first use; the one the
/// configuration expects starts building when the broker opens.
pub(super) struct Engines {
    metered: OnceLock<Arc<Sandbox>>,
    unmetered: OnceLock<Arc<Sandbox>>,
    building: Mutex<Option<Building>>,
    /// The compile cache, shared by both engines (its entries are named by the engine's
    /// fingerprint as well as the guest's bytes).
    cache: Option<Arc<CompileCache>>,
}

struct Building {
    fuel: bool,
    thread: std::thread::JoinHandle<Result<Sandbox, SandboxError>>,
}

impl Engines {
    pub(super) fn start(fuel: bool, cache: Option<CompileCache>) -> Self {
        let cache = cache.map(Arc::new);
        let ahead = cache.clone();
        let building = std::thread::Builder::new()
            .name("warrant-engine".into())
            .spawn(move || Sandbox::configured(fuel, ahead))
            .ok()
            .map(|thread| Building { fuel, thread });
        Self {
            metered: OnceLock::new(),
            unmetered: OnceLock::new(),
            building: Mutex::new(building),
            cache,
        }
    }

    /// The compile cache the engines share, if there is one.
    pub(super) fn cache(&self) -> Option<Arc<CompileCache>> {
        self.cache.clone()
    }

    /// The engine metering fuel when `fuel`: the one built ahead if it is that one, else one
    /// built now.
    pub(super) fn get(&self, fuel: bool) -> Result<Arc<Sandbox>, Error> {
        let slot = if fuel { &self.metered } else { &self.unmetered };
        if let Some(sandbox) = slot.get() {
            return Ok(sandbox.clone());
        }
        let mut building = self
            .building
            .lock()
            .map_err(|_| SandboxError::Engine("the engine lock is poisoned".into()))?;
        if let Some(sandbox) = slot.get() {
            return Ok(sandbox.clone());
        }
        let built = match building.take_if(|b| b.fuel == fuel) {
            Some(b) => b.thread.join().unwrap_or_else(|_| {
                Err(SandboxError::Engine("building the engine panicked".into()))
            }),
            None => Sandbox::configured(fuel, self.cache.clone()),
        }?;
        Ok(slot.get_or_init(|| Arc::new(built)).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine built on demand, for the fuel mode not built ahead, keeps compiled code in
    /// the same compile cache as the one built ahead.
    #[test]
    fn both_engines_use_the_compile_cache() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::State::open(&dir.path().join("data")).unwrap();
        let engines = Engines::start(false, Some(CompileCache::open(&state).unwrap()));
        for fuel in [true, false] {
            let sandbox = engines.get(fuel).unwrap();
            assert_eq!(sandbox.compile_cache_hits(), Some(0), "fuel: {fuel}");
        }
    }
}
