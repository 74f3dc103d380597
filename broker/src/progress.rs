//! Progress bars for long transfers, shown only on a terminal and only for transfers large
//! enough to be worth watching.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Transfers smaller than this show no bar.
const MIN_BYTES_FOR_BAR: u64 = 4 * 1024 * 1024;

/// A progress bar on stderr, if stderr is a terminal.
pub struct TerminalProgress {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    /// Enabled when stderr is a terminal.
    pub fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if let Ok(mut guard) = self.bar.lock() {
            f(&mut guard);
        }
    }
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl registry_client::Progress for TerminalProgress {
    fn begin(&self, what: &str, total: u64) {
        if !self.enabled || total < MIN_BYTES_FOR_BAR {
            return;
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(registry_client::text::excerpt(what, 40));
        self.with_bar(|b| *b = Some(bar));
    }

    fn advance(&self, bytes: u64) {
        self.with_bar(|b| {
            if let Some(bar) = b {
                bar.inc(bytes);
            }
        });
    }

    fn end(&self) {
        self.with_bar(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        });
    }
}
