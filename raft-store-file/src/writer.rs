//! Applying changes to the log: the only code that changes the log's
//! files, run by whoever holds them ([`crate::committer`]: the caller or
//! the writer thread). Consecutive appends in one batch of requests are
//! written as one sync group with one fdatasync (group commit), and each
//! caller is answered once its entries are durable. Any I/O error fails the
//! store for good (fail-stop).

use raft::{Log, StorageError};
use tokio::sync::oneshot;

use crate::error::InvalidRequest;
use crate::record;
use crate::wal::Wal;

/// The answer to a request.
pub(crate) type Reply = oneshot::Sender<Result<(), StorageError>>;

/// A change to the log.
#[derive(Debug)]
pub(crate) enum Request {
    /// `store_logs`.
    Append {
        /// The entries.
        logs: Vec<Log>,
        /// Where the result goes.
        reply: Reply,
    },
    /// `delete_range(min, max)`.
    Delete {
        /// Lowest index to delete.
        min: u64,
        /// Highest index to delete.
        max: u64,
        /// Where the result goes.
        reply: Reply,
    },
}

/// Applies `requests` in order: consecutive appends are written as one
/// sync group (one fdatasync), each caller answered once its entries are
/// durable. Runs on whichever thread holds the files (see
/// [`crate::committer`]). Returns whether any file operation was done
/// (`false` when every request was refused, empty, or changed nothing).
pub(crate) fn process(wal: &mut Wal, requests: Vec<Request>) -> bool {
    let mut batch = Batch { wal, entries: Vec::new(), waiters: Vec::new(), touched: false };
    batch.process(requests);
    batch.touched
}

/// What an append does to the log.
enum AppendKind {
    /// Nothing to write.
    Empty,
    /// Extends the log (or starts an empty one).
    Extend,
    /// Replaces the entries from this index on.
    Overwrite(u64),
}

fn classify(logs: &[Log], first: u64, last: u64) -> Result<AppendKind, InvalidRequest> {
    let Some(head) = logs.first() else { return Ok(AppendKind::Empty) };
    if head.index == 0 {
        return Err(InvalidRequest::ZeroIndex);
    }
    for pair in logs.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return Err(InvalidRequest::NotContiguous { after: pair[0].index, got: pair[1].index });
        }
    }
    for log in logs {
        if record::encoded_len(log) - record::FRAME_HEADER > record::MAX_PAYLOAD {
            return Err(InvalidRequest::TooLarge { index: log.index, len: log.data.len() });
        }
    }
    if last == 0 || head.index == last + 1 {
        Ok(AppendKind::Extend)
    } else if head.index > last + 1 {
        Err(InvalidRequest::Hole { last, first_new: head.index })
    } else if head.index <= first {
        Ok(AppendKind::Overwrite(first))
    } else {
        Ok(AppendKind::Overwrite(head.index))
    }
}

/// One batch of queued requests being processed.
struct Batch<'a> {
    wal: &'a mut Wal,
    /// Entries of the sync group being gathered.
    entries: Vec<Log>,
    /// Callers whose entries are in `entries`.
    waiters: Vec<Reply>,
    /// Whether a file operation was done.
    touched: bool,
}

impl Batch<'_> {
    fn process(&mut self, requests: Vec<Request>) {
        for req in requests {
            match req {
                Request::Append { logs, reply } => self.append(logs, reply),
                Request::Delete { min, max, reply } => {
                    self.flush();
                    let res = self.delete(min, max);
                    let _ = reply.send(res);
                }
            }
        }
        self.flush();
    }

    /// `(first, last)` as they will be once the gathered group is written.
    fn bounds(&self) -> Result<(u64, u64), StorageError> {
        let (first, last) = self.wal.bounds()?;
        match (self.entries.first(), self.entries.last()) {
            (Some(head), Some(tail)) => Ok((if first == 0 { head.index } else { first }, tail.index)),
            _ => Ok((first, last)),
        }
    }

    fn append(&mut self, logs: Vec<Log>, reply: Reply) {
        let kind = match self.bounds() {
            Ok((first, last)) => classify(&logs, first, last).map_err(StorageError::from),
            Err(e) => Err(e),
        };
        match kind {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(AppendKind::Empty) => {
                let _ = reply.send(Ok(()));
            }
            Ok(AppendKind::Extend) => {
                self.entries.extend(logs);
                self.waiters.push(reply);
            }
            Ok(AppendKind::Overwrite(from)) => {
                self.flush();
                let res = self.fatal(|wal| {
                    let (first, _) = wal.bounds()?;
                    if from <= first {
                        wal.clear()?;
                    } else {
                        wal.truncate_from(from)?;
                    }
                    wal.append(&logs)
                });
                let _ = reply.send(res);
            }
        }
    }

    fn delete(&mut self, min: u64, max: u64) -> Result<(), StorageError> {
        let (first, last) = self.wal.bounds()?;
        if min > max || first == 0 || max < first || min > last {
            return Ok(());
        }
        if min > first && max < last {
            return Err(InvalidRequest::MiddleDelete { min, max, first, last }.into());
        }
        self.fatal(|wal| {
            if min <= first && max >= last {
                wal.clear()
            } else if min <= first {
                wal.compact_to(max + 1)
            } else {
                wal.truncate_from(min)
            }
        })
    }

    /// Runs a file operation; an error fails the store.
    fn fatal(&mut self, op: impl FnOnce(&mut Wal) -> Result<(), StorageError>) -> Result<(), StorageError> {
        self.touched = true;
        let res = op(self.wal);
        if let Err(e) = &res {
            self.wal.shared().fail(e.to_string());
        }
        res
    }

    /// Writes the gathered group with one sync and answers its callers.
    fn flush(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.entries);
        let waiters = std::mem::take(&mut self.waiters);
        match self.fatal(|wal| wal.append(&entries)) {
            Ok(()) => {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                let why = e.to_string();
                let mut first = Some(e);
                for w in waiters {
                    let res = first.take().unwrap_or_else(|| StorageError::Failed(why.clone()));
                    let _ = w.send(Err(res));
                }
            }
        }
    }
}
