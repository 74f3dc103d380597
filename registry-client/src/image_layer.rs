//! One file out of an image layer: the module of a `wasi/wasm` image, the format Docker and
//! containerd shims run (an OCI image whose config says `wasi`/`wasm` and whose one tar layer
//! holds the `.wasm` its entrypoint names).
//!
//! The layer is hostile. It is read in memory (the caller has checked its digest) with the
//! `tar` crate, nothing is ever written to a file system, and where tar readers could
//! disagree about which bytes are at the entrypoint, the reader refuses rather than guesses:
//!
//! - a path with a `..` component anywhere in the layer (a traversal attempt), a path longer
//!   than [`MAX_ENTRY_PATH_BYTES`], not UTF-8 or with a NUL byte;
//! - an entry reached through a link earlier in the layer (`lib` → `/`, then `lib/app.wasm`),
//!   and an entrypoint whose parent directory is in the layer as anything but a directory;
//! - the wanted path as a link (symbolic or hard), a directory, a whiteout, or any type but
//!   a regular file: never followed;
//! - the wanted path more than once (tar lets a later entry replace an earlier one; which one
//!   is "the" module would then depend on the reader);
//! - PAX records some readers apply and others do not: GNU sparse records (`GNU.sparse.name`
//!   renames an entry for Go's reader, not for the `tar` crate), a repeated key, a `path` that
//!   disagrees with a GNU long name, an unreadable `size`, and a global header that sets a
//!   path, a link or a size;
//! - a PAX record set or a GNU long name or link over [`MAX_EXTENSION_BYTES`] (refused as
//!   its header streams past, before the `tar` crate reads its body into memory), a PAX
//!   `size` other than the header's, and a GNU sparse entry anywhere in the layer;
//! - more than [`MAX_TAR_ENTRIES`] entries, more decompressed bytes than the limit (a
//!   decompression bomb), a file larger than the module limit, a short or corrupt archive, and
//!   anything but zeros after the archive's end (where a second archive, or a second gzip
//!   member, could hide from one reader and not another).
//!
//! A gzip layer may have several members (as Go's reader, and so containerd, accepts); all of
//! the stream is read, so its checksums are checked.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::Read;
use std::rc::Rc;

use crate::error::Error;

/// Most entries read from one layer. A Wasm image's layer holds a module and perhaps a few
/// directories or licences; a layer of millions of empty entries is an attack on the reader's
/// time (and on the memory the link check keeps per link).
pub const MAX_TAR_ENTRIES: usize = 10_000;

/// Most decompressed bytes read from one layer: the module limit's default (256 MiB) and room
/// for whatever else a small image carries. A gzip layer of a few kilobytes can expand to
/// gigabytes; reading stops here.
pub const MAX_UNPACKED_LAYER_BYTES: u64 = 1024 * 1024 * 1024;

/// Longest entry or entrypoint path accepted (Linux's `PATH_MAX`): no file system a runtime
/// unpacks the layer onto could hold a longer one, so a longer one is an attack.
pub const MAX_ENTRY_PATH_BYTES: usize = 4096;

/// Largest body of a PAX record set (`x`, `g`) or a GNU long name or link (`L`, `K`). The
/// `tar` crate reads such a body whole into memory before the entry it describes; without this
/// bound one header in a gzip layer of a megabyte could make it allocate up to the layer bound
/// (a gigabyte). A path is at most [`MAX_ENTRY_PATH_BYTES`]; 64 KiB leaves room for a link
/// target and the usual PAX keys (times, owners, extended attributes) many times over.
pub const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// Characters of an untrusted entry name quoted in an error message.
const MAX_QUOTED_CHARS: usize = 200;

/// Layer compression, from the layer's media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar` (or Docker's `…rootfs.diff.tar`).
    None,
    /// `application/vnd.oci.image.layer.v1.tar+gzip` (or Docker's `…rootfs.diff.tar.gzip`).
    Gzip,
}

impl Compression {
    /// The compression of a layer of `media_type`; `None` (no value) for a media type that is
    /// not a tar layer Warrant reads (zstd included).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            crate::manifest::MEDIA_TYPE_OCI_LAYER_TAR
            | crate::manifest::MEDIA_TYPE_DOCKER_LAYER_TAR => Some(Self::None),
            crate::manifest::MEDIA_TYPE_OCI_LAYER_TAR_GZIP
            | crate::manifest::MEDIA_TYPE_DOCKER_LAYER_TAR_GZIP => Some(Self::Gzip),
            _ => None,
        }
    }
}

/// Bounds for one extraction. (The entry count is bounded by [`MAX_TAR_ENTRIES`], not here.)
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file returned.
    pub max_file_bytes: u64,
    /// Most decompressed bytes read from the layer.
    pub max_layer_bytes: u64,
}

/// A path as a tar entry or an entrypoint names it, in one form: leading `/`, `.` components
/// and repeated `/` dropped (`/app.wasm`, `./app.wasm` and `app.wasm` are one path). Refused
/// ([`Error::Malformed`]): a `..` component, a NUL byte, an empty result, more than
/// [`MAX_ENTRY_PATH_BYTES`]. (A `&str` is UTF-8; entry names that are not are refused by
/// [`extract`].)
pub fn normalise(path: &str) -> Result<String, Error> {
    let refuse = |reason: &str| Error::Malformed {
        what: format!("path `{}`", crate::text::excerpt(path, MAX_QUOTED_CHARS)),
        reason: reason.to_owned(),
    };
    let parts = components(path).map_err(refuse)?;
    if parts.is_empty() {
        return Err(refuse("it names no file"));
    }
    Ok(parts.join("/"))
}

