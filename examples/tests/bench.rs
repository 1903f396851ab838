//! The `bench` program: a short cluster run reports its figures (peak RSS
//! among them), and `--restart` builds a node's log, restarts the node in a
//! child process and reports the restart's timings and memory, reusing a
//! store kept in `--restart-dir`.

use std::process::Command;

use serde_json::Value;

/// Runs `bench` with `args` and returns its JSON line.
fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bench")).args(args).output().expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line =
        stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn a_short_run_reports_throughput_and_the_peak_rss_of_the_process() {
    let v = bench_json(&["--clients", "4", "--seconds", "0.3", "--warmup", "0", "--json"]);
    assert!(num(&v, "ops") > 0.0, "no operation completed: {v}");
    assert!(num(&v, "peak_rss_mb") > 1.0, "peak RSS not reported: {v}");
    assert_eq!(v["store"], "mem");
    // Each node's log window was sampled and held the entries just written.
    let windows = v["log_window_peak_mb"].as_array().unwrap_or_else(|| panic!("no log_window_peak_mb: {v}"));
    assert_eq!(windows.len(), 3, "{v}");
    assert!(windows.iter().all(|w| w.as_f64().is_some_and(|w| w > 0.0)), "{v}");
}

#[test]
fn restart_builds_the_log_then_reuses_it_and_reports_timings_and_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("utf-8 temp path");
    let args =
        ["--restart", "--restart-entries", "3000", "--payload", "200", "--restart-dir", dir_arg, "--json"];

    let built = bench_json(&args);
    assert_eq!(built["mode"], "restart");
    assert_eq!(built["reused"], false, "{built}");
    assert!(num(&built, "build_s") >= 0.0);
    // The bootstrap entry, then the 3000 entries.
    assert_eq!(num(&built, "restart_entries"), 3000.0, "{built}");
    assert_eq!(num(&built, "last_index"), 3001.0, "{built}");
    // 3000 entries of 200 B are on disk.
    assert!(num(&built, "disk_mb") * 1048576.0 >= 600_000.0, "{built}");
    let (open, new, ready) = (num(&built, "open_ms"), num(&built, "new_ms"), num(&built, "ready_ms"));
    assert!(0.0 < open && open <= new && new <= ready, "timings out of order: {built}");
    for key in ["rss_base_mb", "rss_open_mb", "rss_ready_mb", "rss_anon_ready_mb", "rss_after_replay_mb"] {
        assert!(num(&built, key) > 0.0, "{key} not measured: {built}");
    }
    assert!(num(&built, "peak_rss_mb") >= num(&built, "rss_ready_mb"), "{built}");
    // The file store's index: at least an offset per entry.
    assert!(num(&built, "store_index_bytes") >= 3000.0 * 8.0, "{built}");
    // The node knew every entry committed (the persisted commit index) and
    // applied them all from its store without a leader.
    assert_eq!(num(&built, "commit_index"), 3001.0, "{built}");
    assert_eq!(num(&built, "replayed_entries"), 3001.0, "{built}");
    assert!(num(&built, "replay_ms") >= 0.0, "{built}");

    let reused = bench_json(&args);
    assert_eq!(reused["reused"], true, "{reused}");
    assert!(reused["build_s"].is_null(), "{reused}");
    assert_eq!(num(&reused, "last_index"), 3001.0, "{reused}");
}

#[test]
fn a_log_window_of_zero_is_refused_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--log-window-mb", "0", "--seconds", "0.1"])
        .output()
        .expect("run bench");
    assert!(!out.status.success(), "a zero log window was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-window-mb must be more than 0"), "unclear error: {stderr}");
}

#[test]
fn restart_passes_the_log_window_to_the_restarted_node_and_reports_it() {
    let v = bench_json(&[
        "--restart",
        "--restart-entries",
        "500",
        "--payload",
        "64",
        "--log-window-mb",
        "1",
        "--json",
    ]);
    assert_eq!(num(&v, "log_window_mb"), 1.0, "{v}");
    // As the restarted node (the child process) was configured.
    assert_eq!(num(&v, "log_window_bytes"), 1048576.0, "{v}");
    assert_eq!(num(&v, "last_index"), 501.0, "{v}");
}
