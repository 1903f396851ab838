//! A small text form of a scenario, in the style of etcd-io/raft's
//! `testdata/*.txt` interaction tests: one step per line, each optionally
//! followed by `----` and the output it must print, up to a blank line.
//! [`run`] executes a script on a [`Cluster`] and fails on the first output
//! that differs, naming the line.
//!
//! Steps (ids are `n1`, `n2`, ...):
//! - `cluster <n> [pre_vote=false] [check_quorum=false] [max_append_entries=<k>]`
//! - `elect <id>`, `tick [<k>]` (every node, settling after each),
//!   `tick-node <id> [<k>]` (one node, nothing delivered), `settle`
//! - `isolate <id>`, `heal`, `cut <a> <b>`, `connect <a> <b>`
//! - `propose <id> <data>` prints `index <i>` or the refusal;
//!   `read <id> <token>` and `transfer <id> <target>` print `ok` or the
//!   refusal
//! - `persist on|off` (fsyncs complete at once, or wait for `sync <id>`),
//!   `crash <id>`, `restart <id>`
//! - `deliver [<k>]` delivers the next `k` messages in flight (1 by
//!   default; nothing else runs) and prints them
//! - `ready <id>` takes the node's `Ready`, prints it (see [`render_ready`])
//!   and executes it; `status <id>` prints role, term, commit, last index
//!   and applied index; `reads <id>` prints the confirmed reads

use super::{render_ready, Cluster};
use crate::core::CoreConfig;

/// Runs `script` (named `name` in failures). With `SCENARIO_PRINT` set in
/// the environment, it checks nothing and instead fails with the script's
/// transcript (each step and the output it produced) as the failure
/// message, for writing or updating a script's expectations.
pub(in crate::core) fn run(name: &str, script: &str) {
    let print = std::env::var_os("SCENARIO_PRINT").is_some();
    let mut transcript = Vec::new();
    let mut c: Option<Cluster> = None;
    let lines: Vec<&str> = script.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let at = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut expected = Vec::new();
        let has_expectation = lines.get(i).is_some_and(|l| l.trim() == "----");
        if has_expectation {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim().to_owned());
                i += 1;
            }
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = if words[0] == "cluster" {
            c = Some(new_cluster(&words[1..]));
            Vec::new()
        } else {
            let cluster = c.as_mut().unwrap_or_else(|| panic!("{name}:{at}: `cluster` must come first"));
            step(cluster, &words).unwrap_or_else(|e| panic!("{name}:{at}: `{line}`: {e}"))
        };
        transcript.push(line.to_owned());
        if !out.is_empty() {
            transcript.push("----".to_owned());
            transcript.extend(out.iter().cloned());
            transcript.push(String::new());
        }
        if !print && (has_expectation || !out.is_empty()) {
            assert_eq!(
                out,
                expected,
                "{name}:{at}: `{line}` printed\n{}\n---- but the script expects\n{}",
                out.join("\n"),
                expected.join("\n")
            );
        }
    }
    assert!(!print, "SCENARIO_PRINT is set: the transcript of {name} follows\n{}", transcript.join("\n"));
}

fn new_cluster(args: &[&str]) -> Cluster {
    let n = args.first().and_then(|a| a.parse().ok()).expect("cluster <n>");
    let mut cfg = CoreConfig::for_tests();
    for a in &args[1..] {
        match a.split_once('=') {
            Some(("pre_vote", v)) => cfg.pre_vote = v == "true",
            Some(("check_quorum", v)) => cfg.check_quorum = v == "true",
            Some(("max_append_entries", v)) => cfg.max_append_entries = v.parse().expect("a number"),
            _ => panic!("unknown cluster option {a}"),
        }
    }
    Cluster::new(n, cfg)
}

/// Executes one step; returns what it prints.
fn step(c: &mut Cluster, w: &[&str]) -> Result<Vec<String>, String> {
    let arg = |k: usize| w.get(k).copied().ok_or_else(|| format!("missing argument {k}"));
    let count = |k: usize| w.get(k).map_or(Ok(1), |v| v.parse::<usize>().map_err(|e| e.to_string()));
    let mut out = Vec::new();
    match w[0] {
        "elect" => c.elect_node(arg(1)?),
        "tick" => c.tick_all(count(1)?),
        "tick-node" => {
            for _ in 0..count(2)? {
                c.node(arg(1)?).tick();
            }
        }
        "settle" => c.settle(),
        "deliver" => {
            for _ in 0..count(1)? {
                let m = c.queue.pop_front().ok_or("nothing in flight")?;
                out.push(super::render(&m));
                c.deliver(m);
            }
        }
        "isolate" => c.isolate(arg(1)?),
        "heal" => c.heal(),
        "cut" => c.cut_between(arg(1)?, arg(2)?),
        "connect" => c.connect(arg(1)?, arg(2)?),
        "propose" => {
            let data = w[2..].join(" ");
            out.push(match c.node(arg(1)?).propose([super::cmd(&data)]) {
                Ok(index) => format!("index {index}"),
                Err(why) => format!("refused: {why:?}"),
            });
        }
        "read" => {
            let token = arg(2)?.parse::<u64>().map_err(|e| e.to_string())?;
            out.push(
                c.node(arg(1)?)
                    .read_index(token)
                    .map_or_else(|why| format!("refused: {why:?}"), |()| "ok".into()),
            );
        }
        "transfer" => {
            let r = c.node(arg(1)?).transfer_leadership(Some(arg(2)?.into()));
            out.push(r.map_or_else(|why| format!("refused: {why:?}"), |_| "ok".into()));
        }
        "persist" => c.auto_persist = arg(1)? == "on",
        "sync" => {
            if !c.sync(arg(1)?) {
                return Err("no write is waiting".into());
            }
        }
        "crash" => c.crash(arg(1)?),
        "restart" => c.restart(arg(1)?, CoreConfig::for_tests(), 7),
        "ready" => {
            let ready = c.take_ready(arg(1)?);
            out = render_ready(&ready);
            c.execute(arg(1)?, ready);
        }
        "status" => {
            let core = c.node(arg(1)?);
            out.push(format!(
                "{:?} term={} commit={} last={} applied={}",
                core.state(),
                core.term(),
                core.commit_index(),
                core.last_index(),
                core.applied_index()
            ));
        }
        "reads" => {
            out = c.reads(arg(1)?).iter().map(|r| format!("{} at {}", r.id, r.index)).collect();
            if out.is_empty() {
                out.push("none".into());
            }
        }
        other => return Err(format!("unknown step {other}")),
    }
    Ok(out)
}
