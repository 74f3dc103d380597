//! `containerd-shim-warrant-v1` (see the library's documentation).

fn main() {
    containerd_shim_warrant::main();
}
