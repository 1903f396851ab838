//! `raftctl`: an admin CLI for raft nodes over the admin gRPC service
//! served on every node's raft port (`raft_transport_grpc::admin`).
//!
//! ```text
//! raftctl --addr 127.0.0.1:7001 status
//! raftctl --addr 127.0.0.1:7001 members --json
//! raftctl --addr 127.0.0.1:7001 add-voter node-4 127.0.0.1:7004
//! raftctl --addr 127.0.0.1:7001 members change \
//!     --add node-4=127.0.0.1:7004 --add node-5=127.0.0.1:7005 --remove node-2 --remove node-3
//! raftctl --addr 127.0.0.1:7001 transfer-leadership --to node-2
//! raftctl --addr 127.0.0.1:7001 status --watch --interval-ms 500
//! raftctl --addr 127.0.0.1:7001 snapshot save backup.snap
//! raftctl --addr 127.0.0.1:7001 snapshot restore backup.snap
//! raftctl recover --data-dir /var/lib/kv/n1 --peers peers.json --dry-run
//! ```
//!
//! `members` shows, per server, its suffrage and address and, from the
//! leader's view, its match index, lag behind the leader's last index,
//! last contact and whether it is catching up (asked of the leader: a
//! follower at `--addr` names it and raftctl asks it).
//!
//! `snapshot save FILE` streams the leader's latest snapshot (taken first
//! if anything was applied since the last) into a backup file: metadata,
//! data and a CRC-32C checksum (format: [`raft_examples::backup`]).
//! `snapshot restore FILE` verifies the whole file first and refuses a
//! damaged one, then streams it into `Raft::restore` on the leader, which
//! replaces the cluster's state with it (disaster recovery: see
//! `raft::Raft::restore`). Plain `snapshot` takes a snapshot on the node at
//! `--addr` and says what it compacted.
//!
//! `recover` is HashiCorp's `peers.json` recovery, run offline on each
//! surviving node's data directory (the node stopped) when the cluster
//! lost its quorum for good; see `recover --help` for the file format.
//!
//! `members change` applies any set of changes in one step through a joint
//! configuration (`raft::Raft::change_membership`): new voters catch up as
//! non-voters first, and it returns once the new configuration is
//! committed. The other membership commands change one server at a time.
//!
//! Membership changes and leadership transfers must run on the leader:
//! raftctl asks the node at `--addr` who leads and sends them there.
//! Output is a human-readable table, or JSON with `--json`. Exit code 0 on
//! success, 1 on any failure (with a message on stderr).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[path = "raftctl/members.rs"]
mod members;
#[path = "raftctl/recover.rs"]
mod recover;
#[path = "raftctl/snapshots.rs"]
mod snapshots;
use raft_examples::service::tls::load_tls_dir;
use raft_transport_grpc::admin::{self, pb, AdminClient};
use raft_transport_grpc::GrpcConfig;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "raftctl", version, about = "Administer a raft cluster through a node's admin service")]
struct Cli {
    /// Raft (gRPC) address of any node.
    #[arg(long, global = true, default_value = "127.0.0.1:7001", value_name = "HOST:PORT")]
    addr: String,
    /// Directory with ca.pem, node.pem and node-key.pem, for clusters running mutual TLS.
    #[arg(long, global = true, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Cluster id the nodes were started with.
    #[arg(long, global = true)]
    cluster_id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait, in milliseconds; what it bounds depends on the
    /// command (each command's help says).
    #[arg(long, global = true, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The node's role, term, leader and indexes.
    #[command(after_help = TIMEOUT_EACH_CALL)]
    Status {
        /// Refresh until interrupted (Ctrl-C).
        #[arg(long)]
        watch: bool,
        /// Time between refreshes with --watch, in milliseconds.
        #[arg(long, default_value_t = 1_000, value_name = "MS", requires = "watch")]
        interval_ms: u64,
        /// Stop after this many refreshes (for tests and scripts).
        #[arg(long, hide = true, requires = "watch")]
        count: Option<u64>,
    },
    /// The cluster's members with the leader's view of their replication:
    /// match index, lag, last contact, catching up (`members change ...`
    /// changes several at once).
    #[command(after_help = TIMEOUT_EACH_CALL)]
    Members {
        #[command(subcommand)]
        action: Option<MembersCommand>,
    },
    /// Add (or promote) a voting member.
    #[command(after_help = TIMEOUT_CHANGE)]
    AddVoter {
        /// Server id.
        id: String,
        /// Its raft address (host:port).
        address: String,
        /// Only apply if the configuration is still at this index (0: any).
        #[arg(long, default_value_t = 0)]
        prev_index: u64,
    },
    /// Add a non-voting member (receives the log, does not vote).
    #[command(after_help = TIMEOUT_CHANGE)]
    AddNonvoter {
        /// Server id.
        id: String,
        /// Its raft address (host:port).
        address: String,
        /// Only apply if the configuration is still at this index (0: any).
        #[arg(long, default_value_t = 0)]
        prev_index: u64,
    },
    /// Turn a voter into a non-voter.
    #[command(after_help = TIMEOUT_CHANGE)]
    Demote {
        /// Server id.
        id: String,
        /// Only apply if the configuration is still at this index (0: any).
        #[arg(long, default_value_t = 0)]
        prev_index: u64,
    },
    /// Remove a member.
    #[command(after_help = TIMEOUT_CHANGE)]
    Remove {
        /// Server id.
        id: String,
        /// Only apply if the configuration is still at this index (0: any).
        #[arg(long, default_value_t = 0)]
        prev_index: u64,
    },
    /// Hand leadership to another member (the most up-to-date one by default).
    #[command(after_help = TIMEOUT_EACH_CALL)]
    TransferLeadership {
        /// The member to hand leadership to.
        #[arg(long, value_name = "ID")]
        to: Option<String>,
    },
    /// Take a snapshot on the node now and compact its log (and report
    /// what was compacted); `snapshot save|restore` back up and restore.
    #[command(after_help = TIMEOUT_EACH_CALL)]
    Snapshot {
        #[command(subcommand)]
        action: Option<SnapshotCommand>,
    },
    /// The index of the last entry the node applied.
    #[command(after_help = TIMEOUT_EACH_CALL)]
    AppliedIndex,
    /// Offline peers.json recovery of a stopped kv node after the cluster
    /// lost its quorum for good (HashiCorp's peers.json). Run it on every
    /// survivor with the same file, then start them.
    #[command(after_help = RECOVER_HELP)]
    Recover {
        /// The node's data directory (the `--data-dir` of `kv serve`).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The surviving servers: a JSON array of {"id", "address", "non_voter"}.
        #[arg(long, value_name = "FILE")]
        peers: PathBuf,
        /// The node's id (default: the id its data directory records).
        #[arg(long)]
        id: Option<String>,
        /// Print the configuration that would be written; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `--timeout-ms` bounds for commands that make plain calls.
const TIMEOUT_EACH_CALL: &str =
    "--timeout-ms MS bounds each call to a node (plus 5 s of slack for the network; default 10000).";
/// What `--timeout-ms` bounds for membership changes.
const TIMEOUT_CHANGE: &str = "--timeout-ms MS bounds the change on the leader, including a new voter's \
     catch-up (default 10000); the call itself gets 5 s more.";
/// What `--timeout-ms` bounds for snapshot transfers.
const TIMEOUT_TRANSFER: &str =
    "--timeout-ms MS bounds the whole transfer (plus 5 s; default 10000): raise it \
     for large snapshots. For restore it also bounds the restore on the leader.";
/// Help of `recover`.
const RECOVER_HELP: &str = concat!(
    "peers.json lists every surviving server, this one included (HashiCorp's v3 format):\n",
    "  [\n",
    "    {\"id\": \"n1\", \"address\": \"10.0.0.1:7001\", \"non_voter\": false},\n",
    "    {\"id\": \"n2\", \"address\": \"10.0.0.2:7001\"}\n",
    "  ]\n",
    "\"non_voter\" is optional (default false); at least one server must vote.\n",
    "This can lose committed writes only the lost servers had, and breaks raft's guarantees if a ",
    "server not listed still runs: make sure the others are gone for good.\n",
    "--timeout-ms does not apply (nothing is contacted). Give the --cluster-id the node runs with, if any."
);

/// What `snapshot` can do besides taking one.
#[derive(Subcommand)]
enum SnapshotCommand {
    /// Stream the leader's latest snapshot (taken first if anything was
    /// applied since the last) into FILE, with its metadata and a checksum.
    #[command(after_help = TIMEOUT_TRANSFER)]
    Save {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Verify the backup FILE and restore it on the leader: the cluster's
    /// state is replaced with it. For disaster recovery into a quiet
    /// cluster; writes in flight fail.
    #[command(after_help = TIMEOUT_TRANSFER)]
    Restore {
        /// The backup file `snapshot save` wrote.
        file: PathBuf,
    },
}

/// What `members` can do besides listing.
#[derive(Subcommand)]
enum MembersCommand {
    /// Apply several changes atomically through a joint configuration: new
    /// voters catch up as non-voters first; returns once the new
    /// configuration is committed. Each option may be repeated.
    #[command(after_help = TIMEOUT_CHANGE)]
    Change {
        /// Add a voter: ID=HOST:PORT.
        #[arg(long, value_name = "ID=ADDR", value_parser = parse_member)]
        add: Vec<(String, String)>,
        /// Add a non-voter: ID=HOST:PORT.
        #[arg(long, value_name = "ID=ADDR", value_parser = parse_member)]
        nonvoter: Vec<(String, String)>,
        /// Remove a member.
        #[arg(long, value_name = "ID", value_parser = parse_id)]
        remove: Vec<String>,
        /// Make a member a voter.
        #[arg(long, value_name = "ID", value_parser = parse_id)]
        promote: Vec<String>,
        /// Make a voter a non-voter.
        #[arg(long, value_name = "ID", value_parser = parse_id)]
        demote: Vec<String>,
        /// Only apply if the configuration is still at this index (0: any).
        #[arg(long, default_value_t = 0)]
        prev_index: u64,
    },
}

/// Parses `ID=HOST:PORT`.
fn parse_member(value: &str) -> Result<(String, String), String> {
    let (id, addr) =
        value.split_once('=').ok_or_else(|| format!("expected ID=HOST:PORT, got {value:?} (no '=')"))?;
    let (id, addr) = (id.trim(), addr.trim());
    if id.is_empty() {
        return Err(format!("expected ID=HOST:PORT, got {value:?} (empty id)"));
    }
    if addr.is_empty() {
        return Err(format!("expected ID=HOST:PORT, got {value:?} (empty address)"));
    }
    if addr.contains('=') {
        return Err(format!("expected ID=HOST:PORT, got {value:?} (more than one '=')"));
    }
    Ok((id.to_owned(), addr.to_owned()))
}

/// Parses a server id (not empty, no '=': an id is not an ID=ADDR pair).
fn parse_id(value: &str) -> Result<String, String> {
    let id = value.trim();
    if id.is_empty() {
        return Err("a server id is required".to_owned());
    }
    if id.contains('=') {
        return Err(format!(
            "expected a server id, got {value:?} (addresses are only given to --add/--nonvoter)"
        ));
    }
    Ok(id.to_owned())
}

/// The admin request's changes for `members change`, in a fixed order
/// (adds, non-voter adds, removals, promotions, demotions). Refuses an
/// empty set and a server named twice, before anything is sent.
fn member_changes(
    add: &[(String, String)],
    nonvoter: &[(String, String)],
    remove: &[String],
    promote: &[String],
    demote: &[String],
) -> Result<Vec<pb::MemberChange>, String> {
    use pb::MemberChangeKind as K;
    let change = |kind: K, id: &str, address: &str| pb::MemberChange {
        kind: kind as i32,
        id: id.to_owned(),
        address: address.to_owned(),
    };
    let mut changes = Vec::new();
    changes.extend(add.iter().map(|(id, a)| change(K::AddVoter, id, a)));
    changes.extend(nonvoter.iter().map(|(id, a)| change(K::AddNonvoter, id, a)));
    changes.extend(remove.iter().map(|id| change(K::Remove, id, "")));
    changes.extend(promote.iter().map(|id| change(K::Promote, id, "")));
    changes.extend(demote.iter().map(|id| change(K::Demote, id, "")));
    if changes.is_empty() {
        return Err(
            "members change needs at least one --add, --nonvoter, --remove, --promote or --demote".into()
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &changes {
        if !seen.insert(c.id.as_str()) {
            return Err(format!("server {} is named in more than one change", c.id));
        }
    }
    Ok(changes)
}

/// A one-line summary of `changes` for the human output.
fn describe_changes(changes: &[pb::MemberChange]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| match pb::MemberChangeKind::try_from(c.kind) {
            Ok(pb::MemberChangeKind::AddVoter) => format!("added {} ({}) as a voter", c.id, c.address),
            Ok(pb::MemberChangeKind::AddNonvoter) => format!("added {} ({}) as a non-voter", c.id, c.address),
            Ok(pb::MemberChangeKind::Remove) => format!("removed {}", c.id),
            Ok(pb::MemberChangeKind::Promote) => format!("promoted {}", c.id),
            Ok(pb::MemberChangeKind::Demote) => format!("demoted {}", c.id),
            _ => format!("changed {}", c.id),
        })
        .collect();
    parts.join(", ")
}

/// The JSON form of `changes`.
fn changes_json(changes: &[pb::MemberChange]) -> Value {
    let kind = |k: i32| match pb::MemberChangeKind::try_from(k) {
        Ok(pb::MemberChangeKind::AddVoter) => "add-voter",
        Ok(pb::MemberChangeKind::AddNonvoter) => "add-nonvoter",
        Ok(pb::MemberChangeKind::Remove) => "remove",
        Ok(pb::MemberChangeKind::Promote) => "promote",
        Ok(pb::MemberChangeKind::Demote) => "demote",
        _ => "unknown",
    };
    changes
        .iter()
        .map(|c| {
            let mut v = json!({ "change": kind(c.kind), "id": c.id });
            if !c.address.is_empty() {
                v["address"] = json!(c.address);
            }
            v
        })
        .collect()
}

/// Why a command failed; printed on stderr.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "{addr}: this looks like an HTTP port, not the raft gRPC port: point --addr at the node's \
         --raft-addr (where the admin service is), not its --api-addr ({detail})"
    )]
    HttpPort { addr: String, detail: String },
    #[error("{op} is not supported by this server (its admin service is older than this raftctl)")]
    Unsupported { op: &'static str },
    #[error("{op} failed on {addr}: {status}")]
    Rpc { op: &'static str, addr: String, status: String },
    #[error("{0}")]
    Other(String),
}

/// The status's message and the causes below it ("transport error" alone
/// says nothing).
fn status_chain(status: &tonic::Status) -> String {
    use std::error::Error as _;
    match status.source() {
        Some(source) => {
            let cause = admin::error_chain(source);
            if status.message().contains(&cause) {
                status.message().to_owned()
            } else if cause.starts_with(status.message()) {
                cause
            } else {
                format!("{}: {cause}", status.message())
            }
        }
        None => status.message().to_owned(),
    }
}

/// Whether the server at `addr` answers a plain HTTP/1.1 request like an
/// HTTP/1 server ("HTTP/1.1 404 ..."; a gRPC port closes the connection or
/// answers in HTTP/2 frames): asked only once a call failed at the
/// transport level, to tell the operator they gave the HTTP port.
fn answers_http1(addr: &str) -> bool {
    use std::io::{Read, Write};
    let probe = || -> std::io::Result<bool> {
        let target = std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut head = [0u8; 7];
        stream.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.")
    };
    probe().unwrap_or(false)
}

/// What gives away an HTTP/1 or plain HTTP server answering a gRPC call:
/// a response that is not gRPC (a JSON body read as a gRPC frame gives
/// "invalid compression flag: 123", `{`), an HTTP/1 reply to the HTTP/2
/// preface, or a non-gRPC content type.
fn http_port_symptom(status: &tonic::Status) -> Option<String> {
    let text = status_chain(status);
    let lower = text.to_lowercase();
    let symptoms = [
        "invalid compression flag",
        "http/1",
        "invalid http version",
        "frame with invalid size",
        "h2 protocol error",
        "connection error detected: frame",
        "invalid content-type",
    ];
    if symptoms.iter().any(|s| lower.contains(s)) {
        return Some(text);
    }
    match status.metadata().get("content-type").and_then(|v| v.to_str().ok()) {
        Some(ct) if !ct.starts_with("application/grpc") => Some(format!("content-type {ct}: {text}")),
        _ => None,
    }
}

fn describe(status: &tonic::Status) -> String {
    let code = match status.code() {
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        tonic::Code::PermissionDenied => "permission denied (wrong --cluster-id?)",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::Aborted => "aborted",
        tonic::Code::AlreadyExists => "already exists",
        _ => "error",
    };
    format!("{code}: {}", status_chain(status))
}

/// An admin connection to one node.
struct Conn {
    addr: String,
    client: AdminClient,
    /// Whether it runs over TLS.
    tls: bool,
}

struct Ctl {
    config: GrpcConfig,
    json: bool,
    timeout_ms: u64,
    /// `--cluster-id`, for `recover`.
    cluster_id: Option<String>,
}

impl Ctl {
    async fn connect(&self, addr: &str) -> Result<Conn, CtlError> {
        let client = admin::connect(addr, &self.config).await.map_err(|e| {
            // A TLS handshake with a plain HTTP server fails here, before
            // any call: the server's HTTP/1 answer gives it away.
            let reason = e.to_string();
            if self.config.tls.is_some() && answers_http1(addr) {
                CtlError::HttpPort { addr: addr.to_owned(), detail: reason }
            } else {
                CtlError::Connect { addr: addr.to_owned(), reason }
            }
        })?;
        Ok(Conn { addr: addr.to_owned(), client, tls: self.config.tls.is_some() })
    }

    fn rpc_error(op: &'static str, conn: &Conn, status: tonic::Status) -> CtlError {
        if let Some(detail) = http_port_symptom(&status) {
            return CtlError::HttpPort { addr: conn.addr.clone(), detail };
        }
        let transport_failure = matches!(
            status.code(),
            tonic::Code::Unknown
                | tonic::Code::Unavailable
                | tonic::Code::Internal
                | tonic::Code::Unimplemented
        ) && {
            let m = status.message();
            m.contains("transport error")
                || m.contains("connection error")
                || m.contains("tcp connect")
                || status.code() == tonic::Code::Unimplemented
        };
        if transport_failure && !conn.tls && answers_http1(&conn.addr) {
            return CtlError::HttpPort { addr: conn.addr.clone(), detail: status_chain(&status) };
        }
        if status.code() == tonic::Code::Unimplemented {
            return CtlError::Unsupported { op };
        }
        if transport_failure {
            return CtlError::Connect { addr: conn.addr.clone(), reason: status_chain(&status) };
        }
        CtlError::Rpc { op, addr: conn.addr.clone(), status: describe(&status) }
    }

    async fn status(&self, conn: &mut Conn) -> Result<(pb::StatusResponse, Value), CtlError> {
        let status = conn
            .client
            .status(pb::StatusRequest {})
            .await
            .map_err(|s| Self::rpc_error("status", conn, s))?
            .into_inner();
        let stats = conn
            .client
            .stats(pb::StatsRequest {})
            .await
            .map_err(|s| Self::rpc_error("stats", conn, s))?
            .into_inner()
            .stats;
        Ok((status, json!(stats)))
    }

    /// The leader's id and address as the node at `conn` knows them.
    async fn leader_of(&self, conn: &mut Conn) -> Result<Option<(String, String)>, CtlError> {
        let (status, stats) = self.status(conn).await?;
        if !status.leader_id.is_empty() {
            return Ok(Some((status.leader_id, status.leader_address)));
        }
        // `Status` may not name a leader the node only knows from its
        // metrics; the stats carry it as "id@address".
        Ok(stats["leader"]
            .as_str()
            .and_then(|l| l.rsplit_once('@'))
            .map(|(id, addr)| (id.to_owned(), addr.to_owned())))
    }

    /// A connection to the leader, found through the node at `--addr`.
    async fn leader(&self, addr: &str) -> Result<Conn, CtlError> {
        let mut conn = self.connect(addr).await?;
        let (status, _) = self.status(&mut conn).await?;
        if status.state == "Leader" {
            return Ok(conn);
        }
        match self.leader_of(&mut conn).await? {
            Some((id, leader_addr)) => {
                if !self.json {
                    eprintln!(
                        "{addr} is a {}; sending the request to the leader {id} at {leader_addr}",
                        status.state.to_lowercase()
                    );
                }
                self.connect(&leader_addr).await
            }
            None => Err(CtlError::Other(format!(
                "{addr} knows no leader (state {}): an election may be in progress; retry",
                status.state
            ))),
        }
    }

    fn print(&self, value: Value, human: impl FnOnce() -> String) {
        // A closed stdout (`raftctl ... | head`) is not an error worth a panic.
        let mut out = std::io::stdout().lock();
        let _ = if self.json { writeln!(out, "{value}") } else { writeln!(out, "{}", human()) };
    }

    async fn run(&self, addr: &str, command: Command) -> Result<(), CtlError> {
        let timeout_ms = self.timeout_ms;
        match command {
            Command::Status { watch: false, .. } => self.status_once(addr).await?,
            Command::Status { watch: true, interval_ms, count } => {
                let mut shown = 0u64;
                loop {
                    if let Err(e) = self.status_once(addr).await {
                        // A node that is down is worth seeing, not the end
                        // of the watch.
                        eprintln!("raftctl: error: {e}");
                    }
                    shown += 1;
                    if count.is_some_and(|c| shown >= c) {
                        break;
                    }
                    if !self.json {
                        println!();
                    }
                    tokio::time::sleep(Duration::from_millis(interval_ms.max(1))).await;
                }
            }
            Command::Recover { data_dir, peers, id, dry_run } => {
                let (value, human) =
                    recover::recover(&data_dir, &peers, id.as_deref(), self.cluster_id.as_deref(), dry_run)
                        .await
                        .map_err(CtlError::Other)?;
                self.print(value, || human);
            }
            Command::Snapshot { action: Some(SnapshotCommand::Save { file }) } => {
                let mut conn = self.leader(addr).await?;
                let (value, human) = snapshots::save(&mut conn, &file).await?;
                self.print(value, || human);
            }
            Command::Snapshot { action: Some(SnapshotCommand::Restore { file }) } => {
                // Verify the file before looking for the leader: a damaged
                // backup is refused without touching the cluster.
                let info = raft_examples::backup::verify(&file)
                    .map_err(|e| CtlError::Other(format!("refusing to restore: {e}")))?;
                let mut conn = self.leader(addr).await?;
                let (value, human) = snapshots::restore(&mut conn, &file, &info, timeout_ms).await?;
                self.print(value, || human);
            }
            Command::Members { action: None } => self.members(addr).await?,
            other => self.run_simple(addr, other).await?,
        }
        Ok(())
    }

    /// One `status` answer of the node at `addr`, printed.
    async fn status_once(&self, addr: &str) -> Result<(), CtlError> {
        let mut conn = self.connect(addr).await?;
        let (status, stats) = self.status(&mut conn).await?;
        let leader = self.leader_of(&mut conn).await?;
        let num = |k: &str| stats[k].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let value = json!({
            "address": addr,
            "id": stats["id"],
            "state": status.state,
            "term": num("term"),
            "leader": leader.as_ref().map(|(id, a)| json!({ "id": id, "address": a })),
            "last_index": status.last_index,
            "commit_index": num("commit_index"),
            "applied_index": status.applied_index,
            "snapshot_index": num("last_snapshot_index"),
            "first_index": status.first_index,
            "stats": stats,
        });
        self.print(value.clone(), || {
            let leader = leader.map(|(id, a)| format!("{id} ({a})")).unwrap_or_else(|| "none known".into());
            let rows = [
                ("address", addr.to_owned()),
                ("id", value["id"].as_str().unwrap_or("?").to_owned()),
                ("state", value["state"].as_str().unwrap_or("?").to_owned()),
                ("term", value["term"].to_string()),
                ("leader", leader),
                ("last index", value["last_index"].to_string()),
                ("commit index", value["commit_index"].to_string()),
                ("applied index", value["applied_index"].to_string()),
                ("snapshot index", value["snapshot_index"].to_string()),
                ("first index", value["first_index"].to_string()),
            ];
            rows.iter().map(|(k, v)| format!("{k:<15} {v}")).collect::<Vec<_>>().join("\n")
        });
        Ok(())
    }

    /// `members`: the `Members` answer of the leader (asked through the
    /// node at `addr`); the plain configuration from servers without it.
    async fn members(&self, addr: &str) -> Result<(), CtlError> {
        let mut conn = self.connect(addr).await?;
        let mut answer = match conn.client.members(pb::MembersRequest {}).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                return match Self::rpc_error("members", &conn, status) {
                    CtlError::Unsupported { .. } => {
                        self.run_simple(addr, Command::Members { action: None }).await
                    }
                    other => Err(other),
                };
            }
        };
        if !answer.from_leader && !answer.leader_id.is_empty() && answer.leader_id != answer.node_id {
            if !self.json {
                eprintln!(
                    "{addr} ({}) is not the leader; asking the leader {} at {} for replication progress",
                    answer.node_id, answer.leader_id, answer.leader_address
                );
            }
            let mut leader = self.connect(&answer.leader_address).await?;
            answer = leader
                .client
                .members(pb::MembersRequest {})
                .await
                .map_err(|s| Self::rpc_error("members", &leader, s))?
                .into_inner();
        }
        self.print(members::members_json(&answer), || members::members_table(&answer));
        Ok(())
    }

    /// The commands that make one plain call (or a few).
    async fn run_simple(&self, addr: &str, command: Command) -> Result<(), CtlError> {
        let timeout_ms = self.timeout_ms;
        match command {
            Command::Status { .. } | Command::Recover { .. } | Command::Snapshot { action: Some(_) } => {
                return Err(CtlError::Other("raftctl: this command is not run here".into()));
            }
            Command::Members {
                action: Some(MembersCommand::Change { add, nonvoter, remove, promote, demote, prev_index }),
            } => {
                let changes =
                    member_changes(&add, &nonvoter, &remove, &promote, &demote).map_err(CtlError::Other)?;
                let mut conn = self.leader(addr).await?;
                let req = pb::ChangeMembershipRequest { changes: changes.clone(), prev_index, timeout_ms };
                let index = conn
                    .client
                    .change_membership(req)
                    .await
                    .map_err(|s| Self::rpc_error("members change", &conn, s))?
                    .into_inner()
                    .index;
                self.print(
                    json!({ "changes": changes_json(&changes), "configuration_index": index }),
                    || format!("{}; configuration index {index}", describe_changes(&changes)),
                );
            }
            Command::Members { action: None } => {
                let mut conn = self.connect(addr).await?;
                let configuration = conn
                    .client
                    .get_configuration(pb::GetConfigurationRequest {})
                    .await
                    .map_err(|s| Self::rpc_error("get-configuration", &conn, s))?
                    .into_inner();
                let leader = self.leader_of(&mut conn).await?.map(|(id, _)| id);
                let members: Vec<Value> = configuration
                    .members
                    .iter()
                    .map(|m| {
                        json!({
                            "id": m.id,
                            "address": m.address,
                            "suffrage": suffrage(m.suffrage),
                            "leader": leader.as_deref() == Some(m.id.as_str()),
                        })
                    })
                    .collect();
                let value = json!({ "configuration_index": configuration.index, "members": members });
                self.print(value, || {
                    let mut rows =
                        vec![["ID".to_owned(), "ADDRESS".into(), "SUFFRAGE".into(), "ROLE".into()]];
                    for m in &configuration.members {
                        let role = if leader.as_deref() == Some(m.id.as_str()) { "leader" } else { "" };
                        rows.push([
                            m.id.clone(),
                            m.address.clone(),
                            suffrage(m.suffrage).into(),
                            role.into(),
                        ]);
                    }
                    format!("{}\nconfiguration index {}", table(&rows), configuration.index)
                });
            }
            Command::AddVoter { id, address, prev_index } => {
                let mut conn = self.leader(addr).await?;
                let req =
                    pb::AddServerRequest { id: id.clone(), address: address.clone(), prev_index, timeout_ms };
                let index = conn
                    .client
                    .add_voter(req)
                    .await
                    .map_err(|s| Self::rpc_error("add-voter", &conn, s))?
                    .into_inner()
                    .index;
                self.print(json!({ "id": id, "address": address, "configuration_index": index }), || {
                    format!("added {id} ({address}) as a voter; configuration index {index}")
                });
            }
            Command::AddNonvoter { id, address, prev_index } => {
                let mut conn = self.leader(addr).await?;
                let req =
                    pb::AddServerRequest { id: id.clone(), address: address.clone(), prev_index, timeout_ms };
                let index = conn
                    .client
                    .add_nonvoter(req)
                    .await
                    .map_err(|s| Self::rpc_error("add-nonvoter", &conn, s))?
                    .into_inner()
                    .index;
                self.print(json!({ "id": id, "address": address, "configuration_index": index }), || {
                    format!("added {id} ({address}) as a non-voter; configuration index {index}")
                });
            }
            Command::Demote { id, prev_index } => {
                let mut conn = self.leader(addr).await?;
                let req = pb::ServerChangeRequest { id: id.clone(), prev_index, timeout_ms };
                let index = conn
                    .client
                    .demote_voter(req)
                    .await
                    .map_err(|s| Self::rpc_error("demote", &conn, s))?
                    .into_inner()
                    .index;
                self.print(json!({ "id": id, "configuration_index": index }), || {
                    format!("demoted {id} to a non-voter; configuration index {index}")
                });
            }
            Command::Remove { id, prev_index } => {
                let mut conn = self.leader(addr).await?;
                let req = pb::ServerChangeRequest { id: id.clone(), prev_index, timeout_ms };
                let index = conn
                    .client
                    .remove_server(req)
                    .await
                    .map_err(|s| Self::rpc_error("remove", &conn, s))?
                    .into_inner()
                    .index;
                self.print(json!({ "id": id, "configuration_index": index }), || {
                    format!("removed {id}; configuration index {index}")
                });
            }
            Command::TransferLeadership { to } => {
                let mut conn = self.leader(addr).await?;
                let (_, stats) = self.status(&mut conn).await?;
                let previous = stats["id"].as_str().unwrap_or("?").to_owned();
                let (target_id, target_address) = match &to {
                    None => (String::new(), String::new()),
                    Some(id) => {
                        let configuration = conn
                            .client
                            .get_configuration(pb::GetConfigurationRequest {})
                            .await
                            .map_err(|s| Self::rpc_error("get-configuration", &conn, s))?
                            .into_inner();
                        let member =
                            configuration.members.iter().find(|m| &m.id == id).ok_or_else(|| {
                                CtlError::Other(format!("{id} is not a member of the cluster"))
                            })?;
                        (member.id.clone(), member.address.clone())
                    }
                };
                conn.client
                    .leadership_transfer(pb::LeadershipTransferRequest { target_id, target_address })
                    .await
                    .map_err(|s| Self::rpc_error("transfer-leadership", &conn, s))?;
                let new = self.wait_new_leader(&mut conn, &previous).await;
                self.print(json!({ "previous_leader": previous, "new_leader": new }), || match &new {
                    Some(new) => format!("leadership moved from {previous} to {new}"),
                    None => format!("{previous} handed over leadership; the new leader is not known yet"),
                });
            }
            Command::Snapshot { action: None } => {
                let mut conn = self.connect(addr).await?;
                let snap = conn
                    .client
                    .snapshot(pb::SnapshotRequest {})
                    .await
                    .map_err(|s| Self::rpc_error("snapshot", &conn, s))?
                    .into_inner();
                let value = json!({
                    "id": snap.id, "index": snap.index, "term": snap.term, "size": snap.size,
                    "configuration_index": snap.configuration_index, "first_index": snap.first_index,
                });
                self.print(value, || {
                    let taken = format!(
                        "snapshot {} covers the log up to index {} (term {}); {} bytes",
                        snap.id, snap.index, snap.term, snap.size
                    );
                    format!("{taken}; {}", compaction_report(snap.first_index))
                });
            }
            Command::AppliedIndex => {
                let mut conn = self.connect(addr).await?;
                let (status, _) = self.status(&mut conn).await?;
                self.print(json!({ "applied_index": status.applied_index }), || {
                    status.applied_index.to_string()
                });
            }
        }
        Ok(())
    }

    /// After a transfer, asks the old leader who leads now (bounded).
    async fn wait_new_leader(&self, conn: &mut Conn, previous: &str) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some((id, _))) = self.leader_of(conn).await {
                if id != previous {
                    return Some(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

/// What `snapshot` did to the log, from the first index the node reported
/// after compacting it.
fn compaction_report(first_index: u64) -> String {
    match first_index {
        0 => "the node did not report its log's first index".to_string(),
        1 => "nothing compacted: the log still starts at index 1 (trailing_logs keeps the entries behind the snapshot)"
            .to_string(),
        first => format!("the log is compacted through index {} and now starts at index {first}", first - 1),
    }
}

fn suffrage(value: i32) -> &'static str {
    match pb::MemberSuffrage::try_from(value) {
        Ok(pb::MemberSuffrage::Voter) => "voter",
        Ok(pb::MemberSuffrage::Nonvoter) => "nonvoter",
        Ok(pb::MemberSuffrage::IncomingVoter) => "incoming-voter",
        Ok(pb::MemberSuffrage::DemotingVoter) => "demoting-voter",
        Ok(pb::MemberSuffrage::LeavingVoter) => "leaving-voter",
        _ => "unknown",
    }
}

/// Left-aligned columns separated by two spaces.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let tls = match cli.tls_dir.as_deref().map(load_tls_dir).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("raftctl: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = GrpcConfig {
        tls,
        cluster_id: cli.cluster_id.clone(),
        connect_timeout: Duration::from_secs(3),
        rpc_timeout: Duration::from_millis(cli.timeout_ms.saturating_add(5_000)),
        ..GrpcConfig::default()
    };
    let ctl = Ctl { config, json: cli.json, timeout_ms: cli.timeout_ms, cluster_id: cli.cluster_id };
    match ctl.run(&cli.addr, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("raftctl").chain(args.iter().copied()))
    }

