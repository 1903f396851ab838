//! The series of `raft::telemetry` emitted by a live cluster, read back
//! through a recorder installed for this test binary (a small one of its
//! own, read without being consumed): every documented
//! series appears with the `node` label and sensible values (indexes past
//! the writes, one node leading, write-stage histograms with one sample per
//! proposal batch, per-peer lag that drops to 0 once caught up and turns
//! `NaN` when the node stops leading, snapshots taken and installed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use raft::telemetry::names;
use raft::transport::inmem::InmemNetwork;
use raft::types::{Configuration, Server};
use raft::Config;
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A histogram's samples, all kept.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        lock(&self.0).push(value);
    }
}

/// What the test recorder holds: every series registered, by key. Unlike
/// `metrics-util`'s debugging recorder, reading it consumes nothing.
#[derive(Default)]
struct Store {
    counters: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<Key, Arc<Samples>>>,
}

/// The recorder installed for this test binary.
struct TestRecorder(Arc<Store>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(lock(&self.0.counters).entry(key.clone()).or_default().clone())
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(lock(&self.0.gauges).entry(key.clone()).or_default().clone())
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(lock(&self.0.histograms).entry(key.clone()).or_default().clone())
    }
}

/// The store of this test binary's recorder (installed once, before any
/// node starts: nodes register their series when they start).
fn store() -> &'static Arc<Store> {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Arc::new(Store::default());
        metrics::set_global_recorder(TestRecorder(store.clone())).expect("no other recorder in this binary");
        store
    })
}

/// A series: its name and its labels, sorted.
type SeriesKey = (String, Vec<(String, String)>);

