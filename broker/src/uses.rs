//! What an artifact can use: the host capabilities its imports reach, read from its bytes
//! without compiling them (`warrant policy suggest` and `policy diff`).
//!
//! Only the top level's imports count: they are what the host must supply. A core module's
//! WASI preview 1 functions and a component's WASI 0.2 interfaces are sorted into the kinds of
//! handle Warrant grants; everything else is listed as it is named.

use std::collections::BTreeSet;

use serde::Serialize;
use wasmparser::{Parser, Payload};

/// The kinds of handle Warrant grants that an artifact's imports can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Preopened directories (`fs.read`, `fs.write`).
    Filesystem,
    /// Environment variables (`env.read`).
    Environment,
    /// Sockets (`net.connect`): WASI 0.2 components only.
    Sockets,
    /// Outgoing HTTP requests (`http.outgoing`): `wasi:http` components only.
    HttpOutgoing,
}

impl Capability {
    /// What the capability is, after "imports no".
    pub fn noun(self) -> &'static str {
        match self {
            Self::Filesystem => "filesystem",
            Self::Environment => "environment variables",
            Self::Sockets => "sockets",
            Self::HttpOutgoing => "outgoing HTTP",
        }
    }

    /// How the capability reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Filesystem => "a filesystem (directories)",
            Self::Environment => "environment variables",
            Self::Sockets => "sockets",
            Self::HttpOutgoing => "outgoing HTTP requests",
        }
    }
}

/// What an artifact imports, sorted by capability.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Uses {
    /// The capabilities the imports reach, each with the imports that reach it.
    pub capabilities: Vec<(Capability, Vec<String>)>,
    /// Every top-level import: `module name` for a core module, the interface for a component.
    pub imports: BTreeSet<String>,
}

impl Uses {
    /// Whether the artifact imports anything that reaches `capability`.
    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities.iter().any(|(c, _)| *c == capability)
    }

    /// The imports that reach `capability`.
    pub fn imports_for(&self, capability: Capability) -> &[String] {
        self.capabilities
            .iter()
            .find(|(c, _)| *c == capability)
            .map_or(&[], |(_, i)| i.as_slice())
    }
}

/// The imports of `wasm` (a core module or a component), sorted by capability. Bytes that do
/// not parse are an error naming the offset.
pub fn uses(wasm: &[u8]) -> Result<Uses, String> {
    let mut imports = BTreeSet::new();
    // Nested modules and components import from their enclosing component, not from the host.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("not valid WebAssembly: {e}"))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(reader) if depth == 0 => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    imports.insert(format!("{} {}", import.module, import.name));
                }
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    imports.insert(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    let mut capabilities: Vec<(Capability, Vec<String>)> = Vec::new();
    for import in &imports {
        if let Some(capability) = capability_of(import) {
            match capabilities.iter_mut().find(|(c, _)| *c == capability) {
                Some((_, list)) => list.push(import.clone()),
                None => capabilities.push((capability, vec![import.clone()])),
            }
        }
    }
    capabilities.sort();
    Ok(Uses {
        capabilities,
        imports,
    })
}

/// The capability one import reaches, if any.
fn capability_of(import: &str) -> Option<Capability> {
    // A core module: `wasi_snapshot_preview1 path_open`.
    if let Some((module, name)) = import.split_once(' ') {
        if !matches!(module, "wasi_snapshot_preview1" | "wasi_unstable") {
            return None;
        }
        return match name {
            "environ_get" | "environ_sizes_get" => Some(Capability::Environment),
            // Preopens are found with `fd_prestat_*` and entered with `path_*`.
            n if n.starts_with("path_") || n.starts_with("fd_prestat") || n == "fd_readdir" => {
                Some(Capability::Filesystem)
            }
            // Preview 1 has no way to open a socket: `sock_*` work only on ones given at start,
            // which Warrant never gives.
            _ => None,
        };
    }
    // A component: `wasi:filesystem/types@0.2.0`.
    let interface = import.split_once('@').map_or(import, |(i, _)| i);
    let (package, _) = interface.split_once('/')?;
    match package {
        "wasi:filesystem" => Some(Capability::Filesystem),
        "wasi:sockets" => Some(Capability::Sockets),
        "wasi:cli" if interface == "wasi:cli/environment" => Some(Capability::Environment),
        "wasi:http" if interface == "wasi:http/outgoing-handler" => Some(Capability::HttpOutgoing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modules_preview1_imports_are_sorted_into_capabilities() {
        let wasm = wat::parse_str(
            r#"(module
              (import "wasi_snapshot_preview1" "path_open"
                (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
              (import "env" "environ_get" (func (param i32 i32) (result i32))))"#,
        )
        .unwrap();
        let uses = uses(&wasm).unwrap();
        assert!(uses.can(Capability::Filesystem));
        assert_eq!(
            uses.imports_for(Capability::Filesystem),
            ["wasi_snapshot_preview1 path_open"]
        );
        // Not WASI's environ_get, and preview 1's sockets are not connectable.
        assert!(!uses.can(Capability::Environment));
        assert!(!uses.can(Capability::Sockets));
        assert_eq!(uses.imports.len(), 4);
    }

    #[test]
    fn a_components_interfaces_are_sorted_and_nested_imports_ignored() {
        let wasm = wat::parse_str(
            r#"(component
              (import "wasi:cli/environment@0.2.0" (instance))
              (import "wasi:sockets/tcp@0.2.0" (instance))
              (import "wasi:http/outgoing-handler@0.2.0" (instance))
              (import "wasi:cli/stdout@0.2.0" (instance))
              (core module
                (import "wasi_snapshot_preview1" "path_open" (func))))"#,
        )
        .unwrap();
        let uses = uses(&wasm).unwrap();
        assert!(uses.can(Capability::Environment));
        assert!(uses.can(Capability::Sockets));
        assert!(uses.can(Capability::HttpOutgoing));
        // The core module's import is the component's business, not the host's.
        assert!(!uses.can(Capability::Filesystem));
        assert_eq!(uses.imports.len(), 4);
    }

    #[test]
    fn bytes_that_are_not_wasm_are_an_error() {
        assert!(uses(b"\0asm\x01\0\0\0\x99").is_err());
        assert!(uses(b"not wasm").is_err());
    }
}
