//! Measuring the bench under a shared CPU: `--cpu-hogs N` busy-loop child
//! processes for the run (a service rarely owns its cores), and the counts
//! that explain what contention costs: how often the nodes' tasks were
//! polled (each poll follows a wake-up: a hand-off between tasks) and how
//! often tokio's worker threads went to sleep (each sleep ends with an OS
//! wake-up that may wait for a time slice), per operation.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raft::telemetry::TaskPolls;

/// The busy-loop child processes; killed when dropped.
pub struct Hogs {
    children: Vec<Child>,
}

impl Hogs {
    /// Starts `n` child processes of this binary that spin until killed
    /// (separate processes, so their CPU is not counted in the bench's).
    pub fn start(n: usize) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut hogs = Hogs { children: Vec::with_capacity(n) };
        for _ in 0..n {
            let child = Command::new(&exe)
                .arg("--cpu-hog-child")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            hogs.children.push(child);
        }
        Ok(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The body of a `--cpu-hog-child` process: spins forever.
pub fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Counters read at the start and the end of the measured window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Polls of the nodes' tasks (`raft::telemetry::task_polls`).
    pub polls: TaskPolls,
    /// Times tokio's worker threads parked (went idle).
    pub parks: u64,
    /// Time tokio's worker threads spent running tasks.
    pub busy: Duration,
}

impl Counters {
    /// Reads them now (call inside the bench's runtime).
    pub fn read() -> Self {
        let m = tokio::runtime::Handle::current().metrics();
        let workers = m.num_workers();
        Counters {
            polls: raft::telemetry::task_polls(),
            parks: (0..workers).map(|w| m.worker_park_count(w)).sum(),
            busy: (0..workers).map(|w| m.worker_total_busy_duration(w)).sum(),
        }
    }

    /// What was counted after `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            polls: self.polls.since(&earlier.polls),
            parks: self.parks.saturating_sub(earlier.parks),
            busy: self.busy.saturating_sub(earlier.busy),
        }
    }

    /// The polls of each kind of task per operation, as a JSON object.
    pub fn polls_json(&self, ops: u64) -> String {
        let p = &self.polls;
        let per = |n: u64| if ops == 0 { 0.0 } else { n as f64 / ops as f64 };
        format!(
            "{{\"total\":{:.3},\"main\":{:.3},\"apply\":{:.3},\"peer\":{:.3},\"pipeline_reader\":{:.3},\
             \"calls\":{:.3},\"snapshot\":{:.3},\"inmem_transport\":{:.3}}}",
            per(p.total()),
            per(p.main),
            per(p.apply),
            per(p.peer),
            per(p.pipeline_reader),
            per(p.calls),
            per(p.snapshot),
            per(p.inmem_transport),
        )
    }
}
