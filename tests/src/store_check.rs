//! Assertions on a Warrant store's files: nothing unverified may ever be in it.

use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Every file under `blobs/sha256` hashes to its own name and the quarantine is empty.
/// Returns the blob names, sorted.
pub fn assert_store_clean(store: &Path) -> Vec<String> {
    let blobs = store.join("blobs").join("sha256");
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&blobs) {
        for entry in entries {
            let entry = entry.expect("read blobs dir");
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).expect("read blob");
            let actual = hex::encode(Sha256::digest(&bytes));
            assert_eq!(
                actual, name,
                "store blob `{name}` does not hash to its name"
            );
            names.push(name);
        }
    }
    let quarantine = store.join(".warrant").join("tmp");
    if let Ok(entries) = std::fs::read_dir(&quarantine) {
        let left: Vec<_> = entries.map(|e| e.expect("entry").file_name()).collect();
        assert!(left.is_empty(), "quarantine not empty: {left:?}");
    }
    names.sort();
    names
}

/// The digests `index.json` lists.
pub fn index_digests(store: &Path) -> Vec<String> {
    let bytes = std::fs::read(store.join("index.json")).expect("index.json");
    let index: serde_json::Value = serde_json::from_slice(&bytes).expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .map(|d| d["digest"].as_str().expect("digest").to_owned())
        .collect()
}
