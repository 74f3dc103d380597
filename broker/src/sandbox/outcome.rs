//! A guest's captured output, and how its run ended.

use super::*;

/// A guest's captured stdout and stderr.
pub(super) struct GuestIo {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    cap: usize,
}

impl GuestIo {
    pub(super) fn new(limits: &RunLimits) -> Self {
        let cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        Self {
            stdout: MemoryOutputPipe::new(cap),
            stderr: MemoryOutputPipe::new(cap),
            cap,
        }
    }

    /// The guest's WASI context: its arguments, these pipes, and its handles
    /// ([`capability::wasi_context`]).
    pub(super) fn builder(
        &self,
        args: &[String],
        limits: &RunLimits,
        handles: &Handles,
    ) -> Result<WasiCtxBuilder, SandboxError> {
        capability::wasi_context(args, &self.stdout, &self.stderr, limits, handles)
    }

    pub(super) fn finish(
        self,
        error: Option<&wasmtime::Error>,
        hit: Option<(Limit, String)>,
        limits: &RunLimits,
        elapsed: Duration,
    ) -> Finished {
        let stdout = self.stdout.contents().to_vec();
        let stderr = self.stderr.contents().to_vec();
        let output_full = stdout.len() >= self.cap || stderr.len() >= self.cap;
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
