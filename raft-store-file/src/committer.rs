//! Who writes the log: the caller itself, or the writer thread.
//!
//! The log's files ([`Wal`]) are held by at most one writer at a time. A
//! change (`store_logs`, `delete_range`) that finds them idle and nothing
//! queued takes them and does its write and fdatasync on the calling thread,
//! inside [`tokio::task::block_in_place`] (the worker's other tasks move to
//! another thread meanwhile): no channel, no thread wake-up, no task wake-up
//! between the caller and the disk, which under a busy CPU is where a
//! durable write's time went (each wake-up waits for a time slice).
//!
//! A change that finds the files busy (or that runs where blocking is not
//! allowed: tokio's current-thread runtime, outside tokio) is queued for the
//! writer thread, which takes every queued request once the files are free
//! and writes the consecutive appends among them with one fdatasync (group
//! commit), exactly as before. A caller that wrote inline hands the files
//! back and wakes the thread only when something queued meanwhile.
//!
//! Order: a caller writes inline only when the queue is empty, so requests
//! are applied in the order they reached [`Committer::submit`]. Fail-stop:
//! an I/O error marks the shared state failed (in [`crate::writer`]);
//! whatever is queued then gets [`StorageError::Failed`]. A panic while
//! holding the files fails the store too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::StorageError;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::view::Shared;
use crate::wal::Wal;
use crate::writer::{self, Request};

/// The log's files and the queue of changes waiting for them.
pub(crate) struct Committer {
    state: Mutex<State>,
    /// Wakes the writer thread: something is queued and the files are free,
    /// or the store is closing.
    wake: Condvar,
    shared: Arc<Shared>,
    max_group: usize,
    /// Whether callers may write themselves ([`crate::FileStoreOptions::caller_writes`]).
    caller_writes: bool,
    /// Changes written by their caller (not by the writer thread).
    inline_writes: AtomicU64,
    /// Of those, changes written without `block_in_place`.
    quick_writes: AtomicU64,
    /// Changes queued for the writer thread.
    queued_writes: AtomicU64,
    /// How long the latest batch of changes that touched the files took
    /// (write and sync), in nanoseconds (starts high: the first write
    /// uses `block_in_place`).
    last_write_ns: AtomicU64,
    /// Tests: the next writer panics.
    #[cfg(test)]
    pub panic_next: std::sync::atomic::AtomicBool,
}

struct State {
    /// `None` while a caller or the writer thread is writing.
    wal: Option<Wal>,
    /// Changes waiting for the writer thread, oldest first.
    queue: VecDeque<Request>,
    /// The store is being dropped: the thread drains the queue and stops.
    closing: bool,
}

impl State {
    /// The files, if the caller may write itself: they are free and no
    /// earlier change is waiting for them (which would otherwise be
    /// overtaken).
    fn claim(&mut self) -> Option<Wal> {
        if self.queue.is_empty() {
            self.wal.take()
        } else {
            None
        }
    }
}

/// What [`Committer::submit`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Written by the caller; the reply has been sent.
    Inline,
    /// Queued for the writer thread.
    Queued,
}

/// A caller whose previous write (with its sync) took less than this
/// writes without [`tokio::task::block_in_place`], blocking its worker
/// thread like any short poll: handing the worker's other tasks to another
/// thread costs a thread wake-up, which is most of the time of a write to
/// storage whose sync is this quick (measured on tmpfs: about 2.4x the
/// single-client `bench` throughput of always using `block_in_place`). Slower syncs (a
/// real disk) always use `block_in_place`, so the worker's other tasks (say,
/// the peers that send the same entries to followers) run meanwhile.
const QUICK_WRITE: Duration = Duration::from_micros(50);

/// Whether this thread may block inside [`tokio::task::block_in_place`]:
/// only on a worker (or in `block_on`) of a multi-thread runtime. It
/// panics on a current-thread runtime, so that case (and running outside
/// tokio) uses the writer thread.
fn may_block_in_place() -> bool {
    matches!(Handle::try_current().map(|h| h.runtime_flavor()), Ok(RuntimeFlavor::MultiThread))
}

