//! Sigstore bundles through Warrant's whole bundle-verification path (size and depth checks,
//! parsing, verification against the public-good root): never a panic, never a success for
//! bytes that Sigstore did not make for this identity and digest.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use broker::verify::{
    BlobInput, SignerRequirement, TrustedRoot, load_trusted_root, verify_bundle_text,
};
use libfuzzer_sys::fuzz_target;
use registry_client::Digest;

fuzz_target!(|data: &[u8]| {
    static ROOT: OnceLock<TrustedRoot> = OnceLock::new();
    let root = ROOT.get_or_init(|| load_trusted_root(None).expect("embedded root"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let requirement = SignerRequirement::Identity {
        identity: "nobody@example.com".into(),
        issuer: "https://example.com".into(),
    };
    let input = BlobInput::Digest(Digest::of(b"the artifact"));
    assert!(verify_bundle_text(text, Path::new("fuzz"), &input, &requirement, root).is_err());
});
