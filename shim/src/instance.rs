//! One container: admitted through Warrant's stages when containerd creates it, run on a
//! thread of its own when started, stopped when killed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use broker::{AdmittedPod, Node, Output, PodSpec, Stop};
use chrono::{DateTime, Utc};
use containerd_shimkit::sandbox::sync::WaitableCell;
use containerd_shimkit::sandbox::{Error, Instance, InstanceConfig};
use oci_spec::runtime::Spec;

use crate::content::Containerd;

/// The annotations containerd's CRI plugin sets on a Kubernetes container.
const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const ANNOTATION_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const ANNOTATION_POD_NAME: &str = "io.kubernetes.cri.sandbox-name";

/// A container of this shim.
pub(crate) struct WarrantInstance {
    id: String,
    guest: Option<Guest>,
    stop: Stop,
    /// The signal that stopped it, for its exit status (128 + signal).
    signal: Arc<Mutex<Option<u32>>>,
    exit: WaitableCell<(u32, DateTime<Utc>)>,
}

/// A container with a guest to run (not a pod's sandbox).
struct Guest {
    admitted: Arc<AdmittedPod>,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Instance for WarrantInstance {
    async fn new(id: String, cfg: &InstanceConfig) -> Result<Self, Error> {
        let spec = Spec::load(cfg.bundle.join("config.json"))
            .map_err(|e| Error::InvalidArgument(format!("the container's spec: {e}")))?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        let guest = if annotations
            .get(ANNOTATION_CONTAINER_TYPE)
            .is_some_and(|t| t == "sandbox")
        {
            // A pod's sandbox (its "pause" container) holds namespaces for a Linux pod; a Wasm
            // guest uses none, so nothing runs for it: it lives until it is killed.
            None
        } else {
            Some(admit(&id, cfg, &spec, &annotations).await.map_err(|e| {
                log::error!("container {id}: {e}");
                Error::FailedPrecondition(format!("warrant: {e}"))
            })?)
        };
        Ok(Self {
            id,
            guest,
            stop: Stop::new(),
            signal: Arc::new(Mutex::new(None)),
            exit: WaitableCell::new(),
        })
    }

    async fn start(&self) -> Result<u32, Error> {
        let Some(guest) = &self.guest else {
            return Ok(std::process::id());
        };
        let admitted = guest.admitted.clone();
        let (stdout, stderr) = (open_pipe(&guest.stdout)?, open_pipe(&guest.stderr)?);
        let (stop, signal, exit, id) = (
            self.stop.clone(),
            self.signal.clone(),
            self.exit.clone(),
            self.id.clone(),
        );
        // The guest runs on a thread of its own: the sandbox blocks its caller, and must not
        // run on the shim's async runtime.
        std::thread::Builder::new()
            .name(format!("warrant-{id}"))
            .spawn(move || {
                let status = match admitted.run(Output::Files { stdout, stderr }, &stop) {
                    Ok(finished) => {
                        let signal = signal.lock().map_or(None, |s| *s);
                        broker::exit_status(&finished.outcome, signal)
                    }
                    Err(e) => {
                        log::error!("container {id}: {e}");
                        137
                    }
                };
                let _ = exit.set((status, Utc::now()));
            })
            .map_err(Error::Stdio)?;
        Ok(std::process::id())
    }

    async fn kill(&self, signal: u32) -> Result<(), Error> {
        // Signal 0 asks whether the task is alive; a Wasm guest cannot catch a signal, so any
        // other stops it (containerd sends SIGTERM, then SIGKILL).
        if signal == 0 {
            return Ok(());
        }
        if let Ok(mut s) = self.signal.lock() {
            s.get_or_insert(signal);
        }
        self.stop.stop();
        if self.guest.is_none() {
            let _ = self.exit.set((128 + signal, Utc::now()));
        }
        Ok(())
    }

    async fn delete(&self) -> Result<(), Error> {
        self.stop.stop();
        Ok(())
    }

    async fn wait(&self) -> (u32, DateTime<Utc>) {
        *self.exit.wait().await
    }
}

/// Take the container through Warrant's stages.
async fn admit(
    id: &str,
    cfg: &InstanceConfig,
    spec: &Spec,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Guest, String> {
    let node = Node::open(&Node::config_path()).map_err(|e| e.to_string())?;
    let containerd = Containerd::connect(&cfg.containerd_address, &cfg.namespace).await?;
    let (image, manifest) = containerd.image_of(id).await?;
    let process = spec.process().clone().unwrap_or_default();
    let memory_limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .and_then(|limit| u64::try_from(limit).ok())
        .filter(|limit| *limit > 0);
    let pod = PodSpec {
        image,
        manifest,
        namespace: annotations
            .get(ANNOTATION_NAMESPACE)
            .cloned()
            .unwrap_or_else(|| cfg.namespace.clone()),
        pod: annotations
            .get(ANNOTATION_POD_NAME)
            .cloned()
            .unwrap_or_else(|| id.to_owned()),
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        memory_limit,
    };
    let admitted = node
        .admit(&pod, &containerd)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Guest {
        admitted: Arc::new(admitted),
        stdout: cfg.stdout.clone(),
        stderr: cfg.stderr.clone(),
    })
}

/// The task's stdout or stderr (a FIFO containerd reads), or nowhere when it has none.
fn open_pipe(path: &Path) -> Result<std::fs::File, Error> {
    let path = if path.as_os_str().is_empty() {
        Path::new("/dev/null")
    } else {
        path
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::Stdio)
}
