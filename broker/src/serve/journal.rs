//! Request records, written with group commit: one writer thread appends what requests send
//! it and commits (one `fdatasync`) every [`limits::BATCH_RECORDS`] records or every
//! [`limits::BATCH_WINDOW`], whichever comes first, and signs a checkpoint every checkpoint
//! interval and when it stops.
//!
//! What a crash can lose: the records of requests that ended within the last batch window
//! (at most [`limits::BATCH_WINDOW`] plus the time one commit takes, and at most
//! [`limits::MAX_PENDING`] records). Tenants' `pull`, `verify`, `decide`, `instantiate` and
//! `load` records are not written here: each is committed before its tenant takes traffic.
//!
//! Every request takes a slot ([`Journal::reserve`]) before its guest runs and gives it back
//! only once its record is committed, so records waiting for the disk are bounded: with no
//! slot free the request is refused (503), never run unrecorded. Once the log refuses a write
//! or a commit, no slot is given again: every later request is refused.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use registry_client::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Broker;

/// The journal's bounds.
pub mod limits {
    use std::time::Duration;
    /// Records committed together at most.
    pub const BATCH_RECORDS: usize = 512;
    /// Longest a record waits for its commit once the writer has it.
    pub const BATCH_WINDOW: Duration = Duration::from_millis(5);
    /// Records reserved and not yet committed, all requests together.
    pub const MAX_PENDING: usize = 16_384;
}

/// One request's record, owned until it is written.
pub struct Entry {
    /// The tenant.
    pub tenant: Arc<str>,
    /// The artifact served, if one was.
    pub digest: Option<Digest>,
    /// The method.
    pub method: String,
    /// The path, without the query (capped).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// From arrival to the end of the response.
    pub elapsed: Duration,
    /// The limit that stopped the guest, if one did.
    pub limit: Option<String>,
    /// The trap, if the guest trapped.
    pub trap: Option<String>,
    /// Body bytes sent.
    pub response_bytes: u64,
    /// Outgoing requests let through.
    pub outbound_allowed: u32,
    /// Outgoing requests refused.
    pub outbound_denied: u32,
}

/// A reserved place for one request's record.
pub struct Slot {
    permit: OwnedSemaphorePermit,
    tx: Sender<Message>,
}

impl Slot {
    /// Hand the record to the writer; the slot is freed once it is committed.
    pub fn write(self, entry: Entry) {
        let _ = self.tx.send(Message::Record(entry, self.permit));
    }
}

enum Message {
    Record(Entry, OwnedSemaphorePermit),
    Checkpoint(std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// The request journal (see the module docs).
pub struct Journal {
    tx: Sender<Message>,
    slots: Arc<Semaphore>,
    /// The log refused a write or a commit: nothing more is served.
    broken: Arc<std::sync::atomic::AtomicBool>,
    /// Not joined: it ends when the last sender (a request's slot) is gone.
    _writer: std::thread::JoinHandle<()>,
}

impl Journal {
    /// Start the writer, appending to `broker`'s audit log, signing a checkpoint every
    /// `checkpoint_interval`.
    pub fn start(broker: Broker, checkpoint_interval: Duration) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = broken.clone();
        let writer = std::thread::Builder::new()
            .name("warrant-journal".into())
            .spawn(move || write_loop(&broker, &rx, checkpoint_interval, &flag))?;
        Ok(Self {
            tx,
            slots: Arc::new(Semaphore::new(limits::MAX_PENDING)),
            broken,
            _writer: writer,
        })
    }

    /// A slot for one request's record, or none when [`limits::MAX_PENDING`] records wait or
    /// the log has refused a write.
    pub fn reserve(&self) -> Option<Slot> {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(Slot {
            permit,
            tx: self.tx.clone(),
        })
    }

    /// Commit what is pending and sign a checkpoint now.
    pub fn checkpoint(&self) -> Result<(), String> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(Message::Checkpoint(done))
            .map_err(|_| "the journal's writer has stopped".to_owned())?;
        wait.recv()
            .map_err(|_| "the journal's writer has stopped".to_owned())?
    }
}

fn write_loop(
    broker: &Broker,
    rx: &Receiver<Message>,
    checkpoint_interval: Duration,
    broken: &std::sync::atomic::AtomicBool,
) {
    let mut last_checkpoint = Instant::now();
    let mut batch: Vec<OwnedSemaphorePermit> = Vec::with_capacity(limits::BATCH_RECORDS);
    let mut dirty = false;
    loop {
        let until_checkpoint = checkpoint_interval.saturating_sub(last_checkpoint.elapsed());
        let first = match rx.recv_timeout(until_checkpoint.max(Duration::from_millis(1))) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut checkpoint_asked = Vec::new();
        if let Some(first) = first {
            let window = Instant::now() + limits::BATCH_WINDOW;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record(entry, permit) => {
                        if !append(broker, &entry) {
                            broken.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        batch.push(permit);
                        dirty = true;
                    }
                    Message::Checkpoint(done) => checkpoint_asked.push(done),
                }
                if batch.len() >= limits::BATCH_RECORDS || !checkpoint_asked.is_empty() {
                    break;
                }
                let left = window.saturating_duration_since(Instant::now());
                next = rx.recv_timeout(left).ok();
            }
            if let Err(e) = broker.commit() {
                broken.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("the audit log refused a commit; nothing more is served: {e}");
            }
            // The slots are free once their records are durable.
            batch.clear();
        }
        if !checkpoint_asked.is_empty()
            || (dirty && last_checkpoint.elapsed() >= checkpoint_interval)
        {
            let result = broker.checkpoint().map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!("the audit log refused a checkpoint: {e}");
            }
            last_checkpoint = Instant::now();
            dirty = false;
            for done in checkpoint_asked {
                let _ = done.send(result.clone());
            }
        }
    }
    let _ = broker.checkpoint();
}

/// Append one record; false when the log refused it.
fn append(broker: &Broker, e: &Entry) -> bool {
    let record = crate::records::Request {
        tenant: &e.tenant,
        digest: e.digest.as_ref(),
        method: &e.method,
        path: &e.path,
        status: e.status,
        elapsed_us: u64::try_from(e.elapsed.as_micros()).unwrap_or(u64::MAX),
        limit: e.limit.as_deref(),
        trap: e.trap.as_deref(),
        response_bytes: e.response_bytes,
        outbound_allowed: e.outbound_allowed,
        outbound_denied: e.outbound_denied,
    };
    match broker.record_later(&record) {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(
                "the audit log refused a request record; nothing more is served: {err}"
            );
            false
        }
    }
}
