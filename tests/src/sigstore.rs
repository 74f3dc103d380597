//! A private Sigstore instance, in process, that mints keyless signatures offline.
//!
//! [`PrivateSigstore`] plays the three public services a keyless signature depends on:
//!
//! - **Fulcio**: a self-signed P-256 root CA issues a short-lived leaf certificate for a
//!   fresh, ephemeral P-256 key per signature, with the identity in the SAN and the OIDC
//!   issuer (and any CI claims) in Fulcio's extensions under `1.3.6.1.4.1.57264.1`.
//! - **CT log**: the leaf carries an embedded SCT (RFC 6962 precertificate entry), signed by
//!   the instance's CT log key.
//! - **Rekor (v1)**: every signature is appended to the instance's own Merkle tree as a
//!   `hashedrekord` or `dsse` `0.0.1` entry; the bundle carries the Signed Entry Timestamp and
//!   an inclusion proof against a signed checkpoint for the tree just after the append.
//!
//! [`PrivateSigstore::trusted_root_json`] is the `trusted_root.json` that makes a verifier
//! trust exactly this instance. Every instance has fresh random keys, so two instances are
//! two unrelated trust roots, and none is trusted by the public-good root.
//!
//! Nothing here touches the network or the clock beyond reading [`SystemTime::now`].

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, UtcTime,
};
use x509_cert::der::{Encode as _, Tag};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// Media type of the bundles minted here (Sigstore bundle v0.3).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Media type of [`PrivateSigstore::trusted_root_json`].
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Fulcio's legacy OIDC issuer extension (raw bytes).
pub const OID_FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Fulcio's OIDC issuer extension (DER UTF8String).
pub const OID_FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Fulcio's source repository URI claim (DER UTF8String).
pub const OID_SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";

/// Start of every validity window this instance publishes: 2000-01-01T00:00:00Z. Wide on
/// purpose, so a test can backdate a certificate and have it fail on the certificate's own
/// validity, not on the trust root's.
const TRUST_START_UNIX: i64 = 946_684_800;
const TRUST_START_RFC3339: &str = "2000-01-01T00:00:00Z";
/// End of the root CA certificate's validity: 2049-12-31T23:59:59Z (the last UTCTime).
const ROOT_NOT_AFTER_UNIX: i64 = 2_524_607_999;
/// First second that RFC 5280 requires to be encoded as GeneralizedTime (2050-01-01).
const GENERALIZED_TIME_FROM: i64 = 2_524_608_000;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_CT_PRECERT_SCTS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// What the leaf certificate of one signature asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The SAN: a URI if it contains `://`, else an email address (rfc822Name).
    pub identity: String,
    /// The OIDC issuer, written like Fulcio does: DER UTF8String in
    /// `1.3.6.1.4.1.57264.1.8` and raw bytes in the legacy `1.3.6.1.4.1.57264.1.1`.
    pub issuer: String,
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// More non-critical extensions: dotted OID and a value written as a DER UTF8String,
    /// e.g. the GitHub CI claim [`OID_SOURCE_REPOSITORY_URI`].
    pub extra_extensions: Vec<(String, String)>,
}

impl CertSpec {
    /// A Fulcio-like ten-minute certificate: valid from a minute ago to ten minutes from now.
    pub fn new(identity: &str, issuer: &str) -> Self {
        let now = unix_now();
        Self {
            identity: identity.to_owned(),
            issuer: issuer.to_owned(),
            not_before: now - 60,
            not_after: now + 600,
            extra_extensions: Vec::new(),
        }
    }

    /// Add an extension (dotted OID, value as DER UTF8String).
    pub fn with_extension(mut self, oid: &str, value: &str) -> Self {
        self.extra_extensions
            .push((oid.to_owned(), value.to_owned()));
        self
    }

