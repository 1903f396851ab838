//! Issue 14 item 4: on a disk that fills up, a failed zero-fill of the next
//! segment leaves no scratch file behind, the writer keeps appending to the
//! active segment instead of rolling over into a new file, and the
//! condition is reported (error log plus the store's counter and flag).
//!
//! The test mounts a small tmpfs (it needs the right to mount, e.g. root;
//! where that is refused it prints why and skips) and unmounts it after.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::segments;
use raft::{Log, LogStore, LogType};
use raft_store_file::{FileStore, FileStoreOptions};

const SEGMENT: u64 = 2 << 20;

/// A tmpfs mounted on a temporary directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a `size`-byte tmpfs, or says why it cannot.
    fn mount(size: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount refused: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        match Command::new("umount").arg(self.dir.path()).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("could not unmount {}: {other:?}", self.dir.path().display()),
        }
    }
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

fn entry(index: u64) -> Log {
    Log::new(index, 1, LogType::Command, vec![(index % 251) as u8; 16 * 1024])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_segment_preparation_leaves_nothing_keeps_the_active_segment_and_is_reported() {
    let disk = match SmallDisk::mount(8 << 20) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: needs a small tmpfs: {why}");
            return;
        }
    };
    // Leave about 3.5 MiB: enough for the log's first preallocated segment
    // (2 MiB), not for a second one as well.
    std::fs::write(disk.path().join("filler"), vec![1u8; 4 * (1 << 20) + (1 << 19)]).expect("filler");
    let dir = disk.path().join("log");
    let opts = FileStoreOptions { segment_size: SEGMENT, ..Default::default() };
    let store = FileStore::open_with(&dir, opts.clone()).await.expect("open");

    // Past 64 KiB in the plain first segment, a preallocated one is
    // prepared; the plain one is left for it at the first append after it
    // is ready. The plain segment grows only by a few entries meanwhile,
    // so the preparation always has its room.
    let mut next = 1u64;
    while next * 16 * 1024 <= (64 << 10) + 16 * 1024 {
        store.store_logs(&[entry(next)]).await.expect("append while space lasts");
        next += 1;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let filled =
        |dir: &Path| tmp_files(dir).iter().any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == SEGMENT));
    // (Or already installed, if it was ready before the last append.)
    while !filled(&dir) && segments(&dir).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the first preparation never filled its file");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while segments(&dir).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no preallocated segment was installed");
        store.store_logs(&[entry(next)]).await.expect("append while space lasts");
        next += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let active = segments(&dir)[1].clone();
    assert_eq!(
        std::fs::metadata(&active).expect("stat").len(),
        SEGMENT,
        "the second segment is preallocated"
    );
    // Fill it past half (entries with their record headers): that append
    // starts preparing the next segment. Nothing more is appended until
    // the preparation has failed, so it cannot take the disk's last bytes.
    let first_in_active = next - 1;
    let record = 16 * 1024 + 64;
    while (next - first_in_active) * record <= SEGMENT / 2 + record {
        store.store_logs(&[entry(next)]).await.expect("append into preallocated space");
        next += 1;
    }
    // It fails for lack of space, and says so. The preparation thread
    // counts the failure a moment before it raises the flag, and this
    // thread can look in between: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.segment_preparation_failures() == 0 || !store.segment_preparation_failing() {
        assert!(
            std::time::Instant::now() < deadline,
            "the preparation never failed and flagged it: {} failures, failing: {}",
            store.segment_preparation_failures(),
            store.segment_preparation_failing()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.segment_preparation_failing(), "the condition is flagged");
    assert_eq!(tmp_files(&dir), Vec::<PathBuf>::new(), "the failed preparation left its scratch file");

    // Keep writing past the segment's size: the active segment takes it.
    while (next - first_in_active) * record < SEGMENT + (64 << 10) {
        store.store_logs(&[entry(next)]).await.expect("append into the active segment");
        next += 1;
    }
    assert_eq!(segments(&dir).len(), 2, "rolled over into an unprepared segment: {:?}", segments(&dir));
    assert!(
        std::fs::metadata(&active).expect("stat").len() > SEGMENT,
        "the active segment grew past its size"
    );
    assert!(tmp_files(&dir).is_empty(), "no scratch file left: {:?}", tmp_files(&dir));
    let last = next - 1;
    assert_eq!(store.last_index().await.expect("last"), last);
    assert_eq!(store.get_log(last).await.expect("get"), Some(entry(last)));
    drop(store);

    // The oversized segment reopens intact.
    let store = FileStore::open_with(&dir, opts).await.expect("reopen");
    assert_eq!(store.first_index().await.expect("first"), 1);
    assert_eq!(store.last_index().await.expect("last"), last);
    assert_eq!(
        store.get_logs(1..last + 1).await.expect("read back"),
        (1..=last).map(entry).collect::<Vec<_>>()
    );
    drop(store);
    drop(disk);
}
