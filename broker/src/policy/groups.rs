//! Signer groups (`signer-groups.toml` in a policy directory) and the `approvals` fact they
//! give: how many distinct members of each group verifiably signed the artifact, so that "two
//! of these three keys" is one condition instead of every pair spelled out:
//!
//! ```cedar
//! principal.approvals.contains({group: "release", atLeast: 2})
//! ```
//!
//! `approvals` holds `{group, atLeast: k}` for every `k` from 1 to the number of the group's
//! members among the verified signers, so `contains` with `atLeast: k` is true exactly when at
//! least `k` of them signed. It is computed from **every** verified signature and is the same
//! in each per-signer evaluation, so the evaluation rule leaves it exact; a member counts once
//! however often it signed, and a signer matches a member only when kind, identity and issuer
//! are all equal (a keyless identity whose text equals a key's fingerprint is not that key).
//!
//! ```toml
//! [[group]]
//! name = "release"
//! signers = [
//!   { kind = "key", identity = "sha256:…" },
//!   { kind = "keyless", identity = "https://github.com/acme/…", issuer = "https://…" },
//! ]
//! ```

use serde::Deserialize;

use crate::verify::{Signer, SignerKind};

/// The file a policy directory's groups are read from.
pub const GROUPS_FILE: &str = "signer-groups.toml";
/// Most groups in a directory.
pub const MAX_GROUPS: usize = 256;
/// Most members of one group: quorums are of a handful of release keys; each member adds an
/// entry per count to every evaluation's `approvals`.
pub const MAX_GROUP_SIGNERS: usize = 64;

/// One group: a name and its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerGroup {
    /// `[a-z0-9-]+`, unique in the directory.
    pub name: String,
    /// Distinct members.
    pub members: Vec<Signer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    group: Vec<GroupSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSection {
    name: String,
    signers: Vec<MemberSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSection {
    kind: String,
    identity: String,
    #[serde(default)]
    issuer: Option<String>,
}

/// Parse and check a groups file's text.
pub fn parse(text: &str) -> Result<Vec<SignerGroup>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.group.len() > MAX_GROUPS {
        return Err(format!("{} groups; at most {MAX_GROUPS}", file.group.len()));
    }
    let mut groups: Vec<SignerGroup> = Vec::with_capacity(file.group.len());
    for g in file.group {
        let name = g.name;
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(format!("group name `{name}` is not `[a-z0-9-]+`"));
        }
        if groups.iter().any(|other| other.name == name) {
            return Err(format!("group `{name}` is defined twice"));
        }
        if g.signers.is_empty() || g.signers.len() > MAX_GROUP_SIGNERS {
            return Err(format!(
                "group `{name}` has {} signers; give 1 to {MAX_GROUP_SIGNERS}",
                g.signers.len()
            ));
        }
        let mut members: Vec<Signer> = Vec::with_capacity(g.signers.len());
        for m in g.signers {
            let member = member(&m).map_err(|e| format!("group `{name}`: {e}"))?;
            if members.contains(&member) {
                return Err(format!(
                    "group `{name}` names `{}` twice (a member counts once)",
                    member.identity
                ));
            }
            members.push(member);
        }
        groups.push(SignerGroup { name, members });
    }
    Ok(groups)
}

fn member(m: &MemberSection) -> Result<Signer, String> {
    let (kind, issuer) = match (m.kind.as_str(), &m.issuer) {
        ("key", None) => (SignerKind::Key, "key".to_owned()),
        ("key", Some(issuer)) if issuer == "key" => (SignerKind::Key, "key".to_owned()),
        ("key", Some(_)) => return Err("a key signer's issuer is `key` (or left out)".into()),
        ("keyless", Some(issuer)) if !issuer.is_empty() => (SignerKind::Keyless, issuer.clone()),
        ("keyless", _) => return Err("a keyless signer needs an `issuer`".into()),
        (other, _) => return Err(format!("signer kind `{other}` is not `key` or `keyless`")),
    };
    if kind == SignerKind::Key {
        let hex = m.identity.strip_prefix("sha256:").unwrap_or_default();
        let fingerprint = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !fingerprint {
            return Err(format!(
                "key identity `{}` is not `sha256:` and 64 lowercase hex digits (as `warrant \
                 keygen` prints it)",
                m.identity
            ));
        }
    } else if m.identity.is_empty() {
        return Err("a keyless signer needs an `identity`".into());
    }
    Ok(Signer {
        kind,
        identity: m.identity.clone(),
        issuer,
        claims: Default::default(),
    })
}

/// Each group's number of distinct members among `signers`, for the groups with at least one.
pub fn counts<'g>(groups: &'g [SignerGroup], signers: &[Signer]) -> Vec<(&'g str, usize)> {
    let same = |a: &Signer, b: &Signer| {
        a.kind == b.kind && a.identity == b.identity && a.issuer == b.issuer
    };
    groups
        .iter()
        .map(|g| {
            let n = g
                .members
                .iter()
                .filter(|m| signers.iter().any(|s| same(m, s)))
                .count();
            (g.name.as_str(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex: char) -> Signer {
        Signer::key(format!("sha256:{}", hex.to_string().repeat(64)))
    }

    #[test]
    fn groups_are_checked_when_read() {
        let ok = "[[group]]\nname = \"release\"\nsigners = [{ kind = \"key\", identity = \
                  \"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }]\n";
        assert_eq!(parse(ok).unwrap().len(), 1);
        for (bad, why) in [
            (ok.replace("release", "Release"), "is not `[a-z0-9-]+`"),
            (format!("{ok}{ok}"), "defined twice"),
            (ok.replace("sha256:aaaa", "sha256:AAAA"), "lowercase hex"),
            (ok.replace("\"key\"", "\"keyless\""), "needs an `issuer`"),
            (
                "[[group]]\nname = \"x\"\nsigners = []\n".into(),
                "give 1 to 64",
            ),
            (ok.replace("signers", "members"), "unknown field"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_member_counts_once_and_only_as_itself() {
        let groups = vec![SignerGroup {
            name: "release".into(),
            members: vec![key('a'), key('b'), key('c')],
        }];
        // `a` twice is one approval; a keyless signer whose identity is `b`'s fingerprint is
        // not `b`; `d` is no member.
        let impostor = Signer {
            kind: SignerKind::Keyless,
            identity: key('b').identity,
            issuer: "key".into(),
            claims: Default::default(),
        };
        let signers = [key('a'), key('a'), impostor, key('d')];
        assert_eq!(counts(&groups, &signers), [("release", 1)]);
        assert!(counts(&groups, &[key('d')]).is_empty());
    }
}