    /// Replace the validity window (unix seconds).
    pub fn with_validity(mut self, not_before: i64, not_after: i64) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// One keyless signature and everything a verifier (or cosign) would be handed with it.
#[derive(Debug, Clone)]
pub struct Keyless {
    /// The leaf signing certificate, PEM.
    pub cert_pem: String,
    /// The leaf signing certificate, DER.
    pub cert_der: Vec<u8>,
    /// ECDSA P-256 (SHA-256) signature, DER: over the message for
    /// [`PrivateSigstore::sign_message`], over the DSSE PAE for [`PrivateSigstore::sign_dsse`].
    pub signature: Vec<u8>,
    /// A complete Sigstore bundle v0.3 ([`BUNDLE_MEDIA_TYPE`]).
    pub bundle: Value,
    /// `bundle.verificationMaterial.tlogEntries[0]` on its own.
    pub tlog_entry: Value,
    /// The `dev.sigstore.cosign/bundle` annotation cosign writes on a keyless legacy `.sig`
    /// layer: `{"SignedEntryTimestamp":…,"Payload":{"body":…,"integratedTime":…,
    /// "logIndex":…,"logID":…}}`.
    pub cosign_bundle_annotation: String,
    /// Position of the entry in the instance's log.
    pub log_index: u64,
    /// When the log integrated the entry, unix seconds.
    pub integrated_time: i64,
    /// The entry's canonicalized body (canonical JSON, not base64).
    pub canonicalized_body: Vec<u8>,
    /// The Signed Entry Timestamp (inclusion promise), DER ECDSA.
    pub signed_entry_timestamp: Vec<u8>,
}

impl Keyless {
    /// The bundle as JSON text, as it would be stored in a `.sigstore.json` file.
    pub fn bundle_json(&self) -> String {
        self.bundle.to_string()
    }
}

/// A P-256 key and the SHA-256 of its SubjectPublicKeyInfo (its log ID / key ID).
struct LogKey {
    key: EcdsaKeyPair,
    spki_der: Vec<u8>,
    id: [u8; 32],
}

impl LogKey {
    fn generate(rng: &SystemRandom) -> Self {
        let key = generate_key(rng);
        let spki_der = spki_der(key.public_key().as_ref());
        let id = sha256(&spki_der);
        Self { key, spki_der, id }
    }
}

/// A private Sigstore: root CA, CT log and transparency log, with fresh keys.
pub struct PrivateSigstore {
    rng: SystemRandom,
    root_key: EcdsaKeyPair,
    root_name: Name,
    root_spki_der: Vec<u8>,
    root_key_id: Vec<u8>,
    root_cert_der: Vec<u8>,
    ct: LogKey,
    tlog: LogKey,
    /// First line of every checkpoint.
    origin: String,
    /// The log's leaves, in order: canonicalized entry bodies.
    leaves: Vec<Vec<u8>>,
    /// RFC 6962 leaf hashes of `leaves`.
    leaf_hashes: Vec<[u8; 32]>,
}

impl Default for PrivateSigstore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PrivateSigstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateSigstore")
            .field("origin", &self.origin)
            .field("ct_log_id", &hex::encode(self.ct.id))
            .field("tlog_log_id", &hex::encode(self.tlog.id))
            .field("entries", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

impl PrivateSigstore {
    /// A new instance with fresh random keys and an empty log.
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let root_key = generate_key(&rng);
        let root_spki_der = spki_der(root_key.public_key().as_ref());
        let root_key_id = key_identifier(root_key.public_key().as_ref());
        let root_name = Name::from_str("CN=warrant-test-fulcio-root,O=warrant.test")
            .expect("root CA name parses");
        let ct = LogKey::generate(&rng);
        let tlog = LogKey::generate(&rng);
        let tree_id = u64::from_be_bytes(tlog.id[..8].try_into().expect("8 bytes"));
        let origin = format!("{} - {tree_id}", Self::TLOG_NAME);

        let mut extensions = vec![
            extension(
                OID_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            ),
            extension(
                OID_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            ),
        ];
        extensions.push(extension(
            OID_SUBJECT_KEY_ID,
            false,
            &SubjectKeyIdentifier(OctetString::new(root_key_id.clone()).expect("SKI")),
        ));
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: random_serial(&rng),
            signature: ecdsa_sha256_algorithm(),
            issuer: root_name.clone(),
            validity: validity(TRUST_START_UNIX, ROOT_NOT_AFTER_UNIX),
            subject: root_name.clone(),
            subject_public_key_info: spki(root_key.public_key().as_ref()),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let root_cert_der = sign_tbs(tbs, &root_key, &rng);

        Self {
            rng,
            root_key,
            root_name,
            root_spki_der,
            root_key_id,
            root_cert_der,
            ct,
            tlog,
            origin,
            leaves: Vec::new(),
            leaf_hashes: Vec::new(),
        }
    }

    /// Name of the transparency log, on the checkpoint's signature line.
    pub const TLOG_NAME: &str = "rekor.warrant.test";

    /// The `trusted_root.json` that trusts this instance, and only it: one tlog, one
    /// certificate authority (the root CA), one CT log, no timestamp authorities.
    pub fn trusted_root_json(&self) -> String {
        let public_key = |spki_der: &[u8]| {
            json!({
                "rawBytes": B64.encode(spki_der),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": TRUST_START_RFC3339},
            })
        };
        json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [{
                "baseUrl": "https://rekor.warrant.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": public_key(&self.tlog.spki_der),
                "logId": {"keyId": B64.encode(self.tlog.id)},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "warrant.test", "commonName": "warrant-test-fulcio-root"},
                "uri": "https://fulcio.warrant.test",
                "certChain": {"certificates": [{"rawBytes": B64.encode(&self.root_cert_der)}]},
                "validFor": {"start": TRUST_START_RFC3339},
            }],
            "ctlogs": [{
                "baseUrl": "https://ctfe.warrant.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": public_key(&self.ct.spki_der),
                "logId": {"keyId": B64.encode(self.ct.id)},
            }],
            "timestampAuthorities": [],
        })
        .to_string()
    }

    /// The root CA certificate, DER.
    pub fn root_cert_der(&self) -> &[u8] {
        &self.root_cert_der
    }

    /// The root CA certificate, PEM.
    pub fn root_cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.root_cert_der)
    }

    /// The transparency log's public key, SubjectPublicKeyInfo DER.
    pub fn tlog_public_key_der(&self) -> &[u8] {
        &self.tlog.spki_der
    }

    /// The transparency log's public key, PEM (what `cosign --rekor-public-key` reads).
    pub fn tlog_public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.tlog.spki_der)
    }

    /// The transparency log's ID: SHA-256 of its public key's SubjectPublicKeyInfo.
    pub fn tlog_log_id(&self) -> [u8; 32] {
        self.tlog.id
    }

    /// The CT log's public key, SubjectPublicKeyInfo DER.
    pub fn ct_public_key_der(&self) -> &[u8] {
        &self.ct.spki_der
    }

    /// The CT log's ID: SHA-256 of its public key's SubjectPublicKeyInfo.
    pub fn ct_log_id(&self) -> [u8; 32] {
        self.ct.id
    }

    /// Every entry logged so far (canonicalized bodies), in log order.
    pub fn log_entries(&self) -> &[Vec<u8>] {
        &self.leaves
    }

    /// Sign `message` keylessly: a fresh key, a certificate for `spec`, and a
    /// `hashedrekord` `0.0.1` entry over `sha256(message)`.
    pub fn sign_message(&mut self, message: &[u8], spec: &CertSpec) -> Keyless {
        let key = generate_key(&self.rng);
        self.sign_message_with(message, spec, &key)
    }

    /// [`Self::sign_message`] with a caller-chosen signing key (the certificate certifies it).
    pub fn sign_message_with(
        &mut self,
        message: &[u8],
        spec: &CertSpec,
        key: &EcdsaKeyPair,
    ) -> Keyless {
        let cert_der = self.issue_leaf(spec, key.public_key().as_ref());
        let cert_pem = pem("CERTIFICATE", &cert_der);
        let signature = key
            .sign(&self.rng, message)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec();
        let digest = sha256(message);
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(digest)}},
                "signature": {
                    "content": B64.encode(&signature),
                    "publicKey": {"content": B64.encode(cert_pem.as_bytes())},
                },
            },
        });
        let content = json!({
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(digest)},
                "signature": B64.encode(&signature),
            }
        });
        self.finish(
            "hashedrekord",
            &body,
            cert_der,
            cert_pem,
            signature,
            content,
        )
    }

    /// Sign a DSSE envelope keylessly: a fresh key signs the PAE of (`payload_type`,
    /// `payload`), and a `dsse` `0.0.1` entry records the payload hash, the signature and
    /// the certificate.
    pub fn sign_dsse(&mut self, payload_type: &str, payload: &[u8], spec: &CertSpec) -> Keyless {
        let key = generate_key(&self.rng);
        let cert_der = self.issue_leaf(spec, key.public_key().as_ref());
        let cert_pem = pem("CERTIFICATE", &cert_der);
        let signature = key
            .sign(&self.rng, &pae(payload_type, payload))
            .expect("ECDSA signing")
            .as_ref()
            .to_vec();
        let envelope = json!({
            "payload": B64.encode(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": B64.encode(&signature), "keyid": ""}],
        });
        // Rekor hashes the envelope as submitted; verifiers cannot reproduce those bytes and
        // do not check this hash, so the canonical form stands in for them.
        let envelope_bytes = canonical_json(&envelope);
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode(sha256(&envelope_bytes))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(sha256(payload))},
                "signatures": [{
                    "signature": B64.encode(&signature),
                    "verifier": B64.encode(cert_pem.as_bytes()),
                }],
            },
        });
        let content = json!({ "dsseEnvelope": envelope });
        self.finish("dsse", &body, cert_der, cert_pem, signature, content)
    }

    /// Log `body`, then assemble the bundle around `content` (`messageSignature` or
    /// `dsseEnvelope`).
    fn finish(
        &mut self,
        kind: &str,
        body: &Value,
        cert_der: Vec<u8>,
        cert_pem: String,
        signature: Vec<u8>,
        content: Value,
    ) -> Keyless {
        let logged = self.append(kind, body);
        let mut bundle = json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": B64.encode(&cert_der)},
                "tlogEntries": [logged.entry.clone()],
            },
        });
        for (key, value) in content.as_object().expect("content is an object") {
            bundle[key] = value.clone();
        }
        let cosign_bundle_annotation = format!(
            r#"{{"SignedEntryTimestamp":"{}","Payload":{{"body":"{}","integratedTime":{},"logIndex":{},"logID":"{}"}}}}"#,
            B64.encode(&logged.set),
            B64.encode(&logged.body),
            logged.integrated_time,
            logged.index,
            hex::encode(self.tlog.id),
        );
        Keyless {
            cert_pem,
            cert_der,
            signature,
            bundle,
            tlog_entry: logged.entry,
            cosign_bundle_annotation,
            log_index: logged.index,
            integrated_time: logged.integrated_time,
            canonicalized_body: logged.body,
            signed_entry_timestamp: logged.set,
        }
    }

    /// Append `body` (canonicalized) to the log: SET, inclusion proof and checkpoint for the
    /// tree just after the append.
    fn append(&mut self, kind: &str, body: &Value) -> Logged {
        let body = canonical_json(body);
        let index = self.leaves.len();
        self.leaf_hashes.push(leaf_hash(&body));
        self.leaves.push(body.clone());
        let tree_size = self.leaves.len();
        let root = merkle_root(&self.leaf_hashes);
        let hashes: Vec<String> = inclusion_path(index, &self.leaf_hashes)
            .iter()
            .map(|h| B64.encode(h))
            .collect();
        let integrated_time = unix_now();
        let index = u64::try_from(index).expect("log index fits u64");

        // The SET: the log key's signature over the canonical JSON of these four fields.
        let promise = canonical_json(&json!({
            "body": B64.encode(&body),
            "integratedTime": integrated_time,
            "logID": hex::encode(self.tlog.id),
            "logIndex": index,
        }));
        let set = self.tlog_sign(&promise);

        // The checkpoint: a signed note, key hint = first four bytes of the log ID.
        let note = format!("{}\n{tree_size}\n{}\n", self.origin, B64.encode(root));
        let mut hinted = self.tlog.id[..4].to_vec();
        hinted.extend(self.tlog_sign(note.as_bytes()));
        let checkpoint = format!(
            "{note}\n\u{2014} {} {}\n",
            Self::TLOG_NAME,
            B64.encode(&hinted)
        );

        let entry = json!({
            "logIndex": index.to_string(),
            "logId": {"keyId": B64.encode(self.tlog.id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": B64.encode(&set)},
            "inclusionProof": {
                "logIndex": index.to_string(),
                "rootHash": B64.encode(root),
                "treeSize": tree_size.to_string(),
                "hashes": hashes,
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": B64.encode(&body),
        });
        Logged {
            entry,
            body,
            set,
            index,
            integrated_time,
        }
    }

    fn tlog_sign(&self, message: &[u8]) -> Vec<u8> {
        self.tlog
            .key
            .sign(&self.rng, message)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec()
    }

    /// Issue a leaf certificate for the P-256 point `public_key`, with an embedded SCT.
    fn issue_leaf(&self, spec: &CertSpec, public_key: &[u8]) -> Vec<u8> {
        let identity = Ia5String::new(&spec.identity).expect("identity is IA5 (ASCII)");
        let san = if spec.identity.contains("://") {
            GeneralName::UniformResourceIdentifier(identity)
        } else {
            GeneralName::Rfc822Name(identity)
        };
        let mut extensions = vec![
            extension(
                OID_KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            ),
            extension(
                OID_EXT_KEY_USAGE,
                false,
                &ExtendedKeyUsage(vec![OID_KP_CODE_SIGNING]),
            ),
            extension(
                OID_BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            ),
            extension(
                OID_SUBJECT_KEY_ID,
                false,
                &SubjectKeyIdentifier(OctetString::new(key_identifier(public_key)).expect("SKI")),
            ),
            extension(
                OID_AUTHORITY_KEY_ID,
                false,
                &AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(self.root_key_id.clone()).expect("AKI")),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
            ),
            extension(OID_SUBJECT_ALT_NAME, true, &SubjectAltName(vec![san])),
            raw_extension(
                ObjectIdentifier::new_unwrap(OID_FULCIO_ISSUER_V1),
                spec.issuer.as_bytes().to_vec(),
            ),
            utf8_extension(
                ObjectIdentifier::new_unwrap(OID_FULCIO_ISSUER_V2),
                &spec.issuer,
            ),
        ];
        for (oid, value) in &spec.extra_extensions {
            let oid = ObjectIdentifier::new(oid)
                .unwrap_or_else(|e| panic!("extension OID `{oid}` is not dotted decimal: {e}"));
            extensions.push(utf8_extension(oid, value));
        }
        let mut tbs = TbsCertificate {
            version: Version::V3,
            serial_number: random_serial(&self.rng),
            signature: ecdsa_sha256_algorithm(),
            issuer: self.root_name.clone(),
            validity: validity(spec.not_before, spec.not_after),
            subject: Name::default(),
            subject_public_key_info: spki(public_key),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };

        // The precertificate is this TBS without the SCT extension; the CT log signs it.
        let precert_tbs = tbs.to_der().expect("precertificate TBS encodes");
        let sct_timestamp_ms = u64::try_from(spec.not_before.max(0)).expect("non-negative") * 1000;
        let sct = self.sct(sct_timestamp_ms, &precert_tbs);
        let sct_list_der = OctetString::new(sct)
            .expect("SCT list")
            .to_der()
            .expect("SCT list encodes");
        tbs.extensions
            .as_mut()
            .expect("extensions present")
            .push(raw_extension(OID_CT_PRECERT_SCTS, sct_list_der));

        sign_tbs(tbs, &self.root_key, &self.rng)
    }

    /// A TLS-encoded `SignedCertificateTimestampList` with one v1 SCT over the RFC 6962
    /// precertificate entry for `precert_tbs`, issued by this instance's root CA.
    fn sct(&self, timestamp_ms: u64, precert_tbs: &[u8]) -> Vec<u8> {
        let tbs_len = u32::try_from(precert_tbs.len()).expect("TBS length");
        assert!(tbs_len < 1 << 24, "TBS too long for a uint24");
        let mut signed = vec![0u8, 0u8]; // version v1, signature_type certificate_timestamp
        signed.extend(timestamp_ms.to_be_bytes());
        signed.extend(1u16.to_be_bytes()); // entry_type precert_entry
        signed.extend(sha256(&self.root_spki_der)); // issuer_key_hash
        signed.extend(&tbs_len.to_be_bytes()[1..]);
        signed.extend(precert_tbs);
        signed.extend(0u16.to_be_bytes()); // no CT extensions
        let signature = self
            .ct
            .key
            .sign(&self.rng, &signed)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec();

        let mut sct = vec![0u8]; // v1
        sct.extend(self.ct.id);
        sct.extend(timestamp_ms.to_be_bytes());
        sct.extend(0u16.to_be_bytes()); // no CT extensions
        sct.extend([4u8, 3u8]); // sha256, ecdsa
        sct.extend(
            u16::try_from(signature.len())
                .expect("sig len")
                .to_be_bytes(),
        );
        sct.extend(signature);

        let sct_len = u16::try_from(sct.len()).expect("SCT length");
        let mut list = (sct_len + 2).to_be_bytes().to_vec();
        list.extend(sct_len.to_be_bytes());
        list.extend(sct);
        list
    }
}

/// What [`PrivateSigstore::append`] produced.
struct Logged {
    entry: Value,
    body: Vec<u8>,
    set: Vec<u8>,
    index: u64,
    integrated_time: i64,
}

/// The DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto Statement v1 with one subject (`name`, `sha256:<hex>`) and an empty predicate
/// of `predicate_type`: the payload for [`PrivateSigstore::sign_dsse`] with
/// [`IN_TOTO_PAYLOAD_TYPE`].
pub fn in_toto_statement(name: &str, sha256_hex: &str, predicate_type: &str) -> Vec<u8> {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": sha256_hex}}],
        "predicateType": predicate_type,
        "predicate": {},
    })
    .to_string()
    .into_bytes()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit i64")
}