    #[test]
    fn members_change_parses_every_kind_of_change() {
        let cli = parse(&[
            "members",
            "change",
            "--add",
            "n4=10.0.0.4:7000",
            "--add",
            "n5=10.0.0.5:7000",
            "--remove",
            "n2",
            "--remove",
            "n3",
            "--promote",
            "n6",
            "--demote",
            "n1",
            "--nonvoter",
            "n7=10.0.0.7:7000",
            "--prev-index",
            "12",
        ])
        .expect("valid");
        let Command::Members {
            action: Some(MembersCommand::Change { add, nonvoter, remove, promote, demote, prev_index }),
        } = cli.command
        else {
            panic!("members change");
        };
        assert_eq!(prev_index, 12);
        let changes = member_changes(&add, &nonvoter, &remove, &promote, &demote).expect("changes");
        let got: Vec<(i32, &str, &str)> =
            changes.iter().map(|c| (c.kind, c.id.as_str(), c.address.as_str())).collect();
        use pb::MemberChangeKind as K;
        assert_eq!(
            got,
            vec![
                (K::AddVoter as i32, "n4", "10.0.0.4:7000"),
                (K::AddVoter as i32, "n5", "10.0.0.5:7000"),
                (K::AddNonvoter as i32, "n7", "10.0.0.7:7000"),
                (K::Remove as i32, "n2", ""),
                (K::Remove as i32, "n3", ""),
                (K::Promote as i32, "n6", ""),
                (K::Demote as i32, "n1", ""),
            ]
        );
        assert_eq!(
            changes_json(&changes)[0],
            json!({ "change": "add-voter", "id": "n4", "address": "10.0.0.4:7000" })
        );
        assert!(describe_changes(&changes).contains("removed n2"));
    }

