//! One file out of an image layer: the module of a `wasi/wasm` image, the format Docker and
//! containerd shims run (an OCI image whose one tar layer holds the `.wasm` its entrypoint
//! names).
//!
//! The layer is hostile. It is read in memory (the caller has checked its digest) with the
//! `tar` crate, nothing is ever written to a file system, and the reader refuses rather than
//! guesses:
//!
//! - a path with a `..` component anywhere in the layer (a traversal attempt);
//! - the wanted path as a link (symbolic or hard), a directory, a whiteout, or any type but
//!   a regular file: never followed;
//! - the wanted path more than once (tar lets a later entry replace an earlier one; which one
//!   is "the" module would then depend on the reader);
//! - more than [`MAX_TAR_ENTRIES`] entries, more decompressed bytes than the limit (a
//!   decompression bomb), a file larger than the module limit, a short or corrupt archive.

use std::io::Read;

use crate::error::Error;

/// Most entries read from one layer. A Wasm image's layer holds a module and perhaps a few
/// directories or licences; a layer of millions of empty entries is an attack on the reader's
/// time.
pub const MAX_TAR_ENTRIES: usize = 10_000;

/// Most decompressed bytes read from one layer: the module limit's default (256 MiB) and room
/// for whatever else a small image carries. A gzip layer of a few kilobytes can expand to
/// gigabytes; reading stops here.
pub const MAX_UNPACKED_LAYER_BYTES: u64 = 1024 * 1024 * 1024;

/// Longest entry or entrypoint path accepted (Linux's `PATH_MAX`).
pub const MAX_ENTRY_PATH_BYTES: usize = 4096;

/// Layer compression, from the layer's media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar`.
    None,
    /// `application/vnd.oci.image.layer.v1.tar+gzip` (or Docker's `…rootfs.diff.tar.gzip`).
    Gzip,
}

impl Compression {
    /// The compression of a layer of `media_type`; `None` (no value) for a media type that is
    /// not a tar layer Warrant reads (zstd included).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            crate::manifest::MEDIA_TYPE_OCI_LAYER_TAR => Some(Self::None),
            crate::manifest::MEDIA_TYPE_OCI_LAYER_TAR_GZIP
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

/// Bounds for one extraction.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file returned.
    pub max_file_bytes: u64,
    /// Most decompressed bytes read from the layer.
    pub max_layer_bytes: u64,
}

