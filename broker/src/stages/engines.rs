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
    /// The compile cache for the engine built on first use (the one built ahead has its own).
    cache: Mutex<Option<CompileCache>>,
}

struct Building {
    fuel: bool,
    thread: std::thread::JoinHandle<Result<Sandbox, SandboxError>>,
}

impl Engines {
    pub(super) fn start(fuel: bool, cache: Option<CompileCache>) -> Self {
        let building = std::thread::Builder::new()
            .name("warrant-engine".into())
            .spawn(move || Sandbox::configured(fuel, cache))
            .ok()
            .map(|thread| Building { fuel, thread });
        Self {
            metered: OnceLock::new(),
            unmetered: OnceLock::new(),
            building: Mutex::new(building),
            cache: Mutex::new(None),
        }
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
            None => {
                let cache = self.cache.lock().ok().and_then(|mut c| c.take());
                Sandbox::configured(fuel, cache)
            }
        }?;
        Ok(slot.get_or_init(|| Arc::new(built)).clone())
    }
}
