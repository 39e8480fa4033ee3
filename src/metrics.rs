//! Prometheus metrics (`GET /metrics`): the one registry of the node and every metric in it.
//!
//! This module owns the names, help texts, label values and buckets of every metric raftlite
//! exposes, and the text it answers (OpenMetrics text, which Prometheus scrapes). Callers
//! record through the typed methods of [`Metrics`]; none of them names a metric.
//!
//! Two kinds of metric:
//! - **Recorded** as things happen (counters and histograms held in the registry): backups by
//!   format and outcome, their bytes and durations, loads, the apply latency of one entry in
//!   the state machine and the leader's commit latency of a write.
//! - **Read at scrape time** from the node ([`NodeReading`], filled by the HTTP handler from
//!   the store and encoded by a collector): Raft's state, term and indexes, the log's size on
//!   disk, the backup copies in progress, made and shared, and the age of the newest completed
//!   backup. They are never stale and cost nothing between scrapes.
//!
//! The commit latency of a write runs from the batcher's proposal to the moment this node's
//! state machine begins applying the entry (openraft applies only committed entries), so it
//! includes any wait behind earlier entries' apply; the apply latency is one entry's own
//! transaction. The apply latency is observed on every node, the commit latency only where the
//! write was proposed (the leader).
//!
//! Invariants:
//! - One [`Metrics`] per node, owned by the store's shared state (no global registry): two
//!   nodes in one process (tests) never mix their numbers.
//! - A backup that started streaming is counted exactly once, when its body ends, fails or is
//!   dropped (a client that went away is an `error`); one refused before its first byte is
//!   counted once, with the reason.
//! - Each node reports itself: nothing here is forwarded to the leader.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::Stream;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::store::backup::ByteStream;

/// The `Content-Type` of the answer (what the encoder writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A backup's format, as its label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFormat {
    Binary,
    Sql,
}

impl BackupFormat {
    fn label(self) -> &'static str {
        match self {
            BackupFormat::Binary => "binary",
            BackupFormat::Sql => "sql",
        }
    }
}

/// How a backup request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupOutcome {
    /// The whole body was sent.
    Ok,
    /// It failed before or while streaming, or the client went away before the end.
    Error,
    /// The client's copy is current (a conditional request answered 304).
    NotModified,
    /// Refused: `-max-backup-copies` copies were in progress (503).
    TooManyCopies,
    /// Refused or stopped at `-disk-reserve` (507).
    InsufficientStorage,
}

impl BackupOutcome {
    fn label(self) -> &'static str {
        match self {
            BackupOutcome::Ok => "ok",
            BackupOutcome::Error => "error",
            BackupOutcome::NotModified => "not_modified",
            BackupOutcome::TooManyCopies => "too_many_copies",
            BackupOutcome::InsufficientStorage => "insufficient_storage",
        }
    }

    /// The outcome of a backup refused before its first byte, from its status (mapped from the
    /// error in one place, `http::error_status::backup`).
    pub fn refused_with(status: StatusCode) -> BackupOutcome {
        match status {
            StatusCode::SERVICE_UNAVAILABLE => BackupOutcome::TooManyCopies,
            StatusCode::INSUFFICIENT_STORAGE => BackupOutcome::InsufficientStorage,
            StatusCode::NOT_MODIFIED => BackupOutcome::NotModified,
            _ => BackupOutcome::Error,
        }
    }
}

