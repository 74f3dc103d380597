//! `containerd-shim-warrant-v1`: Warrant as a containerd runtime (`io.containerd.warrant.v1`).
//!
//! containerd starts this binary for each task (a Kubernetes pod's containers share one); the
//! task protocol is runwasi's `containerd-shimkit`, and every container goes through Warrant's
//! stages in [`instance`]: its image's blobs read from containerd's content store by digest and
//! hashed, its signatures verified under the node's trust, its requests decided by the node's
//! policies and recorded in the node's audit log, and only then its module run, in this
//! process, with the granted handles and nothing of the container's root file system.

mod content;
mod instance;

/// Serve containerd's shim protocol (its `start`, `delete` and serving modes, from the
/// arguments containerd gives).
pub fn main() {
    containerd_shimkit::sandbox::cli::shim_main::<instance::WarrantInstance>(
        "warrant",
        containerd_shimkit::shim_version!(),
        None,
    );
}
