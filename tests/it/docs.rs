//! What the documentation promises about the code, checked against the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `// INVARIANT (name)` marker in the crates' sources.
fn markers() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for marked in text.split("INVARIANT (").skip(1) {
                    if let Some((name, _)) = marked.split_once(')') {
                        found.insert(name.to_owned());
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for krate in ["broker/src", "registry-client/src", "audits/src"] {
        walk(&root().join(krate), &mut found);
    }
    found
}

/// The invariants `ARCHITECTURE.md` names: the bold names in its "Invariants" section.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text.find("## Invariants").expect("an Invariants section");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .split("**")
        .skip(1)
        .step_by(2)
        .map(str::to_lowercase)
        .collect()
}

/// ARCHITECTURE.md's invariants are marked where the code establishes them, and every marker
/// in the code is one it names: the list and the code cannot drift apart.
#[test]
fn every_documented_invariant_is_marked_in_the_code_and_every_marker_documented() {
    let markers = markers();
    let documented = documented();
    assert!(documented.len() >= 10, "{documented:?}");
    let unmarked: Vec<_> = documented.difference(&markers).collect();
    let undocumented: Vec<_> = markers.difference(&documented).collect();
    assert!(
        unmarked.is_empty(),
        "named in ARCHITECTURE.md, marked nowhere: {unmarked:?}"
    );
    assert!(
        undocumented.is_empty(),
        "marked in code, not named in ARCHITECTURE.md: {undocumented:?}"
    );
}