fn canonical_json(value: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(value).expect("JSON canonicalizes")
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn generate_key(rng: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
        .expect("P-256 key generation");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), rng)
        .expect("P-256 key parses")
}

/// SubjectPublicKeyInfo of an uncompressed P-256 point.
fn spki(point: &[u8]) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(Any::from(&OID_P256)),
        },
        subject_public_key: BitString::from_bytes(point).expect("public key bits"),
    }
}

fn spki_der(point: &[u8]) -> Vec<u8> {
    spki(point).to_der().expect("SPKI encodes")
}

/// A key identifier for SKI/AKI: the leftmost 160 bits of SHA-256 of the key (RFC 7093).
fn key_identifier(point: &[u8]) -> Vec<u8> {
    sha256(point)[..20].to_vec()
}

fn ecdsa_sha256_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: OID_ECDSA_SHA256,
        parameters: None,
    }
}

fn random_serial(rng: &SystemRandom) -> SerialNumber {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).expect("random serial");
    bytes[0] = (bytes[0] & 0x7f) | 0x40; // positive, no leading zero
    SerialNumber::new(&bytes).expect("serial number")
}

fn time(unix: i64) -> Time {
    let duration = Duration::from_secs(u64::try_from(unix).expect("certificate time after 1970"));
    if unix < GENERALIZED_TIME_FROM {
        Time::UtcTime(UtcTime::from_unix_duration(duration).expect("UTCTime"))
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(duration).expect("GeneralizedTime"))
    }
}

