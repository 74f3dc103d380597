//! Wasm guests for tests, written in WAT and compiled here.

/// A WASI p1 command that prints `hello from a warrant guest` and exits 0.
pub const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from a warrant guest\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 27))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// The text [`HELLO_WAT`] prints.
pub const HELLO_OUTPUT: &str = "hello from a warrant guest\n";

/// The hello guest as a binary module.
pub fn hello_module() -> Vec<u8> {
    wat::parse_str(HELLO_WAT).expect("hello.wat compiles")
}

/// A command that exits with `code` through `proc_exit`.
pub fn exit_module(code: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    ))
    .expect("exit.wat compiles")
}

/// A command that loops forever.
pub fn spin_module() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#)
        .expect("spin.wat compiles")
}

/// A command that traps with `unreachable`.
pub fn trap_module() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#)
        .expect("trap.wat compiles")
}

/// A valid module of exactly `total` bytes (at least 64): the hello guest plus one custom
/// section of filler. Filler bytes vary with `seed` so different seeds give different digests.
pub fn module_of_size(total: usize, seed: u8) -> Vec<u8> {
    let mut module = hello_module();
    let name = b"warrant-filler";
    // A custom section: id 0, LEB128 size, name length, name, payload.
    let base = module.len() + 1 + 1 + name.len();
    assert!(total > base + 5, "size too small");
    // Solve for payload length with a 5-byte padded LEB128 size field.
    let payload_len = total - base - 5;
    let section_len = 1 + name.len() + payload_len;
    module.push(0);
    module.extend_from_slice(&leb128_padded(section_len as u32));
    module.push(name.len() as u8);
    module.extend_from_slice(name);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    module.extend((0..payload_len).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    assert_eq!(module.len(), total);
    module
}

fn leb128_padded(mut v: u32) -> [u8; 5] {
    let mut out = [0u8; 5];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (v & 0x7f) as u8;
        v >>= 7;
        if i < 4 {
            *byte |= 0x80;
        }
    }
    out
}

/// A minimal component (`(component)`), for kind detection.
pub fn empty_component() -> Vec<u8> {
    wat::parse_str("(component)").expect("component compiles")
}

/// A policy directory under `dir` whose one policy permits everything, for tests about
/// something other than policy. Returns its path as text, for `--policies`.
pub fn permit_all_policies(dir: &std::path::Path) -> String {
    let policies = dir.join("permit-all-policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("all.cedar"),
        "@id(\"test-permit-all\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    policies.to_str().unwrap().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_modules_have_the_exact_size_and_a_module_preamble() {
        for size in [200, 4096, 1 << 20] {
            let m = module_of_size(size, 7);
            assert_eq!(m.len(), size);
            assert_eq!(&m[..8], b"\0asm\x01\0\0\0");
        }
        assert_ne!(module_of_size(4096, 1), module_of_size(4096, 2));
    }
}