fn series(key: &Key) -> SeriesKey {
    let mut labels: Vec<(String, String)> =
        key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

/// A copy of everything recorded so far.
#[derive(Default)]
struct Recorded {
    values: HashMap<SeriesKey, f64>,
    samples: HashMap<SeriesKey, Vec<f64>>,
}

impl Recorded {
    fn refresh(&mut self) {
        let store = store();
        for (key, v) in lock(&store.counters).iter() {
            self.values.insert(series(key), v.load(Ordering::Acquire) as f64);
        }
        for (key, v) in lock(&store.gauges).iter() {
            self.values.insert(series(key), f64::from_bits(v.load(Ordering::Acquire)));
        }
        for (key, v) in lock(&store.histograms).iter() {
            self.samples.insert(series(key), lock(&v.0).clone());
        }
    }

    /// The value of a counter or gauge, if it was registered.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.values.get(&key(name, labels)).copied()
    }

    /// The samples of a histogram (empty if none).
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> &[f64] {
        self.samples.get(&key(name, labels)).map_or(&[], |v| v.as_slice())
    }

    /// Every series name seen with label `node` = `node`.
    fn names_of(&self, node: &str) -> Vec<String> {
        let has_node = |labels: &Vec<(String, String)>| labels.iter().any(|(k, v)| k == "node" && v == node);
        let mut names: Vec<String> = self
            .values
            .keys()
            .chain(self.samples.keys())
            .filter(|(_, labels)| has_node(labels))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    let mut labels: Vec<(String, String)> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// Polls the recorder until `check` holds, failing after `T` (virtual time).
async fn wait_until(rec: &mut Recorded, what: &str, check: impl Fn(&Recorded) -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        rec.refresh();
        if check(rec) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn compacting(config: &mut Config) {
    config.snapshot_threshold = 200;
    config.trailing_logs = 20;
    config.snapshot_interval = Duration::from_millis(50);
}

async fn write(c: &TestCluster<RecordingFsm>, leader: &str, clients: usize, each: usize, tag: &str) {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let raft = c.raft(leader).clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                raft.apply(format!("{tag}-{client}-{i}"), T).await.expect("apply");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_cluster_emits_every_documented_series_with_sensible_values() {
    let mut rec = Recorded::default();
    rec.refresh();
    let mut c = TestCluster::with_config(3, InmemNetwork::new(), compacting).await;
    let leader = c.wait_for_leader().await;
    let followers: Vec<String> = c.running().into_iter().filter(|id| *id != leader).collect();
    let (up, lagging) = (followers[0].clone(), followers[1].clone());
    let l = leader.as_str();

    // A follower misses enough writes to need a snapshot.
    c.stop(&lagging).await;
    write(&c, l, 8, 50, "a").await;
    c.raft(l).snapshot().await.expect("snapshot");
    let behind = c.raft(l).metrics().borrow().last_log_index;
    wait_until(&mut rec, "the leader to report the stopped follower's lag", |r| {
        r.value(names::PEER_LAG, &[("node", l), ("peer", &lagging)]) >= Some((behind - 5) as f64)
    })
    .await;
    c.start(&lagging).await;
    write(&c, l, 8, 25, "b").await;
    let last = c.raft(l).barrier(T).await.expect("barrier");
    c.wait_applied(&lagging, last, T).await;
    c.wait_applied(&up, last, T).await;

    // The gauges follow at tick resolution.
    wait_until(&mut rec, "the gauges to reach the last write", |r| {
        [l, up.as_str(), lagging.as_str()].iter().all(|n| {
            r.value(names::COMMIT_INDEX, &[("node", n)]) >= Some(last as f64)
                && r.value(names::APPLIED_INDEX, &[("node", n)]) >= Some(last as f64)
        }) && [up.as_str(), lagging.as_str()]
            .iter()
            .all(|p| r.value(names::PEER_LAG, &[("node", l), ("peer", p)]) == Some(0.0))
    })
    .await;

    // Every documented series was registered by the leader, except the
    // ones only a follower emits (snapshots installed from a leader).
    let leader_names = rec.names_of(l);
    let follower_only = [names::SNAPSHOTS_INSTALLED];
    for name in names::ALL.iter().filter(|n| !follower_only.contains(n)) {
        assert!(leader_names.iter().any(|n| n == name), "{name} missing from {leader_names:?}");
    }

    // Gauges.
    assert_eq!(rec.value(names::STATE, &[("node", l), ("state", "leader")]), Some(1.0));
    assert_eq!(rec.value(names::STATE, &[("node", l), ("state", "follower")]), Some(0.0));
    assert_eq!(rec.value(names::STATE, &[("node", &up), ("state", "follower")]), Some(1.0));
    let term = rec.value(names::TERM, &[("node", l)]).expect("term");
    assert!(term >= 1.0);
    assert_eq!(rec.value(names::TERM, &[("node", &up)]), Some(term));
    assert!(rec.value(names::LAST_LOG_INDEX, &[("node", l)]) >= Some(last as f64));
    assert!(rec.value(names::LAST_SNAPSHOT_INDEX, &[("node", &lagging)]) > Some(0.0));
    let contact = rec.value(names::PEER_LAST_CONTACT, &[("node", l), ("peer", &up)]).expect("last contact");
    assert!(contact.is_finite() && (0.0..1.0).contains(&contact), "last contact {contact}");

    // Counters.
    for n in [l, up.as_str(), lagging.as_str()] {
        assert!(rec.value(names::LEADER_CHANGES, &[("node", n)]) >= Some(1.0), "{n} saw a leader");
    }
    assert!(rec.value(names::ELECTIONS, &[("node", l)]) >= Some(1.0), "the leader ran an election");
    let writes = 8 * 50 + 8 * 25;
    assert!(rec.value(names::ENTRIES_APPENDED, &[("node", &up)]) >= Some(writes as f64));
    let to_up = [("node", l), ("peer", up.as_str())];
    assert!(rec.value(names::APPEND_ENTRIES_SENT, &to_up) >= Some(1.0));
    assert!(rec.value(names::APPEND_ENTRIES_SENT_BYTES, &to_up) >= Some((writes * 5) as f64));
    assert!(rec.value(names::HEARTBEATS_SENT, &to_up) >= Some(1.0));
    assert!(rec.value(names::SNAPSHOTS_TAKEN, &[("node", l)]) >= Some(1.0));
    assert!(rec.value(names::SNAPSHOTS_INSTALLED, &[("node", &lagging)]) >= Some(1.0));

    // Histograms: every write proposed on the leader is in one batch
    // sample; each batch has its stages and its total.
    let batches = rec.samples(names::WRITE_BATCH, &[("node", l)]);
    let proposed: f64 = batches.iter().sum();
    assert!(proposed >= writes as f64, "{proposed} writes in batches, {writes} made");
    for stage in ["persist", "commit", "apply"] {
        let samples = rec.samples(names::WRITE_STAGE, &[("node", l), ("stage", stage)]);
        assert!(!samples.is_empty(), "no {stage} stage recorded");
        assert!(samples.len() <= batches.len(), "{stage}: more samples than batches");
        assert!(samples.iter().all(|s| s.is_finite() && *s >= 0.0), "{stage}: {samples:?}");
    }
    let persisted = rec.samples(names::WRITE_STAGE, &[("node", l), ("stage", "persist")]).len();
    assert!(persisted * 2 >= batches.len(), "persist stage of {persisted} of {} batches", batches.len());
    assert!(!rec.samples(names::WRITE, &[("node", l)]).is_empty());
    for n in [l, up.as_str()] {
        assert!(!rec.samples(names::FSYNC, &[("node", n)]).is_empty(), "{n} wrote its log");
    }
    let sent_entries: f64 = rec.samples(names::APPEND_ENTRIES_BATCH_ENTRIES, &to_up).iter().sum();
    assert!(sent_entries >= writes as f64, "{sent_entries} entries sent to a follower that got {writes}");
    let sent_bytes: f64 = rec.samples(names::APPEND_ENTRIES_BATCH_BYTES, &to_up).iter().sum();
    assert!(sent_bytes >= (writes * 5) as f64, "{sent_bytes} bytes sent");
    assert_eq!(rec.value(names::APPEND_ENTRIES_SENT_BYTES, &to_up), Some(sent_bytes));
    for (node, kind) in [(l, "take"), (lagging.as_str(), "install"), (lagging.as_str(), "restore")] {
        let labels = [("node", node), ("kind", kind)];
        assert!(!rec.samples(names::SNAPSHOT_DURATION, &labels).is_empty(), "{kind} duration on {node}");
        let sizes = rec.samples(names::SNAPSHOT_SIZE, &labels);
        assert!(!sizes.is_empty() && sizes.iter().all(|s| *s > 0.0), "{kind} sizes on {node}: {sizes:?}");
    }

    // A node that stops leading stops reporting its followers' lag.
    c.raft(l).leadership_transfer().await.expect("transfer");
    // Stepping down (leader unknown) and hearing from the new leader are
    // two events: wait for the second too before counting leader changes.
    wait_until(&mut rec, "the old leader's per-peer gauges to be NaN and the new leader known", |r| {
        r.value(names::STATE, &[("node", l), ("state", "follower")]) == Some(1.0)
            && r.value(names::PEER_LAG, &[("node", l), ("peer", &up)]).is_some_and(f64::is_nan)
            && r.value(names::PEER_LAST_CONTACT, &[("node", l), ("peer", &up)]).is_some_and(f64::is_nan)
            && r.value(names::LEADER_CHANGES, &[("node", l)]) >= Some(2.0)
    })
    .await;
    let leader_changes = rec.value(names::LEADER_CHANGES, &[("node", l)]).expect("leader changes");
    assert!(leader_changes >= 2.0, "the old leader saw the new one: {leader_changes}");

    // A stopped node says so.
    c.shutdown().await;
    rec.refresh();
    for n in [l, up.as_str(), lagging.as_str()] {
        assert_eq!(rec.value(names::STATE, &[("node", n), ("state", "shutdown")]), Some(1.0), "{n}");
        assert_eq!(rec.value(names::STATE, &[("node", n), ("state", "leader")]), Some(0.0), "{n}");
    }
}

/// One worker thread stands for a process that gets one core's worth of
/// a shared CPU. Tokio runs a woken task right after the task that woke
/// it, so unless the main task lets the other callers run first, it would
/// run after each caller that sends a write and propose one write at a
/// time. The leader's `raft_write_batch_writes` shows the folding.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn writes_from_many_callers_on_one_worker_are_folded_into_few_proposals() {
    let mut rec = Recorded::default();
    rec.refresh();
    // Names of their own: the recorder's series are shared by this binary.
    let ids = ["fold1", "fold2", "fold3"];
    let configuration = Configuration::new(ids.iter().map(|id| Server::voter(*id, *id)).collect());
    let mut c =
        TestCluster::<RecordingFsm>::with_configuration(InmemNetwork::new(), |_| {}, &ids, configuration)
            .await;
    let leader = c.wait_for_leader().await;
    let before = rec.samples(names::WRITE_BATCH, &[("node", &leader)]).len();
    let (clients, each) = (64, 20);
    write(&c, &leader, clients, each, "fold").await;
    rec.refresh();
    let batches = &rec.samples(names::WRITE_BATCH, &[("node", &leader)])[before..];
    let writes: f64 = batches.iter().sum();
    assert_eq!(writes as usize, clients * each, "every write was proposed once");
    let per_proposal = writes / batches.len() as f64;
    assert!(
        per_proposal >= 4.0,
        "{clients} callers' writes should share proposals: {per_proposal:.1} writes per proposal over {} proposals",
        batches.len()
    );
    c.shutdown().await;
}
