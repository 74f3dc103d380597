//! A command's registry budget: one deadline and one request count shared by every registry
//! operation a command makes, so that a registry answering each operation just in time cannot
//! hold a command for hundreds of them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The deadline and request cap of one command's registry work.
#[derive(Debug)]
pub(crate) struct Budget {
    deadline: Duration,
    max_requests: u32,
    /// When the first operation started: the clock runs from there.
    started: OnceLock<Instant>,
    /// Requests asked for so far (refused ones included).
    requests: AtomicU32,
    /// The first operation the deadline stopped, for the refusal.
    stopped: OnceLock<String>,
}

impl Budget {
    pub(crate) fn new(deadline: Duration, max_requests: u32) -> Self {
        Self {
            deadline,
            max_requests,
            started: OnceLock::new(),
            requests: AtomicU32::new(0),
            stopped: OnceLock::new(),
        }
    }

    /// Time left, the clock started if it was not.
    pub(crate) fn remaining(&self) -> Duration {
        let started = self.started.get_or_init(Instant::now);
        self.deadline.saturating_sub(started.elapsed())
    }

    /// Count one request; refused once the cap is reached.
    pub(crate) fn take(&self) -> Result<(), Error> {
        let before = self
            .requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        if before >= self.max_requests {
            Err(self.too_many())
        } else {
            Ok(())
        }
    }

    /// The refusal of `what`, stopped by the deadline.
    pub(crate) fn expired(&self, what: &str) -> Error {
        let _ = self.stopped.set(what.to_owned());
        Error::Timeout {
            what: format!("the command's registry deadline (stopped {what})"),
            after: self.deadline,
        }
    }

    fn too_many(&self) -> Error {
        Error::TooManyRequests {
            limit: self.max_requests,
        }
    }

    /// True once a request was refused by the cap.
    pub(crate) fn over_cap(&self) -> bool {
        self.requests.load(Ordering::SeqCst) > self.max_requests
    }

    /// Why the budget is spent, if it is: a request was refused, or the deadline passed.
    pub(crate) fn spent(&self) -> Option<Error> {
        if self.over_cap() {
            return Some(self.too_many());
        }
        let started = self.started.get()?;
        if started.elapsed() < self.deadline {
            return None;
        }
        let what = match self.stopped.get() {
            Some(what) => format!(" (stopped {what})"),
            None => String::new(),
        };
        Some(Error::Timeout {
            what: format!("the command's registry deadline{what}"),
            after: self.deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_cap_are_refused_and_spend_the_budget() {
        let budget = Budget::new(Duration::from_secs(60), 3);
        for _ in 0..3 {
            budget.take().unwrap();
        }
        assert!(budget.spent().is_none(), "the cap reached is not passed");
        assert!(matches!(
            budget.take(),
            Err(Error::TooManyRequests { limit: 3 })
        ));
        assert!(matches!(
            budget.spent(),
            Some(Error::TooManyRequests { limit: 3 })
        ));
        assert_eq!(
            budget.spent().unwrap().to_string(),
            "more than 3 registry requests in one command: refused"
        );
    }

    #[test]
    fn the_clock_starts_at_the_first_operation() {
        let budget = Budget::new(Duration::from_millis(50), 10);
        std::thread::sleep(Duration::from_millis(80));
        assert!(budget.spent().is_none(), "not started");
        assert!(budget.remaining() > Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(budget.remaining(), Duration::ZERO);
        let _ = budget.expired("fetching blob `x`");
        let Some(Error::Timeout { what, after }) = budget.spent() else {
            panic!("the deadline passed");
        };
        assert_eq!(after, Duration::from_millis(50));
        assert_eq!(
            what,
            "the command's registry deadline (stopped fetching blob `x`)"
        );
    }
}