/// The components of `path` with empty and `.` ones dropped; an empty list for the root.
fn components(path: &str) -> Result<Vec<&str>, &'static str> {
    if path.len() > MAX_ENTRY_PATH_BYTES {
        return Err("it is longer than 4096 bytes");
    }
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it has a `..` component, which would leave the layer"),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// The bytes of the regular file at `entrypoint` in `layer` (its blob's bytes, already
/// checked against its digest), read within `limits` and at most [`MAX_TAR_ENTRIES`] entries.
/// See the module's documentation for what is refused.
///
/// Errors: [`Error::NotFound`] when no entry is at the path; [`Error::TooLarge`] when the file,
/// the decompressed layer or the entry count exceeds its bound; [`Error::Malformed`] for
/// everything else refused.
pub fn extract(
    layer: &[u8],
    compression: Compression,
    entrypoint: &str,
    limits: Limits,
) -> Result<Vec<u8>, Error> {
    extract_with_max_entries(layer, compression, entrypoint, limits, MAX_TAR_ENTRIES)
}

/// [`extract`] with the entry cap as a parameter, so tests need not build 10 000 entries.
fn extract_with_max_entries(
    layer: &[u8],
    compression: Compression,
    entrypoint: &str,
    limits: Limits,
    max_entries: usize,
) -> Result<Vec<u8>, Error> {
    let wanted = normalise(entrypoint)?;
    let what = entry_what(&wanted);
    if wanted
        .rsplit('/')
        .next()
        .is_some_and(|file| file.starts_with(".wh."))
    {
        return Err(Error::Malformed {
            what,
            reason: "a whiteout's name (`.wh.`) is not a module".into(),
        });
    }
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(layer),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(layer)),
    };
    // One byte more than the limit, so that reaching it is told from stopping at it.
    let read = Rc::new(Cell::new(0_u64));
    let mut bounded = Counted {
        inner: decoder.take(limits.max_layer_bytes.saturating_add(1)),
        read: Rc::clone(&read),
    };
    // Every header is looked at as it streams past, before the `tar` crate acts on it.
    let refused = Rc::new(Cell::new(None));
    // A layer cut by the limit breaks the archive wherever it falls: that is the limit's
    // refusal, not a malformed layer.
    let fail = |what: &str, reason: String| {
        if let Some(refusal) = refused.take() {
            return match refusal {
                HeaderRefusal::Extension => Error::TooLarge {
                    what: "a PAX or GNU long-name record in the image layer".into(),
                    limit: MAX_EXTENSION_BYTES,
                },
                HeaderRefusal::Sparse => Error::Malformed {
                    what: "image layer".into(),
                    reason: "a GNU sparse entry: readers disagree on its data".into(),
                },
            };
        }
        if read.get() > limits.max_layer_bytes {
            Error::TooLarge {
                what: "image layer, decompressed".into(),
                limit: limits.max_layer_bytes,
            }
        } else {
            Error::Malformed {
                what: what.to_owned(),
                reason,
            }
        }
    };

    let mut scan = Scan {
        wanted: &wanted,
        what: &what,
        limits,
        links: HashSet::new(),
        found: None,
    };
    {
        let mut archive = tar::Archive::new(Headers {
            inner: &mut bounded,
            at: 0,
            next_header: 0,
            block: [0; BLOCK],
            filled: 0,
            lost: false,
            refused: Rc::clone(&refused),
        });
        let entries = archive
            .entries()
            .map_err(|e| fail("image layer", format!("not a tar archive: {e}")))?;
        for (index, entry) in entries.enumerate() {
            if index >= max_entries {
                return Err(Error::TooLarge {
                    what: "image layer entry count".into(),
                    limit: max_entries as u64,
                });
            }
            let mut entry =
                entry.map_err(|e| fail("image layer", format!("corrupt tar entry: {e}")))?;
            scan.entry(&mut entry).map_err(|e| match e {
                Error::Malformed { what, reason } => fail(&what, reason),
                other => other,
            })?;
        }
    }
    // After the end-of-archive block: padding (zeros) only, to the end of the stream — which
    // also makes the gzip decoder check every member's checksum and length.
    let mut tail = [0_u8; 8192];
    loop {
        let n = bounded
            .read(&mut tail)
            .map_err(|e| fail("image layer", format!("after the archive's end: {e}")))?;
        if n == 0 {
            break;
        }
        if tail.iter().take(n).any(|&b| b != 0) {
            return Err(fail(
                "image layer",
                "data other than zeros after the archive's end".into(),
            ));
        }
    }
    if read.get() > limits.max_layer_bytes {
        return Err(Error::TooLarge {
            what: "image layer, decompressed".into(),
            limit: limits.max_layer_bytes,
        });
    }
    scan.found.ok_or(Error::NotFound { what })
}

