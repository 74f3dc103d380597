//! A guest's captured output, and how its run ended.

use super::*;

/// Where a run's stdout and stderr go.
pub enum Output {
    /// Captured in memory, each capped at [`RunLimits::output_bytes`], and returned in the
    /// [`Finished`] (`warrant run`).
    Captured,
    /// Written to these files as the guest writes them (a containerd task's pipes); nothing is
    /// kept, and no cap applies: the reader paces the guest.
    Files {
        /// The guest's stdout.
        stdout: std::fs::File,
        /// The guest's stderr.
        stderr: std::fs::File,
    },
}

/// A guest's stdout and stderr: captured pipes, or files taken by the WASI context.
pub(super) struct GuestIo {
    captured: Option<(MemoryOutputPipe, MemoryOutputPipe)>,
    files: Option<(std::fs::File, std::fs::File)>,
    cap: usize,
}

impl GuestIo {
    pub(super) fn new(limits: &RunLimits) -> Self {
        Self::with(Output::Captured, limits)
    }

    pub(super) fn with(output: Output, limits: &RunLimits) -> Self {
        let cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        match output {
            Output::Captured => Self {
                captured: Some((MemoryOutputPipe::new(cap), MemoryOutputPipe::new(cap))),
                files: None,
                cap,
            },
            Output::Files { stdout, stderr } => Self {
                captured: None,
                files: Some((stdout, stderr)),
                cap,
            },
        }
    }

    /// The guest's WASI context: its arguments, its output, and its handles
    /// ([`capability::wasi_context`]).
    pub(super) fn builder(
        &mut self,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<WasiCtxBuilder, SandboxError> {
        let mut builder = capability::wasi_context(args, limits, handles)?;
        if let Some((stdout, stderr)) = &self.captured {
            builder.stdout(stdout.clone()).stderr(stderr.clone());
        }
        if let Some((stdout, stderr)) = self.files.take() {
            builder
                .stdout(wasmtime_wasi::cli::OutputFile::new(stdout))
                .stderr(wasmtime_wasi::cli::OutputFile::new(stderr));
        }
        Ok(builder)
    }

    pub(super) fn finish(
        self,
        error: Option<&wasmtime::Error>,
        hit: Option<(Limit, String)>,
        limits: &RunLimits,
        elapsed: Duration,
    ) -> Finished {
        let (stdout, stderr) = match &self.captured {
            Some((stdout, stderr)) => (stdout.contents().to_vec(), stderr.contents().to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        let output_full =
            self.captured.is_some() && (stdout.len() >= self.cap || stderr.len() >= self.cap);
        Finished {
            outcome: classify(error, hit, output_full, limits),
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// How a run ended. A full stdout or stderr pipe means output was lost (writes past the cap
/// fail), so it counts as the output limit even when the guest then exited normally or trapped
/// on the failed write; the deadline and memory limits keep precedence.
pub(super) fn classify(
    error: Option<&wasmtime::Error>,
    limit_hit: Option<(Limit, String)>,
    output_full: bool,
    limits: &RunLimits,
) -> Outcome {
    if error.is_some_and(|e| e.downcast_ref::<Stopped>().is_some()) {
        return Outcome::Stopped;
    }
    if let Some((limit, detail)) = limit_hit {
        return Outcome::Limited { limit, detail };
    }
    let trap = error.and_then(|e| e.downcast_ref::<Trap>());
    if trap == Some(&Trap::OutOfFuel) {
        return Outcome::Limited {
            limit: Limit::Fuel,
            detail: format!(
                "the guest used all of its {} units of fuel",
                limits.fuel.unwrap_or(0)
            ),
        };
    }
    let waited = error.is_some_and(|e| e.downcast_ref::<WaitedPastDeadline>().is_some());
    let past = if waited {
        Some("was still waiting in a host call (a sleep, a poll, a blocking read) at")
    } else if trap == Some(&Trap::Interrupt) {
        Some("ran past")
    } else {
        None
    };
    if let Some(how) = past {
        return Outcome::Limited {
            limit: Limit::Deadline,
            detail: format!("the guest {how} its {:?} deadline", limits.timeout),
        };
    }
    if output_full {
        return Outcome::Limited {
            limit: Limit::Output,
            detail: format!(
                "the guest wrote {} bytes or more to stdout or stderr; output past that was dropped",
                limits.output_bytes
            ),
        };
    }
    let Some(e) = error else {
        return Outcome::Exited(0);
    };
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    match e.downcast_ref::<Trap>() {
        Some(trap) => Outcome::Trapped(trap.to_string()),
        None => Outcome::Trapped(format!("{e:#}")),
    }
}
