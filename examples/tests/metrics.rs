//! `kv serve --metrics-addr`: a two-node cluster of `kv serve` processes,
//! some writes and a snapshot, then `GET /metrics` on the leader's metrics
//! address over HTTP finds every series the `raft::telemetry` docs list, in
//! the Prometheus text format, labelled with the node id and with values
//! that follow the writes.

mod common;

use std::time::Duration;

use common::{agreed_leader, free_addr, http, poll, put, status, KvProc};
use raft::telemetry::names;

/// The value of the sample line `series` (name and labels exactly as the
/// exporter prints them) in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(addr: &str) -> Option<String> {
    http("GET", addr, "/metrics", b"").ok().filter(|r| r.status == 200).map(|r| r.body)
}

#[test]
fn the_metrics_address_serves_every_documented_series_for_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--snapshot-interval", "1", "--snapshot-threshold", "5"].map(str::to_owned);
    let metrics: Vec<String> = (0..2).map(|_| free_addr()).collect();
    let first = ["--bootstrap", "--metrics-addr", &metrics[0]].map(str::to_owned);
    let n1 = KvProc::start(dir.path(), "n1", &first, &flags);
    poll("n1 to lead", Duration::from_secs(20), || agreed_leader(&[&n1], 1));
    let join = ["--join", &n1.api_addr, "--metrics-addr", &metrics[1]].map(str::to_owned);
    let n2 = KvProc::start(dir.path(), "n2", &join, &flags);
    let leader = poll("a leader both agree on", Duration::from_secs(30), || agreed_leader(&[&n1, &n2], 2));
    let (leader_proc, leader_metrics, follower) =
        if leader == "n1" { (&n1, &metrics[0], "n2") } else { (&n2, &metrics[1], "n1") };
    for i in 0..20 {
        let r = put(&leader_proc.api_addr, &format!("k{i}"), "value").expect("PUT");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    poll("a snapshot on the leader", Duration::from_secs(15), || {
        (status(&leader_proc.api_addr)?["snapshot_index"].as_u64()? >= 5).then_some(())
    });
    let commit =
        status(&leader_proc.api_addr).expect("status")["commit_index"].as_u64().expect("commit index");
    assert!(commit >= 20);

    // The gauges follow at tick resolution: scrape until they caught up.
    let node = format!("node=\"{leader}\"");
    let page = poll("the leader's metrics to show the writes", Duration::from_secs(15), || {
        let page = scrape(leader_metrics)?;
        let lag = format!("{}{{{node},peer=\"{follower}\"}}", names::PEER_LAG);
        (sample(&page, &format!("{}{{{node}}}", names::COMMIT_INDEX))? >= commit as f64
            && sample(&page, &lag)? == 0.0)
            .then_some(page)
    });
    for name in names::ALL {
        assert!(
            page.lines().any(|l| l.starts_with(name) && l.contains(&node)),
            "{name} with {node} missing from the scrape:\n{page}"
        );
    }
    assert_eq!(sample(&page, &format!("{}{{{node},state=\"leader\"}}", names::STATE)), Some(1.0));
    assert!(sample(&page, &format!("{}{{{node}}}", names::APPLIED_INDEX)) >= Some(commit as f64));
    assert!(page.contains(&format!("# TYPE {} histogram", names::FSYNC)), "histograms are exported as such");
    let writes = format!("{}_count{{{node}}}", names::WRITE);
    assert!(sample(&page, &writes) >= Some(1.0), "write latency recorded: {writes}");
    let persist = format!("{}_count{{{node},stage=\"persist\"}}", names::WRITE_STAGE);
    assert!(sample(&page, &persist) >= Some(1.0), "{persist}");
    let taken = format!("{}{{{node}}}", names::SNAPSHOTS_TAKEN);
    assert!(sample(&page, &taken) >= Some(1.0), "{taken}");

    // The follower serves its own series on its own address.
    let follower_metrics = if leader == "n1" { &metrics[1] } else { &metrics[0] };
    let page = scrape(follower_metrics).expect("the follower's metrics");
    let state = format!("{}{{node=\"{follower}\",state=\"follower\"}}", names::STATE);
    assert_eq!(sample(&page, &state), Some(1.0), "{state} in:\n{page}");
}
