//! Scenario text: a message or a `Ready` as short lines, so that a
//! scenario's expected output reads like a trace (`n1->n2 App t2 prev=1/1
//! [2/2:noop] commit=1 round=0`, `persist term 2 vote n1`, `apply 3/2`).

use std::fmt::Write as _;

use crate::core::{Body, Message, Ready};
use crate::types::{Log, LogType};

/// One log entry as `index/term`, with its kind unless it is a command.
fn entry(e: &Log) -> String {
    match e.log_type {
        LogType::Command => format!("{}/{}", e.index, e.term),
        LogType::Noop => format!("{}/{}:noop", e.index, e.term),
        LogType::Configuration => format!("{}/{}:conf", e.index, e.term),
        _ => format!("{}/{}:other", e.index, e.term),
    }
}

fn entries(es: &[Log]) -> String {
    es.iter().map(entry).collect::<Vec<_>>().join(" ")
}

/// A message as one line: `from->to Kind[#rpc] t<term> fields`.
pub(in crate::core) fn render(m: &Message) -> String {
    let mut s = format!("{}->{} ", m.from, m.to);
    let rpc = if m.rpc_id == 0 { String::new() } else { format!("#{}", m.rpc_id) };
    let _ = match &m.body {
        Body::AppendEntries(r) => write!(
            s,
            "App{rpc} t{} prev={}/{} [{}] commit={} round={}",
            r.term,
            r.prev_log_index,
            r.prev_log_term,
            entries(&r.entries),
            r.leader_commit,
            r.round
        ),
        Body::AppendEntriesResponse(r) if r.success => {
            write!(s, "AppResp{rpc} t{} ok last={} round={}", r.term, r.last_log_index, r.round)
        }
        Body::AppendEntriesResponse(r) => write!(
            s,
            "AppResp{rpc} t{} reject last={} hint={}/{} round={}",
            r.term, r.last_log_index, r.conflict_term, r.conflict_index, r.round
        ),
        Body::RequestVote(r) => write!(
            s,
            "Vote{rpc} t{} last={}/{}{}",
            r.term,
            r.last_log_index,
            r.last_log_term,
            if r.leadership_transfer { " transfer" } else { "" }
        ),
        Body::RequestVoteResponse(r) => {
            write!(s, "VoteResp{rpc} t{} {}", r.term, verdict(r.granted, r.removed))
        }
        Body::RequestPreVote(r) => {
            write!(s, "PreVote{rpc} t{} last={}/{}", r.term, r.last_log_index, r.last_log_term)
        }
        Body::RequestPreVoteResponse(r) => {
            write!(s, "PreVoteResp{rpc} t{} {}", r.term, verdict(r.granted, r.removed))
        }
        Body::TimeoutNow(r) => write!(s, "TimeoutNow{rpc} t{}", r.term),
        Body::TimeoutNowResponse(r) => write!(s, "TimeoutNowResp{rpc} t{}", r.term),
    };
    s
}

fn verdict(granted: bool, removed: bool) -> &'static str {
    match (granted, removed) {
        (true, _) => "granted",
        (false, true) => "removed",
        (false, false) => "refused",
    }
}

/// A `Ready` as lines, in the order the driver executes them.
pub(in crate::core) fn render_ready(r: &Ready) -> Vec<String> {
    let mut out: Vec<String> = r.messages.iter().map(|m| format!("send {}", render(m))).collect();
    if let Some(h) = &r.hard_state {
        let vote = h.vote.as_ref().map_or("none".to_owned(), |v| v.to_string());
        out.push(format!("persist term {} vote {vote}", h.term));
    }
    if let Some(t) = r.truncate_from {
        out.push(format!("truncate from {t}"));
    }
    if !r.entries.is_empty() {
        out.push(format!("append {}", entries(&r.entries)));
    }
    out.extend(r.persisted_messages.iter().map(|m| format!("after persist send {}", render(m))));
    if let Some((lo, hi)) = r.apply_from_store {
        out.push(format!("apply from store {lo}..={hi}"));
    }
    if !r.committed.is_empty() {
        out.push(format!("apply {}", entries(&r.committed)));
    }
    out.extend(r.reads.iter().map(|x| format!("read {} at {}", x.id, x.index)));
    out.extend(r.failed_reads.iter().map(|(id, why)| format!("read {id} failed: {why:?}")));
    if r.transfer_aborted {
        out.push("transfer aborted".to_owned());
    }
    if r.transfer_completed {
        out.push("transfer completed".to_owned());
    }
    out.extend(r.declined.iter().map(|id| format!("decline #{id}")));
    out.extend(r.snapshots_to_send.iter().map(|p| format!("send snapshot to {p}")));
    out.extend(r.fetches.iter().map(|f| format!("fetch {}..={} for {}", f.lo, f.hi, f.peer)));
    out.extend(
        r.log_resets
            .iter()
            .map(|x| format!("reset {}: matched {}, log ends at {}", x.peer, x.matched, x.last_log_index)),
    );
    out
}