/// `layer entry `NAME``, with the (untrusted) name made safe to print.
fn entry_what(name: &str) -> String {
    format!(
        "layer entry `{}`",
        crate::text::excerpt(name, MAX_QUOTED_CHARS)
    )
}

/// The path a whiteout entry deletes (`dir/.wh.name` deletes `dir/name`); `None` for any other
/// entry, and for the opaque-directory marker (`.wh..wh..opq`), which only hides lower layers'
/// entries.
fn whited_out(path: &str) -> Option<String> {
    let (dir, file) = match path.rsplit_once('/') {
        Some((dir, file)) => (Some(dir), file),
        None => (None, path),
    };
    let target = file.strip_prefix(".wh.")?;
    if target == ".wh..opq" {
        return None;
    }
    Some(match dir {
        Some(dir) => format!("{dir}/{target}"),
        None => target.to_owned(),
    })
}

/// Whether `ancestor` is a proper ancestor directory of `path` (both normalised).
fn is_ancestor(ancestor: &str, path: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// An [`Error::Malformed`] about `what`.
fn malformed(what: &str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

/// What one pass over the entries keeps.
struct Scan<'a> {
    /// The normalised entrypoint.
    wanted: &'a str,
    /// `layer entry `…`` for the entrypoint.
    what: &'a str,
    limits: Limits,
    /// The normalised paths of the link entries seen so far (at most one per entry).
    links: HashSet<String>,
    /// The module, once read.
    found: Option<Vec<u8>>,
}

impl Scan<'_> {
    /// Check one entry, and read it if it is the module.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            malformed(
                &entry_what(&String::from_utf8_lossy(e.as_bytes())),
                "its path is not UTF-8",
            )
        })?;
        let what = entry_what(&name);
        let kind = entry.header().entry_type();
        let parts = components(&name).map_err(|reason| malformed(&what, reason))?;
        let path = parts.join("/");

        self.check_pax(entry, &name, &what)?;
        if kind.is_pax_global_extensions() {
            return Ok(());
        }

        if path.is_empty() {
            // The root directory (`./`): names nothing to run, but must be a directory.
            if kind.is_dir() {
                return Ok(());
            }
            return Err(malformed(&what, "the layer's root is not a directory"));
        }
        for (i, _) in path.match_indices('/') {
            let ancestor = path.get(..i).unwrap_or_default();
            if self.links.contains(ancestor) {
                return Err(malformed(
                    &what,
                    format!(
                        "it is reached through the link `{}`; links are not followed",
                        crate::text::excerpt(ancestor, MAX_QUOTED_CHARS)
                    ),
                ));
            }
        }
        if kind.is_symlink() || kind.is_hard_link() {
            self.links.insert(path.clone());
        }
        if is_ancestor(&path, self.wanted) && !kind.is_dir() {
            return Err(malformed(
                self.what,
                format!("its parent {what} is not a directory ({kind:?})"),
            ));
        }
        if let Some(target) = whited_out(&path)
            && (target == self.wanted || is_ancestor(&target, self.wanted))
        {
            return Err(malformed(
                self.what,
                format!("it is deleted by the whiteout {what} in the same layer"),
            ));
        }
        if path != self.wanted {
            return Ok(());
        }
        self.read_module(entry, kind, &name)
    }

    /// Refuse the PAX records readers disagree on (see the module's documentation).
    fn check_pax<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        what: &str,
    ) -> Result<(), Error> {
        let global = entry.header().entry_type().is_pax_global_extensions();
        // The header's own size field: a PAX size must agree with it, so every reader (and
        // the header check, which goes by the field) finds the next entry at one offset.
        let size = entry.header().entry_size().ok();
        let refuse = |reason: String| malformed(what, reason);
        let Some(records) = entry
            .pax_extensions()
            .map_err(|e| refuse(format!("unreadable PAX records: {e}")))?
        else {
            return Ok(());
        };
        let mut keys = HashSet::new();
        for record in records {
            let record = record.map_err(|e| refuse(format!("malformed PAX record: {e}")))?;
            let key = record
                .key()
                .map_err(|_| refuse("a PAX key is not UTF-8".into()))?;
            if !keys.insert(key.to_owned()) {
                return Err(refuse(format!(
                    "the PAX key `{}` appears more than once",
                    crate::text::excerpt(key, MAX_QUOTED_CHARS)
                )));
            }
            if key.starts_with("GNU.sparse.") {
                return Err(refuse(
                    "GNU sparse PAX records: readers disagree on its name and data".into(),
                ));
            }
            if global {
                if matches!(key, "path" | "linkpath" | "size") {
                    return Err(refuse(format!(
                        "a global PAX header sets `{key}`, which some readers apply to every \
                         later entry and others ignore"
                    )));
                }
                continue;
            }
            match key {
                "path" if record.value_bytes() != name.as_bytes() => {
                    return Err(refuse(
                        "both a GNU long name and a PAX path, which readers choose between \
                         differently"
                            .into(),
                    ));
                }
                "size" => {
                    let declared = record.value().ok().and_then(|v| v.parse::<u64>().ok());
                    if declared.is_none() || declared != size {
                        return Err(refuse(
                            "a PAX size that is unreadable or not the header's size".into(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Read the entry at the wanted path, if it is a regular file within the limit and the
    /// only one.
    fn read_module<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        name: &str,
    ) -> Result<(), Error> {
        let refuse = |reason: String| malformed(self.what, reason);
        if self.found.is_some() {
            return Err(refuse(
                "it appears more than once in the layer; which one is the module would be a \
                 guess"
                    .into(),
            ));
        }
        match kind {
            // Old-style (`\0`) and ustar (`0`) regular files alike.
            tar::EntryType::Regular => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(refuse(
                    "it is a link, not a file; links are not followed".into(),
                ));
            }
            tar::EntryType::Directory => {
                return Err(refuse("it is a directory, not a file".into()));
            }
            other => {
                return Err(refuse(format!("it is not a regular file ({other:?})")));
            }
        }
        // An old-style file whose name ends in `/` is a directory to Go's reader.
        if name.ends_with('/') {
            return Err(refuse(
                "a file whose name ends in `/` (a directory to some readers)".into(),
            ));
        }
        // The PAX size when there is one, as every reader takes it.
        let size = entry.size();
        if size > self.limits.max_file_bytes {
            return Err(Error::TooLarge {
                what: self.what.to_owned(),
                limit: self.limits.max_file_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(format!("reading it: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(refuse(format!(
                "it is cut short: {} of {size} bytes",
                bytes.len()
            )));
        }
        self.found = Some(bytes);
        Ok(())
    }
}

/// Size of a tar block: a header is one, data is padded to a whole number of them.
const BLOCK: usize = 512;

/// Why [`Headers`] stopped the archive.
#[derive(Clone, Copy, Debug)]
enum HeaderRefusal {
    /// An extension body over [`MAX_EXTENSION_BYTES`].
    Extension,
    /// A GNU sparse entry, whose extra header blocks would put this reader and the `tar`
    /// crate's at different offsets.
    Sparse,
}

/// Looks at each tar header as the archive reader reads it, and fails the read that completes
/// a header the reader must not act on: an extension (`x`, `g`, `L`, `K`, whatever its magic)
/// whose body is over [`MAX_EXTENSION_BYTES`] — refused before a byte of the body is read — or
/// a GNU sparse entry. Headers are found as the `tar` crate finds them: each follows the one
/// before, after its data rounded up to a block, by the header's own size field (the scan
/// refuses a PAX `size` that differs from it, so the two never disagree). Reads never cross
/// a header's start, so each header is seen whole before any byte after it is handed on.
struct Headers<'a, R> {
    inner: &'a mut R,
    /// Offset of the next byte to read.
    at: u64,
    /// Offset of the next header.
    next_header: u64,
    /// The header being read.
    block: [u8; BLOCK],
    filled: usize,
    /// A header whose size the `tar` crate cannot read either: it fails on it, so nothing
    /// after it is looked at.
    lost: bool,
    refused: Rc<Cell<Option<HeaderRefusal>>>,
}

impl<R: Read> Read for Headers<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.lost {
            return self.inner.read(buf);
        }
        let in_header = self.at >= self.next_header;
        let room = if in_header {
            BLOCK - self.filled
        } else {
            usize::try_from(self.next_header - self.at).unwrap_or(usize::MAX)
        };
        let want = buf.len().min(room);
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        self.at = self.at.saturating_add(n as u64);
        if in_header {
            let (Some(to), Some(from)) = (
                self.block.get_mut(self.filled..self.filled + n),
                buf.get(..n),
            ) else {
                return Ok(n);
            };
            to.copy_from_slice(from);
            self.filled += n;
            if self.filled == BLOCK {
                self.filled = 0;
                self.header()?;
            }
        }
        Ok(n)
    }
}

impl<R> Headers<'_, R> {
    /// Act on the header just read whole.
    fn header(&mut self) -> std::io::Result<()> {
        let refuse = |refusal: HeaderRefusal| {
            self.refused.set(Some(refusal));
            std::io::Error::new(std::io::ErrorKind::InvalidData, "refused tar header")
        };
        if self.block.iter().all(|&b| b == 0) {
            // End-of-archive (or padding): the next block is looked at the same way.
            self.next_header = self.at;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.block);
        let Ok(size) = header.entry_size() else {
            self.lost = true;
            return Ok(());
        };
        let kind = header.entry_type();
        if kind.is_gnu_sparse() {
            return Err(refuse(HeaderRefusal::Sparse));
        }
        if (kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink())
            && size > MAX_EXTENSION_BYTES
        {
            return Err(refuse(HeaderRefusal::Extension));
        }
        let padded = size
            .checked_add(BLOCK as u64 - 1)
            .map(|s| s & !(BLOCK as u64 - 1));
        match padded.and_then(|p| self.at.checked_add(p)) {
            Some(next) => self.next_header = next,
            None => self.lost = true,
        }
        Ok(())
    }
}

/// Counts what the archive reader consumed, to tell a layer cut at the limit from one that
/// ended before it.
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
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

    /// A layer of (path, bytes) regular files, written by the `tar` crate's builder.
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

    /// One entry whose name is written byte for byte (the builder refuses `..` and rewrites
    /// names), padded to a block.
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

    /// A PAX extended header with `records`, then `entry`.
    fn with_pax(records: &[(&str, &[u8])], entry: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        let mut out = builder.get_ref().clone();
        out.extend_from_slice(entry);
        out
    }

    /// `entries` and the end-of-archive blocks.
    fn end(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = entries.concat();
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn assert_malformed(result: Result<Vec<u8>, Error>, says: &str) {
        match result {
            Err(Error::Malformed { what, reason }) => {
                let message = format!("{what}: {reason}");
                assert!(message.contains(says), "{message:?} does not say {says:?}");
            }
            other => panic!("expected Malformed saying {says:?}, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_plain_tar() {
        let tar = layer(&[("etc/licence", b"text"), ("app.wasm", MODULE)]);
        assert_eq!(get(&tar, "/app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn reads_a_gzip_tar() {
        let tar = layer(&[("app.wasm", MODULE)]);
        let gz = gzip(&tar);
        assert_eq!(
            extract(&gz, Compression::Gzip, "/app.wasm", limits()).unwrap(),
            MODULE
        );
        // Several gzip members, as Go's reader (and so containerd) accepts.
        let half = tar.len() / 2;
        let mut members = gzip(&tar[..half]);
        members.extend(gzip(&tar[half..]));
        assert_eq!(
            extract(&members, Compression::Gzip, "/app.wasm", limits()).unwrap(),
            MODULE
        );
    }

    #[test]
    fn every_spelling_of_the_path_is_one_path() {
        let tar = layer(&[("app.wasm", MODULE)]);
        for path in [
            "app.wasm",
            "/app.wasm",
            "./app.wasm",
            "//app.wasm",
            "/./app.wasm",
        ] {
            assert_eq!(get(&tar, path).unwrap(), MODULE, "{path}");
        }
        for stored in [&b"./app.wasm"[..], b"/app.wasm", b"app.wasm"] {
            let tar = end(&[
                raw_entry(b"./", tar::EntryType::Directory, None, b""),
                raw_entry(stored, tar::EntryType::Regular, None, MODULE),
            ]);
            for path in ["app.wasm", "/app.wasm", "./app.wasm"] {
                assert_eq!(get(&tar, path).unwrap(), MODULE, "{stored:?} {path}");
            }
        }
    }

    #[test]
    fn a_gnu_long_path_works() {
        let long = format!("{}/app.wasm", "d".repeat(150));
        let tar = layer(&[(&long, MODULE)]);
        assert_eq!(get(&tar, &format!("/{long}")).unwrap(), MODULE);
    }

    #[test]
    fn a_pax_long_path_works() {
        let long = format!("{}/app.wasm", "p".repeat(300));
        let tar = end(&[with_pax(
            &[("path", long.as_bytes())],
            &raw_entry(b"truncated-name", tar::EntryType::Regular, None, MODULE),
        )]);
        assert_eq!(get(&tar, &long).unwrap(), MODULE);
        assert!(matches!(
            get(&tar, "truncated-name"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn a_missing_module_is_not_found() {
        let tar = layer(&[("other.wasm", MODULE)]);
        assert!(matches!(
            get(&tar, "/app.wasm"),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            get(&end(&[]), "/app.wasm"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn a_symlink_at_the_path_is_refused() {
        let tar = end(&[raw_entry(
            b"app.wasm",
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
            b"",
        )]);
        assert_malformed(get(&tar, "app.wasm"), "a link, not a file");
    }

    #[test]
    fn a_hardlink_at_the_path_is_refused() {
        let tar = end(&[
            raw_entry(b"real.wasm", tar::EntryType::Regular, None, MODULE),
            raw_entry(b"app.wasm", tar::EntryType::Link, Some("real.wasm"), b""),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "a link, not a file");
    }

    #[test]
    fn a_directory_at_the_path_is_refused() {
        let tar = end(&[raw_entry(
            b"app.wasm/",
            tar::EntryType::Directory,
            None,
            b"",
        )]);
        assert_malformed(get(&tar, "app.wasm"), "a directory");
    }

    #[test]
    fn other_kinds_at_the_path_are_refused() {
        for kind in [
            tar::EntryType::Fifo,
            tar::EntryType::Char,
            tar::EntryType::Continuous,
        ] {
            let tar = end(&[raw_entry(b"app.wasm", kind, None, b"")]);
            assert_malformed(get(&tar, "app.wasm"), "not a regular file");
        }
        // An old-style (`\0`) file named with a trailing `/` is a directory to Go's reader.
        let mut old = raw_entry(b"app.wasm/", tar::EntryType::Regular, None, MODULE);
        old[156] = 0;
        let mut h = tar::Header::from_byte_slice(&old[..512]).clone();
        h.set_cksum();
        old[..512].copy_from_slice(h.as_bytes());
        assert_malformed(get(&end(&[old]), "app.wasm"), "ends in `/`");
    }

    #[test]
    fn an_old_style_regular_file_is_read() {
        let mut old = raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE);
        old[156] = 0;
        let mut h = tar::Header::from_byte_slice(&old[..512]).clone();
        h.set_cksum();
        old[..512].copy_from_slice(h.as_bytes());
        assert_eq!(get(&end(&[old]), "app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn a_module_twice_is_refused() {
        let tar = layer(&[("app.wasm", MODULE), ("./app.wasm", b"\0asm\x01\0\0\0evil")]);
        assert_malformed(get(&tar, "/app.wasm"), "more than once");
        // Also when the second one is not a file.
        let tar = end(&[
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
            raw_entry(b"/app.wasm", tar::EntryType::Symlink, Some("x"), b""),
        ]);
        assert_malformed(get(&tar, "/app.wasm"), "more than once");
    }

    #[test]
    fn a_traversal_anywhere_in_the_layer_is_refused() {
        for evil in [&b"../evil.wasm"[..], b"a/../../evil.wasm", b"a/.."] {
            let tar = end(&[
                raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
                raw_entry(evil, tar::EntryType::Regular, None, MODULE),
            ]);
            assert_malformed(get(&tar, "app.wasm"), "`..`");
        }
    }

    #[test]
    fn a_traversal_entrypoint_is_refused() {
        let tar = layer(&[("a", MODULE)]);
        assert_malformed(get(&tar, "../a"), "`..`");
        assert_malformed(get(&tar, "/x/../a"), "`..`");
    }

    #[test]
    fn a_whiteout_of_the_module_or_its_directory_is_refused() {
        let tar = layer(&[("app.wasm", MODULE), (".wh.app.wasm", b"")]);
        assert_malformed(get(&tar, "app.wasm"), "whiteout");
        let tar = layer(&[("bin/app.wasm", MODULE), (".wh.bin", b"")]);
        assert_malformed(get(&tar, "bin/app.wasm"), "whiteout");
        let tar = layer(&[(".wh.app.wasm", MODULE)]);
        assert_malformed(get(&tar, ".wh.app.wasm"), "whiteout");
        assert_malformed(get(&tar, "bin/.wh..wh..opq"), "whiteout");
        // An opaque-directory marker only hides lower layers.
        let tar = layer(&[("bin/.wh..wh..opq", b""), ("bin/app.wasm", MODULE)]);
        assert_eq!(get(&tar, "bin/app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn a_path_through_a_link_is_refused() {
        // `lib` → `real`, then `lib/app.wasm`: unpacked, it would land on `real/app.wasm`.
        let tar = end(&[
            raw_entry(b"real/app.wasm", tar::EntryType::Regular, None, MODULE),
            raw_entry(b"lib", tar::EntryType::Symlink, Some("real"), b""),
            raw_entry(b"lib/app.wasm", tar::EntryType::Regular, None, b"evil"),
        ]);
        assert_malformed(get(&tar, "real/app.wasm"), "through the link `lib`");
        // The module's own directory a link, in either order.
        let tar = end(&[
            raw_entry(b"bin/app.wasm", tar::EntryType::Regular, None, MODULE),
            raw_entry(b"bin", tar::EntryType::Symlink, Some("/"), b""),
        ]);
        assert_malformed(get(&tar, "bin/app.wasm"), "not a directory");
        let tar = end(&[
            raw_entry(b"bin", tar::EntryType::Regular, None, b""),
            raw_entry(b"bin/app.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_malformed(get(&tar, "bin/app.wasm"), "not a directory");
        // A real directory is fine.
        let tar = end(&[
            raw_entry(b"bin/", tar::EntryType::Directory, None, b""),
            raw_entry(b"bin/app.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_eq!(get(&tar, "bin/app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn a_file_over_the_limit_is_too_large() {
        let big = vec![0_u8; 4096];
        let tar = layer(&[("app.wasm", &big)]);
        let small = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 1024 * 1024,
        };
        assert!(matches!(
            extract(&tar, Compression::None, "app.wasm", small),
            Err(Error::TooLarge { limit: 1024, .. })
        ));
        let exact = Limits {
            max_file_bytes: 4096,
            ..small
        };
        assert_eq!(
            extract(&tar, Compression::None, "app.wasm", exact).unwrap(),
            big
        );
    }

    #[test]
    fn a_decompression_bomb_is_too_large() {
        // A 16 MiB entry of zeros before the module: tens of kilobytes compressed.
        let zeros = vec![0_u8; 16 * 1024 * 1024];
        let bomb = gzip(&layer(&[("filler", &zeros), ("app.wasm", MODULE)]));
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        let tight = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 1024 * 1024,
        };
        assert!(matches!(
            extract(&bomb, Compression::Gzip, "app.wasm", tight),
            Err(Error::TooLarge {
                limit: 1_048_576,
                ..
            })
        ));
        // Zeros after the archive count too.
        let mut padded = layer(&[("app.wasm", MODULE)]);
        padded.resize(4 * 1024 * 1024, 0);
        assert!(matches!(
            extract(&gzip(&padded), Compression::Gzip, "app.wasm", tight),
            Err(Error::TooLarge { .. })
        ));
        // The same layer within a large enough bound reads.
        let roomy = Limits {
            max_file_bytes: 1024,
            max_layer_bytes: 32 * 1024 * 1024,
        };
        assert_eq!(
            extract(&bomb, Compression::Gzip, "app.wasm", roomy).unwrap(),
            MODULE
        );
    }

    #[test]
    fn too_many_entries_is_too_large() {
        let files: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}"), MODULE)).collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let many = layer(&refs);
        assert!(matches!(
            extract_with_max_entries(&many, Compression::None, "f0", limits(), 10),
            Err(Error::TooLarge { limit: 10, .. })
        ));
        assert!(extract_with_max_entries(&many, Compression::None, "f19", limits(), 20).is_ok());
    }

    #[test]
    fn garbage_is_malformed() {
        assert_malformed(get(&[0x5a; 2048], "app.wasm"), "image layer");
        assert_malformed(
            extract(&[0x5a; 2048], Compression::Gzip, "app.wasm", limits()),
            "image layer",
        );
        // A tar layer read as gzip.
        let tar = layer(&[("app.wasm", MODULE)]);
        assert_malformed(
            extract(&tar, Compression::Gzip, "app.wasm", limits()),
            "image layer",
        );
    }

    #[test]
    fn a_truncated_gzip_is_malformed() {
        let gz = gzip(&layer(&[("app.wasm", MODULE)]));
        for cut in [gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            assert_malformed(
                extract(&gz[..cut], Compression::Gzip, "app.wasm", limits()),
                "image layer",
            );
        }
        // A corrupt checksum in the trailer.
        let mut bad = gz.clone();
        let crc = bad.len() - 8;
        bad[crc] ^= 1;
        assert_malformed(
            extract(&bad, Compression::Gzip, "app.wasm", limits()),
            "image layer",
        );
    }

    #[test]
    fn a_truncated_tar_is_malformed() {
        let tar = layer(&[("app.wasm", &[7_u8; 2000])]);
        assert_malformed(get(&tar[..1024], "app.wasm"), "cut short");
        assert_malformed(get(&tar[..700], "app.wasm"), "");
        // A header cut mid-block.
        assert_malformed(get(&tar[..300], "app.wasm"), "image layer");
    }

    #[test]
    fn data_after_the_archive_is_refused() {
        let mut tar = layer(&[("app.wasm", MODULE)]);
        tar.extend(raw_entry(
            b"app.wasm",
            tar::EntryType::Regular,
            None,
            b"evil",
        ));
        assert_malformed(get(&tar, "app.wasm"), "after the archive's end");
        // A second gzip member after the archive.
        let mut gz = gzip(&layer(&[("app.wasm", MODULE)]));
        gz.extend(gzip(b"hidden"));
        assert_malformed(
            extract(&gz, Compression::Gzip, "app.wasm", limits()),
            "after the archive's end",
        );
        // Garbage after the gzip stream.
        let mut gz = gzip(&layer(&[("app.wasm", MODULE)]));
        gz.extend_from_slice(b"garbage!");
        assert_malformed(
            extract(&gz, Compression::Gzip, "app.wasm", limits()),
            "image layer",
        );
        // Zeros (GNU tar's record padding) are fine.
        let mut padded = layer(&[("app.wasm", MODULE)]);
        padded.resize(10240, 0);
        assert_eq!(get(&padded, "app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn odd_entry_names_are_refused() {
        // Longer than PATH_MAX, though it would normalise to the module's path.
        let long = format!("{}app.wasm", "/".repeat(MAX_ENTRY_PATH_BYTES));
        let tar = end(&[
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
            with_pax(
                &[("path", long.as_bytes())],
                &raw_entry(b"x", tar::EntryType::Regular, None, b"evil"),
            ),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "longer than 4096");
        // Not UTF-8.
        let tar = end(&[
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
            raw_entry(b"bad\xff", tar::EntryType::Regular, None, b""),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "not UTF-8");
        // A NUL inside a PAX path.
        let tar = end(&[with_pax(
            &[("path", b"app.wasm\0.txt")],
            &raw_entry(b"x", tar::EntryType::Regular, None, b""),
        )]);
        assert_malformed(get(&tar, "app.wasm"), "NUL");
        // The root as something else than a directory.
        let tar = end(&[
            raw_entry(b"./", tar::EntryType::Symlink, Some("/etc"), b""),
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "root");
        // Control characters in a refused name do not reach the message raw.
        let tar = end(&[raw_entry(
            b"\x1b]0;pwned\x07/../x",
            tar::EntryType::Regular,
            None,
            b"",
        )]);
        let err = get(&tar, "app.wasm").unwrap_err().to_string();
        assert!(!err.contains('\u{1b}') && err.contains("\\u{1b}"), "{err}");
    }

    #[test]
    fn pax_records_readers_disagree_on_are_refused() {
        let file = raw_entry(b"x.wasm", tar::EntryType::Regular, None, MODULE);
        for (records, says) in [
            (vec![("GNU.sparse.name", &b"app.wasm"[..])], "GNU sparse"),
            (vec![("path", &b"a"[..]), ("path", b"b")], "more than once"),
            (vec![("size", &b"lots"[..])], "PAX size"),
        ] {
            let tar = end(&[
                raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
                with_pax(&records, &file),
            ]);
            assert_malformed(get(&tar, "app.wasm"), says);
        }
        // A global header that names a path.
        let mut global = tar::Header::new_ustar();
        let data = b"17 path=app.wasm\n";
        global.set_size(data.len() as u64);
        global.set_entry_type(tar::EntryType::XGlobalHeader);
        global.set_cksum();
        let mut g = global.as_bytes().to_vec();
        g.extend_from_slice(data);
        g.resize(1024, 0);
        let tar = end(&[
            g,
            raw_entry(b"x.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "global PAX header");
        // A GNU long name and a PAX path that disagree.
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("path", &b"app.wasm"[..])])
            .unwrap();
        let long = format!("{}/other.wasm", "l".repeat(120));
        let mut h = header(MODULE.len() as u64, tar::EntryType::Regular);
        builder.append_data(&mut h, &long, MODULE).unwrap();
        let tar = builder.into_inner().unwrap();
        assert_malformed(get(&tar, "app.wasm"), "GNU long name and a PAX path");
        // A PAX size that agrees is the size.
        let tar = end(&[with_pax(
            &[("size", b"8")],
            &raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        )]);
        assert_eq!(get(&tar, "app.wasm").unwrap(), MODULE);
    }

    #[test]
    fn normalise_cases() {
        for (input, output) in [
            ("app.wasm", "app.wasm"),
            ("/app.wasm", "app.wasm"),
            ("./app.wasm", "app.wasm"),
            ("/a//b/./c.wasm", "a/b/c.wasm"),
            ("a/b/", "a/b"),
            (".wh.x", ".wh.x"),
            ("...", "..."),
        ] {
            assert_eq!(normalise(input).unwrap(), output, "{input:?}");
        }
        for bad in ["", "/", ".", "./", "//.", "..", "a/../b", "/../a", "a\0b"] {
            assert!(
                matches!(normalise(bad), Err(Error::Malformed { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            normalise(&"a".repeat(MAX_ENTRY_PATH_BYTES + 1)),
            Err(Error::Malformed { .. })
        ));
        assert!(normalise(&"a".repeat(MAX_ENTRY_PATH_BYTES)).is_ok());
    }

    #[test]
    fn media_types() {
        for (media_type, compression) in [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(Compression::None),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Some(Compression::None),
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", None),
            ("application/vnd.wasm.content.layer.v1+wasm", None),
        ] {
            assert_eq!(
                Compression::from_media_type(media_type),
                compression,
                "{media_type}"
            );
        }
    }

    /// `bytes` as the body of an extension entry of `kind` (`x`, `g`, `L`), then the module.
    fn after_extension(kind: tar::EntryType, bytes: &[u8]) -> Vec<u8> {
        end(&[
            raw_entry(b"././@LongLink", kind, None, bytes),
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        ])
    }

    fn assert_extension_too_large(result: Result<Vec<u8>, Error>) {
        assert!(
            matches!(&result, Err(Error::TooLarge { what, limit })
                if what.contains("PAX or GNU long-name") && *limit == MAX_EXTENSION_BYTES),
            "{result:?}"
        );
    }

    /// Regression (the `tar` crate reads an extension body whole): a PAX record set, a global
    /// PAX header, a GNU long name and a GNU long link over the bound are refused as their
    /// header streams past, plain and gzipped; one at the bound is read as before.
    #[test]
    fn finding_an_extension_header_cannot_make_the_reader_allocate_the_layer_bound() {
        let over = MAX_EXTENSION_BYTES as usize + 1;
        for kind in [
            tar::EntryType::XHeader,
            tar::EntryType::XGlobalHeader,
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
        ] {
            // A valid record set of `over` bytes: one comment record.
            let mut record = format!("{over} comment=").into_bytes();
            record.resize(over - 1, b'a');
            record.push(b'\n');
            let tar = after_extension(kind, &record);
            assert_extension_too_large(get(&tar, "app.wasm"));
            assert_extension_too_large(extract(
                &gzip(&tar),
                Compression::Gzip,
                "app.wasm",
                limits(),
            ));
        }
        // At the bound: a comment is not a path, so the module is read.
        let at = MAX_EXTENSION_BYTES as usize;
        let mut record = format!("{at} comment=").into_bytes();
        record.resize(at - 1, b'a');
        record.push(b'\n');
        let tar = after_extension(tar::EntryType::XHeader, &record);
        assert_eq!(get(&tar, "app.wasm").unwrap(), MODULE);
        // The header check follows entries by their sizes: a huge extension after a large
        // file (whose data holds header-like bytes) is still found.
        let mut decoy = vec![0_u8; 4096];
        decoy[..512].copy_from_slice(
            raw_entry(b"x", tar::EntryType::XHeader, None, &[])
                .get(..512)
                .unwrap(),
        );
        let mut record = format!("{over} comment=").into_bytes();
        record.resize(over - 1, b'a');
        record.push(b'\n');
        let tar = end(&[
            raw_entry(b"data.bin", tar::EntryType::Regular, None, &decoy),
            raw_entry(b"././@LongLink", tar::EntryType::XHeader, None, &record),
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_extension_too_large(get(&tar, "app.wasm"));
    }

    #[test]
    fn a_gnu_sparse_entry_anywhere_and_a_pax_size_other_than_the_header_s_are_refused() {
        let tar = end(&[
            raw_entry(b"holes.bin", tar::EntryType::GNUSparse, None, b""),
            raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        ]);
        assert_malformed(get(&tar, "app.wasm"), "GNU sparse");
        // The header says 8 bytes, the PAX record 0: readers that follow the header and
        // readers that follow the record would see different entries next.
        let tar = end(&[with_pax(
            &[("size", b"0")],
            &raw_entry(b"app.wasm", tar::EntryType::Regular, None, MODULE),
        )]);
        assert_malformed(get(&tar, "app.wasm"), "not the header's size");
    }
}
