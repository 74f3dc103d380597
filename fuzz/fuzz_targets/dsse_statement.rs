//! DSSE envelopes and in-toto statements: opening an envelope with a key that signed nothing
//! must never succeed, and checking a statement must never panic and must accept only
//! statements whose subjects include the digest.
#![no_main]

use std::sync::OnceLock;

use broker::keys::{PublicKey, SigningKey};
use broker::verify::{Signer, SignerKind};
use libfuzzer_sys::fuzz_target;
use registry_client::Digest;

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("keygen").public_key())
}

fuzz_target!(|data: &[u8]| {
    assert!(broker::attest::open_envelope(data, std::slice::from_ref(key())).is_err());
    let digest = Digest::of(b"the artifact");
    let signer = Signer {
        kind: SignerKind::Key,
        identity: String::new(),
        issuer: "key".into(),
        claims: Default::default(),
    };
    if broker::attest::check_statement(data.to_vec(), &digest, signer).is_ok() {
        let text = std::str::from_utf8(data).expect("an accepted statement is JSON");
        assert!(text.contains(digest.hex()));
    }
});
