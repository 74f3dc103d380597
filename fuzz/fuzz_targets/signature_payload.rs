//! cosign simple-signing payloads: the check must never panic, and must accept a payload only
//! when it names exactly the digest being verified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::Digest;

fuzz_target!(|data: &[u8]| {
    let digest = Digest::of(b"the artifact");
    if broker::cosign::check_payload(data, &digest).is_ok() {
        let text = std::str::from_utf8(data).expect("an accepted payload is JSON, so UTF-8");
        assert!(text.contains(&digest.to_string()));
    }
});
