//! `containerd-shim-warrant-v1`, built inside the test package so its integration tests can
//! install it for a private containerd (`CARGO_BIN_EXE_shim-it`). Same code as the shipped
//! binary.

fn main() {
    containerd_shim_warrant::main();
}