impl Committer {
    /// Shares `wal` and starts the writer thread, which stops once
    /// [`close`](Self::close) is called and the queue is empty.
    pub fn start(
        wal: Wal,
        max_group: usize,
        caller_writes: bool,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        let committer = Arc::new(Self {
            shared: wal.shared().clone(),
            state: Mutex::new(State { wal: Some(wal), queue: VecDeque::new(), closing: false }),
            wake: Condvar::new(),
            max_group: max_group.max(1),
            caller_writes,
            inline_writes: AtomicU64::new(0),
            quick_writes: AtomicU64::new(0),
            queued_writes: AtomicU64::new(0),
            last_write_ns: AtomicU64::new(u64::MAX),
            #[cfg(test)]
            panic_next: std::sync::atomic::AtomicBool::new(false),
        });
        let thread = committer.clone();
        let handle =
            std::thread::Builder::new().name("raft-wal-writer".into()).spawn(move || thread.run())?;
        Ok((committer, handle))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it
        // (only moves of whole values happen under the lock).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes written by their caller, of those without
    /// `block_in_place`, and changes queued for the writer thread, since
    /// the store was opened.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.inline_writes.load(Ordering::Relaxed),
            self.quick_writes.load(Ordering::Relaxed),
            self.queued_writes.load(Ordering::Relaxed),
        )
    }

    /// Pretends the latest write took `took` (tests choose the caller's
    /// way of blocking with it).
    #[cfg(test)]
    pub fn set_last_write(&self, took: Duration) {
        self.last_write_ns.store(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Takes the files as a writer would (`None` if busy): until the
    /// guard is dropped, every change queues.
    #[cfg(test)]
    pub fn hold(&self) -> Option<Held<'_>> {
        let wal = self.lock().wal.take()?;
        Some(Held { committer: self, wal: Some(wal) })
    }

    /// How many changes wait for the writer thread.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Applies `req` on the calling thread if the files are free, nothing
    /// is queued and blocking is allowed here; queues it for the writer
    /// thread otherwise. Either way its reply is (or will be) sent.
    pub fn submit(&self, req: Request) -> Result<Submitted, StorageError> {
        let may_block = may_block_in_place();
        let mut st = self.lock();
        if st.closing {
            return Err(StorageError::Failed("the log writer has stopped".into()));
        }
        if self.caller_writes && may_block {
            if let Some(wal) = st.claim() {
                drop(st);
                let mut held = Held { committer: self, wal: Some(wal) };
                if self.last_write_ns.load(Ordering::Relaxed) < QUICK_WRITE.as_nanos() as u64 {
                    held.process(vec![req]);
                    self.quick_writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::task::block_in_place(|| held.process(vec![req]));
                }
                drop(held);
                self.inline_writes.fetch_add(1, Ordering::Relaxed);
                return Ok(Submitted::Inline);
            }
        }
        st.queue.push_back(req);
        self.queued_writes.fetch_add(1, Ordering::Relaxed);
        if st.wal.is_some() {
            // Free files and a queued request: only the thread can be
            // waiting. A writer holding the files wakes it when done.
            self.wake.notify_one();
        }
        Ok(Submitted::Queued)
    }

    /// Tells the writer thread to stop once the queue is empty.
    pub fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_one();
    }

    /// The writer thread: waits for queued requests and free files, takes
    /// up to `max_group` requests at a time and applies them (group commit).
    fn run(&self) {
        let _stopped = ThreadStop { committer: self };
        loop {
            let (wal, batch) = {
                let mut st = self.lock();
                loop {
                    if !st.queue.is_empty() {
                        if let Some(wal) = st.wal.take() {
                            let n = st.queue.len().min(self.max_group);
                            let batch: Vec<Request> = st.queue.drain(..n).collect();
                            break (wal, batch);
                        }
                    } else if st.closing {
                        // Dropped here, on the thread the store joins:
                        // the directory lock is free once the join returns.
                        let wal = st.wal.take();
                        drop(st);
                        drop(wal);
                        tracing::debug!("log writer thread stopping");
                        return;
                    }
                    st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let mut held = Held { committer: self, wal: Some(wal) };
            held.process(batch);
        }
    }
}

/// Dropped when the writer thread ends. If it ends by a panic, the store
/// fails and the queued changes are dropped, so their callers get an error
/// instead of waiting for ever; later ones are refused.
struct ThreadStop<'a> {
    committer: &'a Committer,
}

impl Drop for ThreadStop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.committer.shared.fail("the log writer thread panicked".into());
            let mut st = self.committer.lock();
            st.closing = true;
            st.queue.clear();
        }
    }
}

/// The files while one writer holds them; handed back when dropped (also
/// on a panic, which fails the store).
pub(crate) struct Held<'a> {
    committer: &'a Committer,
    wal: Option<Wal>,
}

impl Held<'_> {
    /// Applies `requests` (see [`writer::process`]), timing the write.
    pub fn process(&mut self, requests: Vec<Request>) {
        #[cfg(test)]
        if self.committer.panic_next.swap(false, Ordering::SeqCst) {
            panic!("injected panic while holding the log's files");
        }
        if let Some(wal) = self.wal.as_mut() {
            let start = Instant::now();
            // Requests that touched no file (refused, or a delete of
            // nothing) say nothing about how long a sync takes.
            if writer::process(wal, requests) {
                let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.committer.last_write_ns.store(took, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.committer.shared.fail("a log write panicked".into());
        }
        let mut st = self.committer.lock();
        st.wal = self.wal.take();
        if !st.queue.is_empty() {
            self.committer.wake.notify_one();
        }
    }
}