/// A path as a tar entry or an entrypoint names it, in one form: leading `/` and `.`
/// components and repeated `/` dropped. Refused: a `..` component, a NUL byte, an empty
/// result, more than [`MAX_ENTRY_PATH_BYTES`].
pub fn normalise(path: &str) -> Result<String, Error> {
    let refuse = |reason: &str| Error::Malformed {
        what: format!("path `{}`", crate::text::one_line(path)),
        reason: reason.to_owned(),
    };
    if path.len() > MAX_ENTRY_PATH_BYTES {
        return Err(refuse("too long"));
    }
    if path.contains('\0') {
        return Err(refuse("it contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("it has a `..` component")),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(refuse("it names no file"));
    }
    Ok(parts.join("/"))
}

/// The bytes of the regular file at `entrypoint` in `layer` (its blob's bytes, already
/// checked against its digest), read within `limits`. See the module's documentation for
/// what is refused.
pub fn extract(
    layer: &[u8],
    compression: Compression,
    entrypoint: &str,
    limits: Limits,
) -> Result<Vec<u8>, Error> {
    extract_with(layer, compression, entrypoint, limits, MAX_TAR_ENTRIES)
}

fn extract_with(
    layer: &[u8],
    compression: Compression,
    entrypoint: &str,
    limits: Limits,
    max_entries: usize,
) -> Result<Vec<u8>, Error> {
    let wanted = normalise(entrypoint)?;
    let what = format!("layer entry `{}`", crate::text::one_line(&wanted));
    let reader: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(layer),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(layer)),
    };
    // One byte more than the limit, so that reaching it is told from stopping at it.
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut bounded = Bounded {
        inner: reader.take(limits.max_layer_bytes.saturating_add(1)),
        read: read.clone(),
    };
    // A layer cut by the limit breaks the archive wherever it falls: that is the limit's
    // refusal, not a malformed layer.
    let malformed = |reason: String| {
        if read.get() > limits.max_layer_bytes {
            Error::TooLarge {
                what: "image layer, decompressed".into(),
                limit: limits.max_layer_bytes,
            }
        } else {
            Error::Malformed {
                what: "image layer".into(),
                reason,
            }
        }
    };
    let mut found: Option<Vec<u8>> = None;
    let mut count_wanted = 0usize;
    {
        let mut archive = tar::Archive::new(&mut bounded);
        let entries = archive
            .entries()
            .map_err(|e| malformed(format!("not a tar archive: {e}")))?;
        for (index, entry) in entries.enumerate() {
            if index >= max_entries {
                return Err(Error::TooLarge {
                    what: "image layer entry count".into(),
                    limit: max_entries as u64,
                });
            }
            let mut entry = entry.map_err(|e| malformed(format!("corrupt tar entry: {e}")))?;
            let raw = entry.path_bytes();
            let name = std::str::from_utf8(&raw)
                .map_err(|_| malformed("an entry's path is not UTF-8".into()))?
                .to_owned();
            if name.split('/').any(|part| part == "..") {
                return Err(malformed(format!(
                    "entry `{}` leaves the layer (`..`)",
                    crate::text::one_line(&name)
                )));
            }
            let Ok(path) = normalise(&name) else {
                // The root directory (`./`) and the like name nothing to run.
                continue;
            };
            // `dir/.wh.name` deletes `dir/name`.
            let whited_out = match path.rsplit_once('/') {
                Some((dir, file)) => file.strip_prefix(".wh.").map(|f| format!("{dir}/{f}")),
                None => path.strip_prefix(".wh.").map(str::to_owned),
            };
            if whited_out.as_deref() == Some(wanted.as_str()) {
                return Err(malformed(format!(
                    "{what} is deleted by a whiteout in the same layer"
                )));
            }
            if path != wanted {
                continue;
            }
            count_wanted += 1;
            if count_wanted > 1 {
                return Err(malformed(format!(
                    "{what} appears more than once; which one is the module would be a guess"
                )));
            }
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    return Err(malformed(format!(
                        "{what} is a link, not a file; links are not followed"
                    )));
                }
                tar::EntryType::Directory => {
                    return Err(malformed(format!("{what} is a directory")));
                }
                other => {
                    return Err(malformed(format!(
                        "{what} is not a regular file ({other:?})"
                    )));
                }
            }
            let size = entry
                .header()
                .size()
                .map_err(|e| malformed(format!("{what}: bad size: {e}")))?;
            if size > limits.max_file_bytes {
                return Err(Error::TooLarge {
                    what,
                    limit: limits.max_file_bytes,
                });
            }
            let capacity = usize::try_from(size).unwrap_or(0);
            let mut bytes = Vec::with_capacity(capacity);
            (&mut entry)
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| malformed(format!("{what}: {e}")))?;
            if bytes.len() as u64 != size {
                return Err(malformed(format!(
                    "{what} is cut short: {} of {size} bytes",
                    bytes.len()
                )));
            }
            found = Some(bytes);
        }
    }
    if read.get() > limits.max_layer_bytes {
        return Err(Error::TooLarge {
            what: "image layer, decompressed".into(),
            limit: limits.max_layer_bytes,
        });
    }
    found.ok_or(Error::NotFound { what })
}

