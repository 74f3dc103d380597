//! `warrant keygen`: generate an ECDSA P-256 key pair.

use std::path::PathBuf;

use super::error::CliError;
use crate::exit::Exit;
use crate::keys::SigningKey;

/// `warrant keygen --out PREFIX`.
pub(super) fn keygen(out: PathBuf) -> Result<Exit, CliError> {
    let key = SigningKey::generate()?;
    let public = crate::keys::write_key_pair(&out, &key)?;
    outln!("{}", public.fingerprint());
    Ok(Exit::Success)
}
