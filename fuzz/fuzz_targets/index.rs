//! Image indexes: referrers lists and layout `index.json` files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::ImageIndex;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = ImageIndex::parse(data, "fuzzed index") {
        assert!(index.manifests.len() <= registry_client::limits::MAX_INDEX_ENTRIES);
    }
});
