//! Artifacts attached to a manifest digest under a tag derived from it — cosign's tag scheme
//! (`sha256-<hex>.sig`, `sha256-<hex>.att`) — read and written the same way in a registry and in
//! an OCI image layout. Everything read here is as untrusted as the artifact: manifests are
//! bounded and parsed strictly, blobs are bounded by their descriptor and a caller's cap and
//! digest-checked.

use crate::digest::Digest;
use crate::error::Error;
use crate::layout::Layout;
use crate::limits::MAX_MANIFEST_BYTES;
use crate::manifest::{Descriptor, ImageManifest, MEDIA_TYPE_OCI_MANIFEST};
use crate::pull::{ACCEPT_MANIFESTS, NoProgress};
use crate::reference::{Reference, Selector};
use crate::remote::RegistryClient;
use crate::store::Store;

/// The tag cosign keeps signatures of `digest` under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag cosign keeps attestations of `digest` under.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// A manifest found at an attachment tag.
#[derive(Clone, Debug)]
pub struct AttachedManifest {
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// Its digest.
    pub digest: Digest,
}

/// `reference`'s repository (or layout) with `selector` selected.
fn at(reference: &Reference, selector: Selector) -> Reference {
    match reference {
        Reference::Registry(r) => Reference::Registry(r.with_selector(selector)),
        Reference::Layout(l) => Reference::Layout(l.with_selector(selector)),
    }
}

impl RegistryClient {
    /// The manifest at `tag` beside `reference`, or `None` when there is none.
    pub async fn fetch_attached(
        &self,
        reference: &Reference,
        tag: &str,
    ) -> Result<Option<AttachedManifest>, Error> {
        self.fetch_attached_at(reference, Selector::Tag(tag.to_owned()))
            .await
    }

    /// The manifest `digest` beside `reference` (a referrer), or `None` when there is none.
    /// Its bytes are checked against `digest`.
    pub async fn fetch_referrer(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<AttachedManifest>, Error> {
        self.fetch_attached_at(reference, Selector::Digest(digest.clone()))
            .await
    }

    /// The referrers of `subject` beside `reference`; `None` for an OCI layout, which has no
    /// referrers list.
    pub async fn referrers_of(
        &self,
        reference: &Reference,
        subject: &Digest,
    ) -> Result<Option<crate::Referrers>, Error> {
        match reference {
            Reference::Registry(r) => self.referrers(r, subject).await.map(Some),
            Reference::Layout(_) => Ok(None),
        }
    }

    async fn fetch_attached_at(
        &self,
        reference: &Reference,
        selector: Selector,
    ) -> Result<Option<AttachedManifest>, Error> {
        let at = at(reference, selector);
        let found = match &at {
            Reference::Registry(r) => {
                let what = format!("fetching `{r}`");
                match self
                    .with_deadline(&what, self.get_manifest_bytes(r, ACCEPT_MANIFESTS))
                    .await
                {
                    Ok((bytes, digest, _)) => Some((bytes, digest)),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            Reference::Layout(l) => {
                let layout = Layout::open(l.path())?;
                match layout.find(l.selector()) {
                    Ok(d) => {
                        let what = format!("manifest `{}`", d.digest);
                        let bytes = layout.read_blob(&d.digest, MAX_MANIFEST_BYTES, &what)?;
                        Some((bytes, d.digest))
                    }
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
        };
        let Some((bytes, digest)) = found else {
            return Ok(None);
        };
        let manifest = ImageManifest::parse(&bytes)?;
        // Signature and attestation manifests are OCI, as cosign and Warrant write them; the
        // Docker twin an image may be is not taken here.
        if let Some(mt) = manifest.media_type.as_deref()
            && mt != MEDIA_TYPE_OCI_MANIFEST
        {
            return Err(Error::UnsupportedMediaType {
                what: "manifest".into(),
                media_type: crate::text::one_line(mt).into_owned(),
                expected: format!("`{MEDIA_TYPE_OCI_MANIFEST}`"),
            });
        }
        Ok(Some(AttachedManifest { manifest, digest }))
    }

    /// A blob named by an attached manifest: at most `limit` bytes, digest-checked.
    pub async fn fetch_attached_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let what = format!("blob `{}`", descriptor.digest);
        if descriptor.size > limit {
            return Err(Error::TooLarge { what, limit });
        }
        match reference {
            Reference::Registry(r) => {
                self.with_deadline(
                    &format!("fetching {what}"),
                    self.get_small_blob(r, &descriptor.digest, descriptor.size, limit, &what),
                )
                .await
            }
            Reference::Layout(l) => {
                let bytes = Layout::open(l.path())?.read_blob(&descriptor.digest, limit, &what)?;
                if bytes.len() as u64 != descriptor.size {
                    return Err(Error::SizeMismatch {
                        what,
                        declared: descriptor.size,
                        actual: bytes.len() as u64,
                    });
                }
                Ok(bytes)
            }
        }
    }

    /// Publish `manifest` at `tag` beside `reference`, with the blobs it names (each pushed
    /// unless present). Returns the manifest's descriptor.
    pub async fn put_attached(
        &self,
        reference: &Reference,
        tag: &str,
        manifest: &ImageManifest,
        blobs: Vec<(Descriptor, Vec<u8>)>,
    ) -> Result<Descriptor, Error> {
        let bytes = serde_json::to_vec(manifest).map_err(|e| Error::Malformed {
            what: "attached manifest".into(),
            reason: e.to_string(),
        })?;
        let descriptor = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, &bytes);
        match at(reference, Selector::Tag(tag.to_owned())) {
            Reference::Registry(r) => {
                let what = format!("pushing `{r}`");
                self.with_deadline(&what, async {
                    for (d, blob) in blobs {
                        d.digest.check(&blob, "attached blob")?;
                        self.push_blob(
                            &r,
                            &d.digest,
                            blob,
                            &format!("blob `{}`", d.digest),
                            &NoProgress,
                        )
                        .await?;
                    }
                    self.push_manifest(&r, bytes, MEDIA_TYPE_OCI_MANIFEST, &what)
                        .await
                })
                .await?;
            }
            Reference::Layout(l) => {
                let store = Store::open(l.path())?;
                for (d, blob) in blobs {
                    store.put_blob(&blob, &d, "attached blob")?;
                }
                store.put_blob(&bytes, &descriptor, "attached manifest")?;
                store.add_to_index(&descriptor, Some(tag))?;
            }
        }
        Ok(descriptor)
    }
}