fn validity(not_before: i64, not_after: i64) -> Validity {
    Validity {
        not_before: time(not_before),
        not_after: time(not_after),
    }
}

fn extension(
    oid: ObjectIdentifier,
    critical: bool,
    value: &impl x509_cert::der::Encode,
) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().expect("extension value encodes"))
            .expect("extension value"),
    }
}

fn raw_extension(oid: ObjectIdentifier, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value).expect("extension value"),
    }
}

fn utf8_extension(oid: ObjectIdentifier, value: &str) -> Extension {
    let der = Any::new(Tag::Utf8String, value.as_bytes())
        .expect("UTF8String")
        .to_der()
        .expect("UTF8String encodes");
    raw_extension(oid, der)
}

/// Sign `tbs` with `key` (ECDSA P-256 SHA-256) and return the certificate's DER.
fn sign_tbs(tbs: TbsCertificate, key: &EcdsaKeyPair, rng: &SystemRandom) -> Vec<u8> {
    let tbs_der = tbs.to_der().expect("TBS encodes");
    let signature = key.sign(rng, &tbs_der).expect("ECDSA signing");
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256_algorithm(),
        signature: BitString::from_bytes(signature.as_ref()).expect("signature bits"),
    }
    .to_der()
    .expect("certificate encodes")
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// RFC 6962 Merkle tree hashing, over leaf hashes.

fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (`n > 1`).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]) of RFC 6962 §2.1, given the leaf hashes.
fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => sha256(b""),
        [only] => *only,
        _ => {
            let k = split_point(leaves.len());
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) of RFC 6962 §2.1.1: the audit path of leaf `m`, leaf side first.
fn inclusion_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split_point(leaves.len());
    let (mut path, sibling) = if m < k {
        (inclusion_path(m, &leaves[..k]), merkle_root(&leaves[k..]))
    } else {
        (
            inclusion_path(m - k, &leaves[k..]),
            merkle_root(&leaves[..k]),
        )
    };
    path.push(sibling);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigstore_verify::trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, TrustedRoot};
    use sigstore_verify::types::{Artifact, Bundle, Sha256Hash};
    use sigstore_verify::{
        Error, SubjectAltName, VerificationPolicy, VerificationResult, Verifier,
    };

    const EMAIL: &str = "release-bot@warrant.test";
    const EMAIL_ISSUER: &str = "https://accounts.warrant.test";
    const WORKFLOW: &str =
        "https://github.com/warrant-test/guest/.github/workflows/release.yml@refs/heads/main";
    const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
    const REPO: &str = "https://github.com/warrant-test/guest";

    fn verifier(instance: &PrivateSigstore) -> Verifier {
        let root =
            TrustedRoot::from_json(&instance.trusted_root_json()).expect("trusted root parses");
        Verifier::new(&root).expect("verifier accepts the trusted root")
    }

    fn bundle(signed: &Keyless) -> Bundle {
        Bundle::from_json(&signed.bundle_json()).expect("bundle parses")
    }

    fn assert_fully_verified(result: &VerificationResult, identity: &str, issuer: &str) {
        assert_eq!(
            result.identity().map(SubjectAltName::as_str),
            Some(identity)
        );
        assert_eq!(result.issuer(), Some(issuer));
        assert!(result.certificate_verified(), "certificate not verified");
        assert!(result.sct_verified(), "SCT not verified");
        assert!(result.tlog_verified(), "tlog not verified");
        assert!(result.identity_policy_checked());
    }

    #[test]
    fn message_signature_verifies_over_bytes_and_digest() {
        let mut instance = PrivateSigstore::new();
        let message = b"a wasm component, say";
        let signed = instance.sign_message(message, &CertSpec::new(EMAIL, EMAIL_ISSUER));
        let verifier = verifier(&instance);
        let bundle = bundle(&signed);
        let policy = VerificationPolicy::new(EMAIL, EMAIL_ISSUER);

        let result = verifier
            .verify(message, &bundle, &policy)
            .expect("message bundle verifies over the bytes");
        assert_fully_verified(&result, EMAIL, EMAIL_ISSUER);
        assert!(matches!(result.identity(), Some(SubjectAltName::Email(_))));
        assert_eq!(
            result.integrated_time().map(|t| t.as_second()),
            Some(signed.integrated_time)
        );

        let digest = Sha256Hash::new(sha256(message));
        let result = verifier
            .verify(Artifact::from_digest(digest), &bundle, &policy)
            .expect("message bundle verifies over the digest");
        assert_fully_verified(&result, EMAIL, EMAIL_ISSUER);
    }

    #[test]
    fn uri_identity_and_ci_claims_verify() {
        let mut instance = PrivateSigstore::new();
        let spec =
            CertSpec::new(WORKFLOW, GITHUB_ISSUER).with_extension(OID_SOURCE_REPOSITORY_URI, REPO);
        let signed = instance.sign_message(b"guest.wasm", &spec);
        let result = verifier(&instance)
            .verify(
                b"guest.wasm",
                &bundle(&signed),
                &VerificationPolicy::new(WORKFLOW, GITHUB_ISSUER),
            )
            .expect("URI-identity bundle verifies");
        assert_fully_verified(&result, WORKFLOW, GITHUB_ISSUER);
        assert!(matches!(result.identity(), Some(SubjectAltName::Uri(_))));
        let claims = &result.certificate().expect("certificate info").ci_claims;
        assert_eq!(claims.source_repository_uri.as_deref(), Some(REPO));
    }

    #[test]
    fn dsse_statement_verifies_over_subject_digest() {
        let mut instance = PrivateSigstore::new();
        let artifact = b"the attested artifact";
        let digest = sha256(artifact);
        let statement = in_toto_statement(
            "guest.wasm",
            &hex::encode(digest),
            "https://slsa.dev/provenance/v1",
        );
        let signed = instance.sign_dsse(
            IN_TOTO_PAYLOAD_TYPE,
            &statement,
            &CertSpec::new(WORKFLOW, GITHUB_ISSUER),
        );
        assert!(signed.bundle.get("dsseEnvelope").is_some());
        assert!(signed.bundle.get("messageSignature").is_none());
        let verifier = verifier(&instance);
        let bundle = bundle(&signed);
        let policy = VerificationPolicy::new(WORKFLOW, GITHUB_ISSUER);

        let result = verifier
            .verify(
                Artifact::from_digest(Sha256Hash::new(digest)),
                &bundle,
                &policy,
            )
            .expect("DSSE bundle verifies over the subject digest");
        assert_fully_verified(&result, WORKFLOW, GITHUB_ISSUER);
        let result = verifier
            .verify(artifact, &bundle, &policy)
            .expect("DSSE bundle verifies over the subject bytes");
        assert_fully_verified(&result, WORKFLOW, GITHUB_ISSUER);
    }

    /// Each failure, with the error it must be (so a bundle broken for another reason does not
    /// pass for a correct rejection).
    fn assert_rejections(
        instance: &PrivateSigstore,
        signed: &Keyless,
        artifact: &[u8],
        identity: &str,
        issuer: &str,
    ) {
        let bundle = bundle(signed);
        let policy = VerificationPolicy::new(identity, issuer);
        verifier(instance)
            .verify(artifact, &bundle, &policy)
            .expect("control: the genuine bundle verifies");

        let production =
            TrustedRoot::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT).expect("production root");
        let err = Verifier::new(&production)
            .expect("production verifier")
            .verify(artifact, &bundle, &policy)
            .expect_err("a private bundle must not verify against the production root");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "production root: {err:?}"
        );

        let stranger = PrivateSigstore::new();
        let err = verifier(&stranger)
            .verify(artifact, &bundle, &policy)
            .expect_err("a bundle must not verify against another instance's root");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "other instance: {err:?}"
        );

        let err = verifier(instance)
            .verify(
                artifact,
                &bundle,
                &VerificationPolicy::new("mallory@warrant.test", issuer),
            )
            .expect_err("wrong identity");
        assert!(
            matches!(err, Error::IdentityMismatch { .. }),
            "wrong identity: {err:?}"
        );

        let err = verifier(instance)
            .verify(
                artifact,
                &bundle,
                &VerificationPolicy::new(identity, "https://evil.example"),
            )
            .expect_err("wrong issuer");
        assert!(
            matches!(err, Error::IssuerMismatch { .. }),
            "wrong issuer: {err:?}"
        );

        let err = verifier(instance)
            .verify(b"other bytes".as_slice(), &bundle, &policy)
            .expect_err("other bytes");
        assert!(
            matches!(err, Error::ArtifactMismatch(_)),
            "other bytes: {err:?}"
        );
    }

    #[test]
    fn message_signature_rejections() {
        let mut instance = PrivateSigstore::new();
        let signed = instance.sign_message(b"payload", &CertSpec::new(EMAIL, EMAIL_ISSUER));
        assert_rejections(&instance, &signed, b"payload", EMAIL, EMAIL_ISSUER);
    }

    #[test]
    fn dsse_rejections() {
        let mut instance = PrivateSigstore::new();
        let artifact = b"attested";
        let statement =
            in_toto_statement("a", &hex::encode(sha256(artifact)), "https://example.com/p");
        let signed = instance.sign_dsse(
            IN_TOTO_PAYLOAD_TYPE,
            &statement,
            &CertSpec::new(WORKFLOW, GITHUB_ISSUER),
        );
        assert_rejections(&instance, &signed, artifact, WORKFLOW, GITHUB_ISSUER);
    }

    #[test]
    fn certificate_expired_before_integration_fails() {
        let mut instance = PrivateSigstore::new();
        let now = unix_now();
        let spec = CertSpec::new(EMAIL, EMAIL_ISSUER).with_validity(now - 3600, now - 1800);
        let signed = instance.sign_message(b"late", &spec);
        let err = verifier(&instance)
            .verify(
                b"late",
                &bundle(&signed),
                &VerificationPolicy::new(EMAIL, EMAIL_ISSUER),
            )
            .expect_err("a certificate expired at integration time must not verify");
        assert!(
            matches!(err, Error::Certificate(_)),
            "expired certificate: {err:?}"
        );
    }

    #[test]
    fn tampered_integrated_time_fails_the_set() {
        let mut instance = PrivateSigstore::new();
        let signed = instance.sign_message(b"m", &CertSpec::new(EMAIL, EMAIL_ISSUER));
        let mut json = signed.bundle.clone();
        json["verificationMaterial"]["tlogEntries"][0]["integratedTime"] =
            (signed.integrated_time - 1).to_string().into();
        let bundle = Bundle::from_json(&json.to_string()).expect("bundle parses");
        let err = verifier(&instance)
            .verify(b"m", &bundle, &VerificationPolicy::new(EMAIL, EMAIL_ISSUER))
            .expect_err("a tampered integrated time must fail the SET");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "tampered time: {err:?}"
        );
    }

    /// Swapping any one trust component for a stranger's breaks verification at that
    /// component: the chain (CA), the SCT (CT log), the SET (tlog key).
    #[test]
    fn each_trust_component_is_load_bearing() {
        let mut instance = PrivateSigstore::new();
        let signed = instance.sign_message(b"m", &CertSpec::new(EMAIL, EMAIL_ISSUER));
        let bundle = bundle(&signed);
        let policy = VerificationPolicy::new(EMAIL, EMAIL_ISSUER);
        let stranger: Value =
            serde_json::from_str(&PrivateSigstore::new().trusted_root_json()).expect("JSON");
        let with = |field: &str| {
            let mut root: Value =
                serde_json::from_str(&instance.trusted_root_json()).expect("JSON");
            root[field] = stranger[field].clone();
            let root = TrustedRoot::from_json(&root.to_string()).expect("hybrid root parses");
            Verifier::new(&root)
                .expect("verifier")
                .verify(b"m", &bundle, &policy)
                .expect_err("a stranger's component must break verification")
        };
        let err = with("certificateAuthorities");
        assert!(matches!(err, Error::Certificate(_)), "foreign CA: {err:?}");
        let err = with("ctlogs");
        assert!(err.to_string().contains("SCT"), "foreign CT log: {err:?}");
        let err = with("tlogs");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "foreign tlog: {err:?}"
        );
    }

    /// The checkpoint signature and the inclusion proof are checked, not just the SET.
    #[test]
    fn tampered_checkpoint_or_proof_fails() {
        let mut instance = PrivateSigstore::new();
        let spec = CertSpec::new(EMAIL, EMAIL_ISSUER);
        instance.sign_message(b"first", &spec);
        let signed = instance.sign_message(b"second", &spec);
        let policy = VerificationPolicy::new(EMAIL, EMAIL_ISSUER);
        let verifier = verifier(&instance);
        let verify = |json: &Value| {
            let bundle = Bundle::from_json(&json.to_string()).expect("bundle parses");
            verifier.verify(b"second", &bundle, &policy)
        };
        verify(&signed.bundle).expect("control: the genuine bundle verifies");

        // A checkpoint for the same tree, signed by a stranger's log key (same key hint).
        let mut json = signed.bundle.clone();
        let proof = &mut json["verificationMaterial"]["tlogEntries"][0]["inclusionProof"];
        let envelope = proof["checkpoint"]["envelope"]
            .as_str()
            .expect("envelope")
            .to_owned();
        let (note, signature_line) = envelope.split_once("\n\n").expect("signed note");
        let stranger = PrivateSigstore::new();
        let forged = stranger.tlog_sign(format!("{note}\n").as_bytes());
        let mut hinted = B64
            .decode(signature_line.rsplit(' ').next().expect("sig").trim())
            .expect("base64")[..4]
            .to_vec();
        hinted.extend(forged);
        proof["checkpoint"]["envelope"] = format!(
            "{note}\n\n\u{2014} {} {}\n",
            PrivateSigstore::TLOG_NAME,
            B64.encode(hinted)
        )
        .into();
        let err = verify(&json).expect_err("a checkpoint signed by another key");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "forged checkpoint: {err:?}"
        );

        // A wrong sibling hash in the audit path.
        let mut json = signed.bundle.clone();
        json["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0] =
            B64.encode([7u8; 32]).into();
        let err = verify(&json).expect_err("a broken audit path");
        assert!(
            matches!(err, Error::TransparencyLog(_)),
            "broken proof: {err:?}"
        );
    }

    #[test]
    fn every_entry_of_a_growing_log_verifies() {
        let mut instance = PrivateSigstore::new();
        let spec = CertSpec::new(EMAIL, EMAIL_ISSUER);
        let signed: Vec<(Vec<u8>, Keyless)> = (0..9u8)
            .map(|i| {
                let message = vec![i; 3];
                let keyless = instance.sign_message(&message, &spec);
                (message, keyless)
            })
            .collect();
        assert_eq!(instance.log_entries().len(), 9);
        let verifier = verifier(&instance);
        let policy = VerificationPolicy::new(EMAIL, EMAIL_ISSUER);
        for (index, (message, keyless)) in signed.iter().enumerate() {
            assert_eq!(keyless.log_index, index as u64);
            assert_eq!(instance.log_entries()[index], keyless.canonicalized_body);
            let proof = &keyless.tlog_entry["inclusionProof"];
            assert_eq!(proof["treeSize"], (index + 1).to_string());
            verifier
                .verify(message.as_slice(), &bundle(keyless), &policy)
                .unwrap_or_else(|e| panic!("entry {index} verifies: {e}"));
        }
        // A proof for an old entry against today's tree agrees with the root we publish.
        let root = merkle_root(&instance.leaf_hashes);
        let path = inclusion_path(2, &instance.leaf_hashes);
        assert_eq!(recompute_root(2, 9, instance.leaf_hashes[2], &path), root);
    }

    /// RFC 9162 §2.1.3.2, independent of the code that built the path.
    fn recompute_root(index: usize, size: usize, leaf: [u8; 32], path: &[[u8; 32]]) -> [u8; 32] {
        let (mut fn_, mut sn, mut r) = (index, size - 1, leaf);
        for p in path {
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(p, &r);
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        r
    }

    #[test]
    fn bundle_and_annotation_shapes() {
        let mut instance = PrivateSigstore::new();
        let signed = instance.sign_message(b"x", &CertSpec::new(EMAIL, EMAIL_ISSUER));
        assert_eq!(signed.bundle["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            signed.bundle["verificationMaterial"]["tlogEntries"][0],
            signed.tlog_entry
        );
        assert!(signed.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));

        let annotation: Value =
            serde_json::from_str(&signed.cosign_bundle_annotation).expect("annotation is JSON");
        assert_eq!(
            annotation["SignedEntryTimestamp"],
            signed.tlog_entry["inclusionPromise"]["signedEntryTimestamp"]
        );
        assert_eq!(
            annotation["Payload"]["body"],
            signed.tlog_entry["canonicalizedBody"]
        );
        assert_eq!(
            annotation["Payload"]["integratedTime"],
            signed.integrated_time
        );
        assert_eq!(annotation["Payload"]["logIndex"], signed.log_index);
        assert_eq!(
            annotation["Payload"]["logID"],
            hex::encode(instance.tlog_log_id())
        );

        let body: Value = serde_json::from_slice(&signed.canonicalized_body).expect("body is JSON");
        assert_eq!(
            canonical_json(&body),
            signed.canonicalized_body,
            "body is canonical"
        );
        assert_eq!(
            body["spec"]["data"]["hash"]["value"],
            hex::encode(sha256(b"x"))
        );
        assert_ne!(
            PrivateSigstore::new().trusted_root_json(),
            instance.trusted_root_json()
        );
    }
}