    #[test]
    fn plain_members_still_lists() {
        let cli = parse(&["members", "--json"]).expect("valid");
        assert!(matches!(cli.command, Command::Members { action: None }));
    }

    #[test]
    fn malformed_member_changes_are_refused_with_a_reason() {
        for (args, reason) in [
            (vec!["--add", "n4"], "no '='"),
            (vec!["--add", "=10.0.0.4:7000"], "empty id"),
            (vec!["--add", "n4="], "empty address"),
            (vec!["--nonvoter", "n4=a=b"], "more than one '='"),
            (vec!["--remove", "n2=10.0.0.2:7000"], "addresses are only given"),
            (vec!["--promote", ""], "server id is required"),
            (vec!["--prev-index", "x", "--remove", "n2"], "invalid"),
        ] {
            let mut full = vec!["members", "change"];
            full.extend(&args);
            let err = match parse(&full) {
                Ok(_) => panic!("{args:?} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(reason), "{args:?}: {err}");
        }
        assert!(member_changes(&[], &[], &[], &[], &[]).expect_err("empty").contains("at least one"));
        let twice = member_changes(&[("n2".into(), "a:1".into())], &[], &["n2".into()], &[], &[]);
        assert!(twice.expect_err("twice").contains("n2 is named in more than one change"));
    }
}
