//! The FSM task: applies committed entries in order, in batches, and
//! resolves the futures of the callers who proposed them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Applied, Waiter};
use crate::fsm::Fsm;
use crate::types::{Log, LogType};

/// Committed entries plus whoever waits on some of them (by index).
pub(crate) struct ApplyBatch<R> {
    pub(crate) entries: Vec<Log>,
    pub(crate) waiters: Vec<(u64, Waiter<R>)>,
}

/// Most entries handed to one `apply_batch` call.
const MAX_BATCH: usize = 4096;

pub(crate) async fn run<F: Fsm>(
    mut fsm: F,
    batch_apply: bool,
    mut batches: mpsc::UnboundedReceiver<ApplyBatch<F::Response>>,
    applied: Arc<AtomicU64>,
    applied_tx: watch::Sender<u64>,
) -> F {
    while let Some(first) = batches.recv().await {
        let mut entries = first.entries;
        let mut waiters = first.waiters;
        while entries.len() < MAX_BATCH {
            match batches.try_recv() {
                Ok(more) => {
                    entries.extend(more.entries);
                    waiters.extend(more.waiters);
                }
                Err(_) => break,
            }
        }
        let Some(last) = entries.last().map(|e| e.index) else { continue };
        let skip = applied.load(Ordering::Acquire);
        let commands: Vec<Log> =
            entries.iter().filter(|e| e.log_type == LogType::Command && e.index > skip).cloned().collect();
        let mut responses = if batch_apply {
            fsm.apply_batch(&commands).await
        } else {
            let mut out = Vec::with_capacity(commands.len());
            for c in &commands {
                out.push(fsm.apply(c).await);
            }
            out
        }
        .into_iter();
        let mut waiters = waiters.into_iter().peekable();
        for cmd in &commands {
            let response = responses.next();
            while waiters.peek().is_some_and(|(i, _)| *i < cmd.index) {
                if let Some((i, w)) = waiters.next() {
                    resolve_index(i, w);
                }
            }
            if waiters.peek().is_some_and(|(i, _)| *i == cmd.index) {
                if let (Some((_, w)), Some(response)) = (waiters.next(), response) {
                    match w {
                        Waiter::Apply(tx) => {
                            let _ = tx.send(Ok(Applied { index: cmd.index, response }));
                        }
                        other => resolve_index(cmd.index, other),
                    }
                }
            }
        }
        for (i, w) in waiters {
            resolve_index(i, w);
        }
        applied.store(last.max(skip), Ordering::Release);
        applied_tx.send_replace(last.max(skip));
    }
    fsm
}

/// Answers a waiter on a non-command entry (barrier, no-op, configuration).
fn resolve_index<R>(index: u64, waiter: Waiter<R>) {
    match waiter {
        Waiter::Index(tx) => {
            let _ = tx.send(Ok(index));
        }
        Waiter::Apply(tx) => {
            let _ = tx.send(Err(crate::Error::Fsm(format!("entry {index} was not a command"))));
        }
    }
}
