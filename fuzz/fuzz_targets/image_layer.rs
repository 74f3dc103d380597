//! Image layers as a registry or containerd sends them: the module read out of a tar (plain or
//! gzip). Must never panic, whatever the bytes, and never return more than the file limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::image_layer::{Compression, Limits, extract};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_file_bytes: 64 * 1024,
        max_layer_bytes: 1024 * 1024,
    };
    for compression in [Compression::None, Compression::Gzip] {
        if let Ok(module) = extract(data, compression, "/app.wasm", limits) {
            assert!(module.len() as u64 <= limits.max_file_bytes);
        }
    }
});
