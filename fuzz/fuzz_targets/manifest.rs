//! Manifests as a registry sends them: parse, then check for a Wasm artifact. Must never
//! panic, whatever the bytes; an accepted manifest has exactly one layer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::{ImageManifest, WasmManifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = ImageManifest::parse(data) {
        if let Ok(wasm) = WasmManifest::new(manifest) {
            assert_eq!(wasm.manifest().layers.len(), 1);
            let _ = wasm.layer();
        }
    }
});