/// Which restore endpoint a load came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// `POST /db/load`.
    Load,
    /// `POST /boot`.
    Boot,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackupLabels {
    format: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    kind: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Backups take from milliseconds (a small database, a shared copy) to many minutes.
fn backup_duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

/// The node's metrics (one per node, see the module's invariants).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    backups: Family<BackupLabels, Counter>,
    backup_bytes: Family<FormatLabel, Counter>,
    backup_duration: HistogramFamily<FormatLabel>,
    loads: Family<LoadLabels, Counter>,
    apply_duration: Histogram,
    commit_duration: Histogram,
    /// What the collector encodes at scrape time.
    reading: Arc<Mutex<Reading>>,
    /// Held for the whole of a scrape, so concurrent scrapes do not mix their readings.
    scrape: Mutex<()>,
    /// When the newest backup ended with its whole body sent.
    newest_backup: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let backups = Family::<BackupLabels, Counter>::default();
        registry.register(
            "raftlite_backups",
            "Backup requests answered by this node, by format and outcome",
            backups.clone(),
        );
        let backup_bytes = Family::<FormatLabel, Counter>::default();
        registry.register_with_unit(
            "raftlite_backup_sent",
            "Bytes of backups sent, by format (before `compress`)",
            Unit::Bytes,
            backup_bytes.clone(),
        );
        let backup_duration: HistogramFamily<FormatLabel> =
            Family::new_with_constructor(backup_duration_buckets);
        registry.register_with_unit(
            "raftlite_backup_duration",
            "Time from a backup request to the end of its body stream, by format",
            Unit::Seconds,
            backup_duration.clone(),
        );
        let loads = Family::<LoadLabels, Counter>::default();
        registry.register(
            "raftlite_loads",
            "Restores answered by this node (/db/load: load, /boot: boot), by outcome (ok: 2xx, \
             rejected: 4xx, error: 5xx)",
            loads.clone(),
        );
        // One entry's apply: a single write is well under a millisecond, a batch or a large
        // statement up to seconds.
        let apply_duration = Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        registry.register_with_unit(
            "raftlite_raft_apply_duration",
            "Time to apply one log entry in the state machine",
            Unit::Seconds,
            apply_duration.clone(),
        );
        // A commit is a replication round and an fsync on a majority: milliseconds, seconds
        // when a node is slow.
        let commit_duration = Histogram::new(exponential_buckets(0.0005, 4.0, 9));
        registry.register_with_unit(
            "raftlite_raft_commit_duration",
            "Time from proposing a write's entry to its commit, on the leader",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let reading = Arc::new(Mutex::new(Reading::default()));
        registry.register_collector(Box::new(ReadingCollector(Arc::clone(&reading))));
        Metrics {
            registry,
            backups,
            backup_bytes,
            backup_duration,
            loads,
            apply_duration,
            commit_duration,
            reading,
            scrape: Mutex::new(()),
            newest_backup: Mutex::new(None),
        }
    }

    /// Starts timing a backup served by this node (after any forwarding): the clock runs from
    /// here to the end of its body. Resolve it with [`BackupTracker::refused`],
    /// [`BackupTracker::not_modified`] or [`BackupTracker::stream`].
    pub fn backup(self: &Arc<Self>, format: BackupFormat) -> BackupTracker {
        BackupTracker {
            metrics: Arc::clone(self),
            format,
            started: Instant::now(),
        }
    }

    fn backup_ended(&self, format: BackupFormat, outcome: BackupOutcome, took: Duration) {
        self.backups
            .get_or_create(&BackupLabels {
                format: format.label(),
                outcome: outcome.label(),
            })
            .inc();
        self.backup_duration
            .get_or_create(&FormatLabel {
                format: format.label(),
            })
            .observe(took.as_secs_f64());
        if outcome == BackupOutcome::Ok {
            *self.newest_backup.lock() = Some(Instant::now());
        }
    }

    /// Counts a restore this node answered, by the answer's status class.
    pub fn load_answered(&self, kind: LoadKind, status: StatusCode) {
        let outcome = if status.is_success() {
            "ok"
        } else if status.is_client_error() {
            "rejected"
        } else {
            "error"
        };
        let kind = match kind {
            LoadKind::Load => "load",
            LoadKind::Boot => "boot",
        };
        self.loads
            .get_or_create(&LoadLabels { kind, outcome })
            .inc();
    }

    /// One entry applied in the state machine in `took`.
    pub fn entry_applied(&self, took: Duration) {
        self.apply_duration.observe(took.as_secs_f64());
    }

    /// A write's entry, proposed at `proposed`, was committed (the state machine began
    /// applying it) at `committed`.
    pub fn write_committed(&self, proposed: Instant, committed: Instant) {
        self.commit_duration
            .observe(committed.saturating_duration_since(proposed).as_secs_f64());
    }

    /// The exposition: the recorded metrics and `reading` (the node as of now).
    pub fn render(&self, node: NodeReading) -> Result<String, fmt::Error> {
        let newest_backup_age = self.newest_backup.lock().map(|t| t.elapsed());
        let _one_scrape_at_a_time = self.scrape.lock();
        *self.reading.lock() = Reading {
            node,
            newest_backup_age,
        };
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A backup being served, timed from its request (see [`Metrics::backup`]).
pub struct BackupTracker {
    metrics: Arc<Metrics>,
    format: BackupFormat,
    started: Instant,
}

impl BackupTracker {
    /// It was refused before its first byte with `status`.
    pub fn refused(self, status: StatusCode) {
        let outcome = BackupOutcome::refused_with(status);
        self.metrics
            .backup_ended(self.format, outcome, self.started.elapsed());
    }

    /// The client's copy is current: nothing was sent.
    pub fn not_modified(self) {
        self.metrics.backup_ended(
            self.format,
            BackupOutcome::NotModified,
            self.started.elapsed(),
        );
    }

    /// Its body (`len` bytes when known), counted as it is read: bytes as they pass, and the
    /// outcome and duration once it ends (`ok`: its end, or its last announced byte, was
    /// handed on), fails or is dropped before its end (`error`).
    pub fn stream(self, body: ByteStream, len: Option<u64>) -> ByteStream {
        let bytes = self
            .metrics
            .backup_bytes
            .get_or_create(&FormatLabel {
                format: self.format.label(),
            })
            .clone();
        Box::pin(TrackedBody {
            inner: body,
            bytes,
            remaining: len,
            tracker: Some(self),
        })
    }
}

/// A backup body that reports how it ended (see [`BackupTracker::stream`]).
struct TrackedBody {
    inner: ByteStream,
    bytes: Counter,
    /// Bytes still to come of a body whose length was announced: at zero it is complete, even
    /// if the server never polls for its end (a sized body need not be).
    remaining: Option<u64>,
    /// Taken when the outcome is recorded: exactly once.
    tracker: Option<BackupTracker>,
}

impl TrackedBody {
    fn end(&mut self, outcome: BackupOutcome) {
        if let Some(t) = self.tracker.take() {
            t.metrics
                .backup_ended(t.format, outcome, t.started.elapsed());
        }
    }
}

impl Stream for TrackedBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                this.bytes.inc_by(n);
                if let Some(remaining) = &mut this.remaining {
                    *remaining = remaining.saturating_sub(n);
                    if *remaining == 0 {
                        this.end(BackupOutcome::Ok);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(BackupOutcome::Error),
            Poll::Ready(None) => this.end(BackupOutcome::Ok),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away, or actix stopped sending.
        self.end(BackupOutcome::Error);
    }
}

/// Raft's role, as the `state` label of `raftlite_raft_state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaftRole {
    Leader,
    #[default]
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl RaftRole {
    const ALL: [RaftRole; 5] = [
        RaftRole::Leader,
        RaftRole::Follower,
        RaftRole::Candidate,
        RaftRole::Learner,
        RaftRole::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            RaftRole::Leader => "leader",
            RaftRole::Follower => "follower",
            RaftRole::Candidate => "candidate",
            RaftRole::Learner => "learner",
            RaftRole::Shutdown => "shutdown",
        }
    }
}

/// What is read from the node at scrape time (see the module's doc).
#[derive(Debug, Clone, Default)]
pub struct NodeReading {
    pub raft_role: RaftRole,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// Bytes of the Raft log's segment files.
    pub log_bytes: u64,
    /// Binary backup copies being made now.
    pub copies_in_progress: u64,
    pub copies_made: u64,
    pub copies_shared: u64,
    /// Automatic backups and continuous archiving (`auto_backup`, `archive`): counters the
    /// HTTP side adds from their stats (zeros when they are off).
    pub uploads_ok: u64,
    pub uploads_failed: u64,
    pub upload_bytes: u64,
    pub archived_index: u64,
    pub archive_chunks: u64,
    pub archive_bases: u64,
    pub archive_failures: u64,
    /// How long the oldest applied entry not yet archived has waited (0 when none waits):
    /// the recovery point if the leader's machine were lost now.
    pub archive_lag: Duration,
}

/// What the collector encodes: the node's reading, and what [`Metrics`] itself knows.
#[derive(Debug, Clone, Default)]
struct Reading {
    node: NodeReading,
    /// `None` before the first completed backup: the metric is then absent.
    newest_backup_age: Option<Duration>,
}

/// Encodes the [`Reading`] of the scrape in progress.
#[derive(Debug)]
struct ReadingCollector(Arc<Mutex<Reading>>);

impl Collector for ReadingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Reading {
            node: r,
            newest_backup_age,
        } = self.0.lock().clone();
        {
            let mut family = encoder.encode_descriptor(
                "raftlite_raft_state",
                "Raft state of this node: 1 for the current one",
                None,
                MetricType::Gauge,
            )?;
            for role in RaftRole::ALL {
                ConstGauge::new(i64::from(role == r.raft_role))
                    .encode(family.encode_family(&[("state", role.label())])?)?;
            }
        }
        let gauges: [(&str, &str, Option<Unit>, u64); 5] = [
            ("raftlite_raft_term", "Current Raft term", None, r.term),
            (
                "raftlite_raft_commit_index",
                "Highest log index known to be committed",
                None,
                r.commit_index,
            ),
            (
                "raftlite_raft_applied_index",
                "Highest log index applied to the database",
                None,
                r.applied_index,
            ),
            (
                "raftlite_raft_last_log_index",
                "Index of the last entry in the Raft log",
                None,
                r.last_log_index,
            ),
            (
                "raftlite_raft_log_size",
                "Size of the Raft log's segment files on disk",
                Some(Unit::Bytes),
                r.log_bytes,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                metric.metric_type(),
            )?)?;
        }
        let in_progress = ConstGauge::new(i64::try_from(r.copies_in_progress).unwrap_or(0));
        in_progress.encode(encoder.encode_descriptor(
            "raftlite_backup_copies_in_progress",
            "Binary backup copies being made now",
            None,
            in_progress.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "raftlite_backup_copies_made",
                "Binary backup copies made since start-up",
                r.copies_made,
            ),
            (
                "raftlite_backup_copies_shared",
                "Binary backups served by a copy another backup made",
                r.copies_shared,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        for (name, help, unit, value) in [
            (
                "raftlite_auto_backup_uploads",
                "Automatic backups uploaded since start-up",
                None,
                r.uploads_ok,
            ),
            (
                "raftlite_auto_backup_upload_failures",
                "Automatic backups that failed since start-up",
                None,
                r.uploads_failed,
            ),
            (
                "raftlite_auto_backup_upload",
                "Bytes of automatic backups uploaded since start-up",
                Some(Unit::Bytes),
                r.upload_bytes,
            ),
            (
                "raftlite_archive_chunks",
                "Log chunks this node archived since start-up",
                None,
                r.archive_chunks,
            ),
            (
                "raftlite_archive_bases",
                "Base backups this node archived since start-up",
                None,
                r.archive_bases,
            ),
            (
                "raftlite_archive_failures",
                "Archiving attempts that failed since start-up",
                None,
                r.archive_failures,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                counter.metric_type(),
            )?)?;
        }
        let archived = ConstGauge::new(i64::try_from(r.archived_index).unwrap_or(i64::MAX));
        archived.encode(encoder.encode_descriptor(
            "raftlite_archive_index",
            "Highest log index this node has archived",
            None,
            archived.metric_type(),
        )?)?;
        let lag = ConstGauge::new(r.archive_lag.as_secs_f64());
        lag.encode(encoder.encode_descriptor(
            "raftlite_archive_lag",
            "Age of the oldest applied entry not yet archived (0 when none waits)",
            Some(&Unit::Seconds),
            lag.metric_type(),
        )?)?;
        if let Some(age) = newest_backup_age {
            let gauge = ConstGauge::new(age.as_secs_f64());
            gauge.encode(encoder.encode_descriptor(
                "raftlite_backup_newest_age",
                "Time since the newest backup whose whole body was sent",
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn body(items: Vec<std::io::Result<Bytes>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(items))
    }

    fn rendered(m: &Metrics) -> String {
        m.render(NodeReading::default()).expect("render")
    }

    #[tokio::test]
    async fn a_backup_body_counts_bytes_and_its_end_once() {
        let m = Arc::new(Metrics::new());
        let out: Vec<_> = m
            .backup(BackupFormat::Sql)
            .stream(
                body(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Ok(Bytes::from_static(b"de")),
                ]),
                None,
            )
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        let text = rendered(&m);
        assert!(
            text.contains("raftlite_backup_sent_bytes_total{format=\"sql\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("raftlite_backups_total{format=\"sql\",outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("raftlite_backup_newest_age_seconds "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_body_is_an_error() {
        let m = Arc::new(Metrics::new());
        let failing = m.backup(BackupFormat::Binary).stream(
            body(vec![
                Ok(Bytes::from_static(b"x")),
                Err(std::io::Error::other("disk gone")),
            ]),
            Some(10),
        );
        let _: Vec<_> = failing.collect().await;
        let mut abandoned = m.backup(BackupFormat::Binary).stream(
            body(vec![
                Ok(Bytes::from_static(b"y")),
                Ok(Bytes::from_static(b"z")),
            ]),
            None,
        );
        let _ = abandoned.next().await;
        drop(abandoned);
        let text = rendered(&m);
        assert!(
            text.contains("raftlite_backups_total{format=\"binary\",outcome=\"error\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"ok\""), "{text}");
        assert!(
            !text.contains("raftlite_backup_newest_age"),
            "no completed backup yet: {text}"
        );
    }

    #[tokio::test]
    async fn a_sized_body_is_complete_at_its_last_byte() {
        let m = Arc::new(Metrics::new());
        let mut sized = m.backup(BackupFormat::Binary).stream(
            body(vec![
                Ok(Bytes::from_static(b"ab")),
                Ok(Bytes::from_static(b"cd")),
            ]),
            Some(4),
        );
        assert!(sized.next().await.is_some());
        assert!(sized.next().await.is_some());
        // Dropped without being polled for its end, as a server may do with a sized body.
        drop(sized);
        let text = rendered(&m);
        assert!(
            text.contains("raftlite_backups_total{format=\"binary\",outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"error\""), "{text}");
    }

    #[test]
    fn refusals_are_told_apart_by_status() {
        let m = Arc::new(Metrics::new());
        m.backup(BackupFormat::Binary)
            .refused(StatusCode::SERVICE_UNAVAILABLE);
        m.backup(BackupFormat::Binary)
            .refused(StatusCode::INSUFFICIENT_STORAGE);
        m.backup(BackupFormat::Sql)
            .refused(StatusCode::INTERNAL_SERVER_ERROR);
        m.backup(BackupFormat::Sql).not_modified();
        let text = rendered(&m);
        for want in [
            "{format=\"binary\",outcome=\"too_many_copies\"} 1\n",
            "{format=\"binary\",outcome=\"insufficient_storage\"} 1\n",
            "{format=\"sql\",outcome=\"error\"} 1\n",
            "{format=\"sql\",outcome=\"not_modified\"} 1\n",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }

    #[test]
    fn the_raft_state_has_one_current_role() {
        let m = Metrics::new();
        let text = m
            .render(NodeReading {
                raft_role: RaftRole::Candidate,
                term: 7,
                ..NodeReading::default()
            })
            .unwrap();
        assert!(
            text.contains("raftlite_raft_state{state=\"candidate\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("raftlite_raft_state{state=\"leader\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("raftlite_raft_term 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
