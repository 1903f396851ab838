//! A bounded trace of the most recent simulation events, stored compactly
//! and only formatted when a run fails.

use std::collections::VecDeque;
use std::fmt;

use crate::core::Body;

/// How many events a failure report shows.
pub(crate) const TRACE_LEN: usize = 50;

/// A compact summary of a message body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MsgSummary {
    kind: &'static str,
    term: u64,
    a: u64,
    b: u64,
    c: u64,
    d: u64,
}

impl MsgSummary {
    pub(crate) fn of(body: &Body) -> Self {
        let s = |kind, term, a, b, c, d| MsgSummary { kind, term, a, b, c, d };
        match body {
            Body::AppendEntries(m) => s(
                "AppendEntries",
                m.term,
                m.prev_log_index,
                m.prev_log_term,
                m.entries.len() as u64,
                m.leader_commit,
            ),
            Body::AppendEntriesResponse(m) => s(
                "AppendEntriesResponse",
                m.term,
                u64::from(m.success),
                m.last_log_index,
                m.conflict_term,
                m.conflict_index,
            ),
            Body::RequestVote(m) => s(
                "RequestVote",
                m.term,
                m.last_log_index,
                m.last_log_term,
                u64::from(m.leadership_transfer),
                0,
            ),
            Body::RequestVoteResponse(m) => s("RequestVoteResponse", m.term, u64::from(m.granted), 0, 0, 0),
            Body::RequestPreVote(m) => s("RequestPreVote", m.term, m.last_log_index, m.last_log_term, 0, 0),
            Body::RequestPreVoteResponse(m) => {
                s("RequestPreVoteResponse", m.term, u64::from(m.granted), 0, 0, 0)
            }
            Body::TimeoutNow(m) => s("TimeoutNow", m.term, 0, 0, 0, 0),
            Body::TimeoutNowResponse(m) => s("TimeoutNowResponse", m.term, 0, 0, 0, 0),
        }
    }
}

impl fmt::Display for MsgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let MsgSummary { kind, term, a, b, c, d } = *self;
        match kind {
            "AppendEntries" => {
                write!(f, "{kind}(t{term} prev={a}/t{b} entries={c} commit={d})")
            }
            "AppendEntriesResponse" => {
                write!(f, "{kind}(t{term} ok={} last={b} conflict=t{c}@{d})", a == 1)
            }
            "RequestVote" => write!(f, "{kind}(t{term} last={a}/t{b} transfer={})", c == 1),
            "RequestPreVote" => write!(f, "{kind}(t{term} last={a}/t{b})"),
            "RequestVoteResponse" | "RequestPreVoteResponse" => {
                write!(f, "{kind}(t{term} granted={})", a == 1)
            }
            _ => write!(f, "{kind}(t{term})"),
        }
    }
}

/// What happened.
#[derive(Clone, Debug)]
pub(crate) enum TraceKind {
    Tick,
    Deliver {
        from: usize,
        to: usize,
        msg: MsgSummary,
    },
    Send {
        from: usize,
        to: usize,
        msg: MsgSummary,
        copies: usize,
    },
    Synced {
        node: usize,
        last: u64,
        sent: usize,
    },
    Crash {
        node: usize,
        lost_writes: usize,
    },
    Restart {
        node: usize,
        term: u64,
        last: u64,
    },
    Network(String),
    Client(String),
    Snapshot(String),
    /// A node's state after a step.
    State {
        node: usize,
        role: &'static str,
        term: u64,
        last: u64,
        commit: u64,
        applied: u64,
    },
}

/// One recorded event.
#[derive(Clone, Debug)]
pub(crate) struct TraceEvent {
    time: u64,
    kind: TraceKind,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tick = self.time / super::TICK_UNITS;
        let sub = self.time % super::TICK_UNITS;
        write!(f, "[{tick:>4}.{sub}] ")?;
        match &self.kind {
            TraceKind::Tick => write!(f, "tick"),
            TraceKind::Deliver { from, to, msg } => write!(f, "n{} -> n{} deliver {msg}", from + 1, to + 1),
            TraceKind::Send { from, to, msg, copies } => {
                let fate = match copies {
                    0 => " (lost)",
                    1 => "",
                    _ => " (duplicated)",
                };
                write!(f, "n{} -> n{} send {msg}{fate}", from + 1, to + 1)
            }
            TraceKind::Synced { node, last, sent } => {
                write!(f, "n{} fsync done (durable last={last}, {sent} waiting messages sent)", node + 1)
            }
            TraceKind::Crash { node, lost_writes } => {
                write!(f, "n{} CRASH ({lost_writes} unsynced writes lost)", node + 1)
            }
            TraceKind::Restart { node, term, last } => {
                write!(f, "n{} RESTART from durable state (term {term}, last index {last})", node + 1)
            }
            TraceKind::Network(s) => write!(f, "network: {s}"),
            TraceKind::Client(s) => write!(f, "client: {s}"),
            TraceKind::Snapshot(s) => write!(f, "snapshot: {s}"),
            TraceKind::State { node, role, term, last, commit, applied } => {
                write!(f, "    n{} is {role} t{term} last={last} commit={commit} applied={applied}", node + 1)
            }
        }
    }
}

/// The ring of recent events.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    events: VecDeque<TraceEvent>,
}

impl Trace {
    pub(crate) fn push(&mut self, time: u64, kind: TraceKind) {
        if self.events.len() == TRACE_LEN {
            self.events.pop_front();
        }
        self.events.push_back(TraceEvent { time, kind });
    }

    /// The recent events, oldest first, one per line.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }
}