/// Counts what the archive reader consumed, to tell a layer cut at the limit from one that
/// ended before it.
struct Bounded<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get().saturating_add(n as u64));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn limits() -> Limits {
        Limits {
            max_file_bytes: 1024 * 1024,
            max_layer_bytes: 16 * 1024 * 1024,
        }
    }

    fn header(size: u64, kind: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        header
    }

    /// A layer of (path, bytes) regular files.
    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut h = header(bytes.len() as u64, tar::EntryType::Regular);
            builder.append_data(&mut h, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn get(layer: &[u8], path: &str) -> Result<Vec<u8>, Error> {
        extract(layer, Compression::None, path, limits())
    }

    /// A raw header whose name is written byte for byte (the builder refuses `..`).
    fn raw_entry(name: &[u8], kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut h = header(data.len() as u64, kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn end(mut entries: Vec<u8>) -> Vec<u8> {
        entries.extend_from_slice(&[0; 1024]);
        entries
    }

    #[test]
    fn reads_the_module_plain_and_gzip_by_any_spelling_of_its_path() {
        let tar = layer(&[("etc/licence", b"text"), ("app.wasm", MODULE)]);
        for path in ["app.wasm", "/app.wasm", "./app.wasm", "//app.wasm"] {
            assert_eq!(get(&tar, path).unwrap(), MODULE, "{path}");
        }
        let gz = gzip(&tar);
        assert_eq!(
            extract(&gz, Compression::Gzip, "/app.wasm", limits()).unwrap(),
            MODULE
        );
        let dotted = end(raw_entry(
            b"./app.wasm",
            tar::EntryType::Regular,
            None,
            MODULE,
        ));
        assert_eq!(get(&dotted, "/app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn long_paths_work() {
        let long = format!("{}/app.wasm", "d".repeat(150));
        let tar = layer(&[(&long, MODULE)]);
        assert_eq!(get(&tar, &format!("/{long}")).unwrap(), MODULE);
    }

    #[test]
    fn a_missing_module_is_not_found() {
        let tar = layer(&[("other.wasm", MODULE)]);
        assert!(matches!(
            get(&tar, "/app.wasm"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn links_directories_and_other_kinds_at_the_path_are_refused() {
        for (kind, link, says) in [
            (tar::EntryType::Symlink, Some("/etc/passwd"), "link"),
            (tar::EntryType::Link, Some("other.wasm"), "link"),
            (tar::EntryType::Directory, None, "directory"),
            (tar::EntryType::Fifo, None, "not a regular file"),
        ] {
            let tar = end(raw_entry(b"app.wasm", kind, link, b""));
            let err = get(&tar, "app.wasm").unwrap_err();
            assert!(
                matches!(&err, Error::Malformed { reason, .. } if reason.contains(says)),
                "{kind:?}: {err}"
            );
        }
    }

    #[test]
    fn a_module_twice_is_refused() {
        let tar = layer(&[("app.wasm", MODULE), ("./app.wasm", b"\0asm\x01\0\0\0evil")]);
        let err = get(&tar, "/app.wasm").unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason.contains("more than once")),
            "{err}"
        );
    }

    #[test]
    fn a_traversal_anywhere_in_the_layer_is_refused() {
        let mut entries = raw_entry(b"../evil.wasm", tar::EntryType::Regular, None, MODULE);
        entries.extend(raw_entry(
            b"app.wasm",
            tar::EntryType::Regular,
            None,
            MODULE,
        ));
        let err = get(&end(entries), "app.wasm").unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason.contains("..")),
            "{err}"
        );
        assert!(matches!(
            get(&layer(&[("a", MODULE)]), "../a"),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn a_whiteout_of_the_module_is_refused() {
        let tar = layer(&[("app.wasm", MODULE), (".wh.app.wasm", b"")]);
        let err = get(&tar, "app.wasm").unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason.contains("whiteout")),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let big = vec![0u8; 4096];
        let tar = layer(&[("app.wasm", &big)]);
        let small = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 1024 * 1024,
        };
        assert!(matches!(
            extract(&tar, Compression::None, "app.wasm", small),
            Err(Error::TooLarge { .. })
        ));

        // A gzip bomb: a 64 MiB entry of zeros before the module, a few hundred kilobytes
        // compressed, read no further than 1 MiB.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let bomb = gzip(&layer(&[("filler", &zeros), ("app.wasm", MODULE)]));
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        let tight = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 1024 * 1024,
        };
        let err = extract(&bomb, Compression::Gzip, "app.wasm", tight).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        // The same layer within a large enough bound reads.
        let roomy = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 128 * 1024 * 1024,
        };
        assert_eq!(
            extract(&bomb, Compression::Gzip, "app.wasm", roomy).unwrap(),
            MODULE
        );

        let files: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}"), MODULE)).collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let many = layer(&refs);
        assert!(matches!(
            extract_with(&many, Compression::None, "f19", limits(), 10),
            Err(Error::TooLarge { .. })
        ));
        assert!(extract_with(&many, Compression::None, "f19", limits(), 20).is_ok());
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let garbage = vec![0x5a; 2048];
        assert!(matches!(
            get(&garbage, "app.wasm"),
            Err(Error::Malformed { .. })
        ));
        let gz = gzip(&layer(&[("app.wasm", MODULE)]));
        let cut = &gz[..gz.len() / 2];
        assert!(matches!(
            extract(cut, Compression::Gzip, "app.wasm", limits()),
            Err(Error::Malformed { .. })
        ));
        let tar = layer(&[("app.wasm", &[7u8; 2000])]);
        let cut = &tar[..1024];
        assert!(matches!(get(cut, "app.wasm"), Err(Error::Malformed { .. })));
    }

    #[test]
    fn normalise_cases() {
        assert_eq!(normalise("/a//b/./c.wasm").unwrap(), "a/b/c.wasm");
        for bad in ["", "/", ".", "a/../b", "a\0b"] {
            assert!(
                matches!(normalise(bad), Err(Error::Malformed { .. })),
                "{bad:?}"
            );
        }
        assert!(normalise(&"a".repeat(MAX_ENTRY_PATH_BYTES + 1)).is_err());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            None
        );
    }
}
