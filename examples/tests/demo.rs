//! `kv demo` runs to completion, exits 0 and narrates the failover.

use std::process::Command;
use std::time::Instant;

#[test]
fn kv_demo_shows_the_failover_and_exits_0() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kv")).arg("demo").output().expect("run kv demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv demo failed ({}):\n{stdout}\n{stderr}", out.status);
    for expected in [
        "bootstrapped a one-node cluster",
        "joined",
        "wrote 100 keys",
        "stopped the leader",
        "was elected the new leader",
        "no acknowledged write was lost",
        "caught up",
        "demo succeeded",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in the demo output:\n{stdout}");
    }
    eprintln!("kv demo took {:?}", started.elapsed());
}
