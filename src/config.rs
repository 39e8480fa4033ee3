//! The `raftlited` configuration: rqlited's command line, parsed and validated.
//!
//! This module owns the flag table (every `rqlited` flag plus raftlite's own), the typed
//! [`Config`] built from it, and the startup validation rules. It does not open files, bind
//! ports or read the credentials file; the binary does that with the values found here.
//!
//! Compatibility contract: any command line `rqlited` accepts, `raftlited` accepts with the same
//! meaning, and the error texts are rqlited's (the tests below pin each one). The
//! differences are deliberate and listed here:
//! - Defaults: `-http-addr` is `127.0.0.1:4001` and `-raft-addr` is `127.0.0.1:4002`
//!   (rqlited: `localhost:…`); raftlite binds loopback unless told otherwise.
//! - Port 0 in `-http-addr` or `-raft-addr` means "bind any free port" (tests use it). The
//!   advertised address is then unknown until the socket is bound, so the matching
//!   `*_adv_addr` field stays `None` (unless given explicitly), and so does `node_id` when it
//!   defaults to the advertised Raft address. **The binary fills them in after binding.** The
//!   "HTTP and Raft addresses must differ" rule does not apply to two port-0 addresses.
//! - Ports must be numbers (rqlited lets `-http-addr host:http` through to `net.Listen`).
//! - `-http-addr httpbin:4001` is accepted: rqlited refuses every address starting with
//!   `http`, we refuse only `http://` and `https://`.
//! - Negative values for Go `int` flags (`-join-attempts -1`) and for duration flags are
//!   refused; rqlited accepts them and then behaves oddly.
//!
//! Each flag row carries a [`Support`] level saying what the binary does with it *today*:
//! honoured, accepted but ignored (the binary warns, see [`Config::accepted_but_ignored`]), or
//! refused by [`Config::validate`] because ignoring it would silently drop something the
//! operator relies on: backups, restores, change events, TLS, or cluster discovery (a node
//! that ignores `-disco-mode` would bootstrap a cluster of its own). Whoever implements a flag
//! moves its row to `Honoured`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::flags::{FlagError, FlagKind, FlagSet, FlagSpec, ParseResult, ParsedFlags};
use FlagKind::{Bool, Duration as Dur, String as Str, Usize, I64, U64};
use Support::{Honoured, Ignored, Refused};

/// The first lines of `raftlited -h`; the flag list follows.
const USAGE_HEADER: &str =
    "\nraftlite is a Raft-replicated SQLite server, compatible with rqlite: it accepts rqlited's\n\
command line, HTTP API and shell, and is built for fast hot backups.\n\
\n\
Usage: raftlited [flags] [data directory]   (default: ./raftlite-data)\n";

/// What `raftlited` does with a flag today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Honoured,
    /// Parsed and validated, then not used; the binary warns when it is set.
    Ignored,
    /// Setting it stops startup. The text completes "refusing to start rather than …".
    Refused(&'static str),
}

struct ConfigFlag {
    spec: FlagSpec,
    support: Support,
}

const fn flag(
    name: &'static str,
    kind: FlagKind,
    default: &'static str,
    support: Support,
    help: &'static str,
) -> ConfigFlag {
    ConfigFlag {
        spec: FlagSpec {
            name,
            kind,
            default,
            help,
        },
        support,
    }
}

/// The data directory when none is given (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "raftlite-data";

/// Every flag `raftlited` accepts. Defaults are rqlited's except where the module docs say.
/// Go `int` flags are `I64` here so that parsing and `-h` match rqlited exactly.
#[rustfmt::skip]
const FLAGS: &[ConfigFlag] = &[
    // Identity and addresses.
    flag("node-id", Str, "", Honoured, "Unique, stable ID for this node. If not set, the advertised Raft address"),
    flag("http-addr", Str, "127.0.0.1:4001", Honoured, "HTTP API bind address, host:port. Port 0 binds a free port"),
    flag("http-adv-addr", Str, "", Honoured, "HTTP API address advertised to clients and other nodes. If not set, the bind address"),
    flag("raft-addr", Str, "127.0.0.1:4002", Honoured, "Raft and cluster bind address, host:port. Port 0 binds a free port"),
    flag("raft-adv-addr", Str, "", Honoured, "Raft address advertised to other nodes. If not set, the bind address"),
    // Forming and joining a cluster.
    flag("join", Str, "", Honoured, "Comma-separated Raft addresses (host:port) of nodes through which to join a cluster"),
    flag("join-attempts", I64, "5", Honoured, "Number of attempts to join the cluster"),
    flag("join-interval", Dur, "3s", Honoured, "Time between join attempts"),
    flag("join-as", Str, "", Honoured, "User in the -auth file whose credentials are used to join. If not set, joins anonymously"),
    flag("bootstrap-expect", I64, "0", Honoured, "Number of voting nodes to wait for, then bootstrap the cluster together"),
    flag("bootstrap-expect-timeout", Dur, "120s", Honoured, "Maximum time to wait for -bootstrap-expect nodes"),
    flag("cluster-connect-timeout", Dur, "30s", Ignored, "Timeout for the first connection to another node"),
    flag("disco-mode", Str, "", Honoured, "Node discovery mode: consul-kv, etcd-kv, dns or dns-srv. If not set, no discovery"),
    flag("disco-key", Str, "rqlite", Honoured, "Key prefix in the discovery service"),
    flag("disco-config", Str, "", Honoured, "Discovery configuration, or the path of a file holding it"),
    // Raft.
    flag("raft-non-voter", Bool, "false", Honoured, "Run as a non-voting read replica"),
    flag("raft-snap", U64, "8192", Honoured, "Number of log entries since the last snapshot that triggers a snapshot"),
    // openraft checks `-raft-snap` each time the commit index advances; this interval is how
    // often the WAL's size is measured for `-raft-snap-wal-size`, as in rqlited.
    flag("raft-snap-int", Dur, "10s", Honoured, "How often to check whether a snapshot is due"),
    flag("raft-snap-wal-size", U64, "4194304", Honoured, "SQLite WAL size in bytes that triggers a snapshot. 0 disables"),
    flag("raft-log-level", Str, "WARN", Honoured, "Minimum level of Raft log messages"),
    flag("raft-heartbeat-timeout", Dur, "1s", Honoured, "Raft heartbeat timeout"),
    flag("raft-election-timeout", Dur, "1s", Honoured, "Raft election timeout"),
    flag("raft-commit-timeout", Dur, "50ms", Ignored, "Raft commit timeout"),
    flag("raft-apply-timeout", Dur, "10s", Honoured, "Maximum time to wait for a write to be applied"),
    flag("raft-leader-lease-timeout", Dur, "0s", Ignored, "Raft leader lease timeout. 0s uses the Raft default"),
    flag("raft-remove-shutdown", Bool, "false", Honoured, "Shut down Raft when this node is removed from the cluster"),
    flag("raft-cluster-remove-shutdown", Bool, "false", Honoured, "Remove this node from the cluster on graceful shutdown"),
    flag("raft-shutdown-stepdown", Bool, "true", Honoured, "Step down before shutting down if leader"),
    flag("raft-reap-node-timeout", Dur, "0h", Honoured, "Remove an unreachable voting node after this long. If not set, never"),
    flag("raft-reap-read-only-node-timeout", Dur, "0h", Honoured, "Remove an unreachable non-voting node after this long. If not set, never"),
    flag("raft-log-segment-size", U64, "67108864", Honoured, "Maximum size in bytes of one Raft log segment file"),
    flag("raft-trailing-logs", U64, "1024", Honoured, "Log entries kept behind a snapshot, so lagging followers catch up from the log instead of a snapshot"),
    flag("compress-snap-transport", Bool, "false", Ignored, "Compress snapshots sent to other nodes"),
    // SQLite.
    flag("fk", Bool, "false", Honoured, "Enforce SQLite foreign key constraints"),
    flag("write-budget-steps", U64, "500000000", Honoured, "Work one write request may do on every node, in SQLite progress steps (about one per row visited); over it, the request fails with 'execute timeout' and is undone (raftlite only)"),
    flag("max-query-result-size", U64, "134217728", Honoured, "The most bytes of rows one statement of a query may return; over it, that statement answers 'query result too large' (raftlite only)"),
    flag("db-max-ro-conns", I64, "256", Honoured, "Maximum number of read-only database connections"),
    flag("auto-vacuum-int", Dur, "0s", Honoured, "Time between automatic VACUUMs. If not set, never"),
    flag("auto-optimize-int", Dur, "24h", Honoured, "Time between automatic 'PRAGMA optimize'. 0h disables"),
    flag("extensions-path", Str, "", Honoured, "Comma-separated directories, zip or tar.gz files of SQLite extensions to load"),
    flag("cdc-config", Str, "", Honoured, "CDC HTTP endpoint, or path to a CDC configuration file. If not set, no CDC"),
    // Queued writes.
    flag("write-queue-capacity", I64, "1024", Honoured, "Capacity of the queued-writes queue"),
    flag("write-queue-batch-size", I64, "128", Honoured, "Batch size of the queued-writes queue"),
    flag("write-queue-timeout", Dur, "50ms", Honoured, "Time after which a partial batch of queued writes is sent"),
    flag("write-queue-tx", Bool, "false", Honoured, "Wrap each batch of queued writes in a transaction"),
    // HTTP API.
    flag("auth", Str, "", Honoured, "Path to the credentials and permissions file. If not set, no authentication"),
    flag("http-allow-origin", Str, "", Honoured, "Value of the Access-Control-Allow-Origin header"),
    flag("http-cert", Str, "", Honoured, "Path to the HTTPS X.509 certificate"),
    flag("http-key", Str, "", Honoured, "Path to the HTTPS X.509 private key"),
    flag("http-ca-cert", Str, "", Honoured, "Path to the X.509 CA certificate for HTTPS"),
    flag("http-verify-client", Bool, "false", Honoured, "Require client certificates (mutual TLS) on HTTPS"),
    flag("http-verify-common-name", Str, "", Honoured, "Common Name required in client certificates"),
    flag("max-body-size", U64, "67108864", Honoured, "Largest request body in bytes accepted by the JSON endpoints"),
    flag("max-load-size", U64, "0", Honoured, "Largest /db/load or /boot body in bytes. 0: limited only by free disk (see -disk-reserve)"),
    // Inter-node TLS.
    flag("node-cert", Str, "", Honoured, "Path to the X.509 certificate for inter-node TLS"),
    flag("node-key", Str, "", Honoured, "Path to the X.509 private key for inter-node TLS"),
    flag("node-ca-cert", Str, "", Honoured, "Path to the X.509 CA certificate for inter-node TLS"),
    flag("node-no-verify", Bool, "false", Honoured, "Skip verification of certificates presented by other nodes"),
    flag("node-verify-client", Bool, "false", Honoured, "Require certificates from connecting nodes (mutual TLS)"),
    flag("node-verify-server-name", Str, "", Honoured, "Host name to verify in certificates presented by other nodes"),
    flag("node-verify-common-name", Str, "", Honoured, "Common Name required in certificates of connecting nodes"),
    // Backups and restores.
    flag("auto-backup", Str, "", Honoured, "Path to the automatic backup configuration file. If not set, no automatic backups"),
    flag("auto-restore", Str, "", Honoured, "Path to the automatic restore configuration file. If not set, no automatic restore"),
    flag("backup-tmp-dir", Str, "", Honoured, "Directory for temporary backup files. If not set, the data directory"),
    flag("disk-reserve", U64, "268435456", Honoured, "Free bytes that backups, loads and boots must leave on the data file system"),
    flag("max-backup-copies", Usize, "16", Honoured, "Maximum number of backups in progress at once"),
    flag("backup-keep", Dur, "5m", Honoured, "Keep a finished binary backup copy this long after its last use, to serve the same content again and resume downloads (Range). 0: keep none, and stream plain binary backups straight from the database (no copy on disk)"),
    flag("backup-keep-size", U64, "4294967296", Honoured, "Most bytes of finished backup copies kept at once (they give way to a new copy that needs the room)"),
    flag("dump-wal-limit", U64, "1073741824", Honoured, "Abort a SQL dump once the WAL has grown by this many bytes while the dump holds its snapshot. 0: no limit"),
    flag("dump-stall-timeout", Dur, "2m", Honoured, "Abort a SQL dump whose client has read nothing for this long"),
    // Metrics.
    flag("otlp-endpoint", Str, "", Ignored, "OpenTelemetry Collector address (host:port) for metrics. If not set, no OTLP export"),
    flag("otlp-interval", Dur, "30s", Ignored, "Time between OTLP metric exports"),
    flag("otlp-insecure", Bool, "false", Ignored, "Use plaintext gRPC to the OpenTelemetry Collector"),
    flag("otlp-no-verify", Bool, "false", Ignored, "Skip verification of the OpenTelemetry Collector certificate"),
    flag("otlp-ca-cert", Str, "", Ignored, "Path to the X.509 CA certificate for the OpenTelemetry Collector"),
    flag("otlp-cert", Str, "", Ignored, "Path to the X.509 certificate for mutual TLS with the OpenTelemetry Collector"),
    flag("otlp-key", Str, "", Ignored, "Path to the X.509 private key for mutual TLS with the OpenTelemetry Collector"),
    // Profiling and information.
    flag("cpu-profile", Str, "", Ignored, "Path of a file to write CPU profiling data to"),
    flag("mem-profile", Str, "", Ignored, "Path of a file to write memory profiling data to"),
    flag("trace-profile", Str, "", Ignored, "Path of a file to write trace profiling data to"),
    flag("version", Bool, "false", Honoured, "Show version information and exit"),
];

fn flag_set() -> FlagSet {
    FlagSet::new(FLAGS.iter().map(|f| f.spec))
}

/// The support level of flag `name`, or `None` if there is no such flag.
pub fn flag_support(name: &str) -> Option<Support> {
    FLAGS
        .iter()
        .find(|f| f.spec.name == name)
        .map(|f| f.support)
}

/// What the command line asks `raftlited` to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    /// Start a node with this (validated) configuration.
    Run(Box<Config>),
    /// `-h`/`-help`: print this text to stderr and exit 0.
    Help(String),
    /// `-version`: print the version and exit 0.
    Version,
}

/// Why the command line was refused. Every message names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The command line does not parse (unknown flag, missing or malformed value).
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("no data directory set")]
    MissingDataDir,
    #[error("arguments after data directory ({data_dir}) are not accepted ([{}])", extra.join(" "))]
    ArgsAfterDataDir {
        data_dir: String,
        extra: Vec<String>,
    },
    /// The flags parse but contradict each other or name an unusable address.
    #[error("{0}")]
    Invalid(String),
    /// A flag raftlite cannot honour yet, and ignoring it would be unsafe.
    #[error("-{flag} is not supported yet: refusing to start rather than {consequence}")]
    Unsupported {
        flag: &'static str,
        consequence: &'static str,
    },
}

impl ConfigError {
    /// rqlited's exit status: 2 for command-line syntax errors (Go's `flag` package), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Flag(_) => 2,
            _ => 1,
        }
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The node's configuration. Each field is the flag of the same name with `-` written `_`.
/// A Go string flag whose "unset" value is empty is an `Option` here; `None` means unset.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The data directory (the positional argument), made absolute.
    pub data_dir: PathBuf,

    /// `None` only when it defaults to the Raft advertised address and that is not known yet
    /// (Raft bind port 0); the binary sets it after binding.
    pub node_id: Option<String>,
    pub http_addr: String,
    /// `None` only when not given and `http_addr` has port 0; the binary sets it after binding.
    pub http_adv_addr: Option<String>,
    pub raft_addr: String,
    /// `None` only when not given and `raft_addr` has port 0; the binary sets it after binding.
    pub raft_adv_addr: Option<String>,

    /// Raft addresses, split on `,` exactly as rqlited does. Empty: no join.
    pub join: Vec<String>,
    pub join_attempts: usize,
    pub join_interval: Duration,
    pub join_as: Option<String>,
    /// 0: do not wait for other nodes.
    pub bootstrap_expect: usize,
    pub bootstrap_expect_timeout: Duration,
    pub cluster_connect_timeout: Duration,
    pub disco_mode: Option<String>,
    pub disco_key: String,
    pub disco_config: Option<String>,

    pub raft_non_voter: bool,
    /// Log entries since the last snapshot that trigger a snapshot.
    pub raft_snap: u64,
    pub raft_snap_int: Duration,
    /// 0 disables.
    pub raft_snap_wal_size: u64,
    pub raft_log_level: String,
    pub raft_heartbeat_timeout: Duration,
    pub raft_election_timeout: Duration,
    pub raft_commit_timeout: Duration,
    pub raft_apply_timeout: Duration,
    /// Zero: the Raft library's default.
    pub raft_leader_lease_timeout: Duration,
    pub raft_remove_shutdown: bool,
    pub raft_cluster_remove_shutdown: bool,
    pub raft_shutdown_stepdown: bool,
    /// `None`: never reap. Set on the command line, it must be greater than zero.
    pub raft_reap_node_timeout: Option<Duration>,
    /// `None`: never reap. Set on the command line, it must be greater than zero.
    pub raft_reap_read_only_node_timeout: Option<Duration>,
    /// Bytes.
    pub raft_log_segment_size: u64,
    /// Log entries kept behind a snapshot.
    pub raft_trailing_logs: u64,
    pub compress_snap_transport: bool,

    pub fk: bool,
    /// `-write-budget-steps` (raftlite only): see `db::request::DEFAULT_WRITE_BUDGET_STEPS`.
    pub write_budget_steps: u64,
    /// `-max-query-result-size` (raftlite only): see `db::settings::DEFAULT_MAX_QUERY_RESULT_BYTES`.
    pub max_query_result_size: u64,
    pub db_max_ro_conns: usize,
    /// `None`: never.
    pub auto_vacuum_int: Option<Duration>,
    /// `None`: never (`-auto-optimize-int 0h`).
    pub auto_optimize_int: Option<Duration>,
    pub extensions_path: Vec<PathBuf>,
    /// An HTTP endpoint or the path of a CDC configuration file.
    pub cdc_config: Option<String>,

    pub write_queue_capacity: usize,
    pub write_queue_batch_size: usize,
    pub write_queue_timeout: Duration,
    pub write_queue_tx: bool,

    pub auth: Option<PathBuf>,
    pub http_allow_origin: Option<String>,
    pub http_cert: Option<PathBuf>,
    pub http_key: Option<PathBuf>,
    pub http_ca_cert: Option<PathBuf>,
    pub http_verify_client: bool,
    pub http_verify_common_name: Option<String>,
    /// Bytes; limit for the JSON endpoints' request bodies.
    pub max_body_size: u64,
    /// Bytes; `None`: limited only by free disk space less `disk_reserve`.
    pub max_load_size: Option<u64>,

    pub node_cert: Option<PathBuf>,
    pub node_key: Option<PathBuf>,
    pub node_ca_cert: Option<PathBuf>,
    pub node_no_verify: bool,
    pub node_verify_client: bool,
    pub node_verify_server_name: Option<String>,
    pub node_verify_common_name: Option<String>,

    pub auto_backup: Option<PathBuf>,
    pub auto_restore: Option<PathBuf>,
    /// `data_dir` unless given; absolute.
    pub backup_tmp_dir: PathBuf,
    /// Bytes.
    pub disk_reserve: u64,
    pub max_backup_copies: usize,
    pub backup_keep: Duration,
    pub backup_keep_size: u64,
    /// Bytes of WAL growth a SQL dump's snapshot may pin; `None`: no limit.
    pub dump_wal_limit: Option<u64>,
    pub dump_stall_timeout: Duration,

    pub otlp_endpoint: Option<String>,
    pub otlp_interval: Duration,
    pub otlp_insecure: bool,
    pub otlp_no_verify: bool,
    pub otlp_ca_cert: Option<PathBuf>,
    pub otlp_cert: Option<PathBuf>,
    pub otlp_key: Option<PathBuf>,

    pub cpu_profile: Option<PathBuf>,
    pub mem_profile: Option<PathBuf>,
    pub trace_profile: Option<PathBuf>,

    /// Flags given on the command line with a value other than their default.
    changed_flags: Vec<&'static str>,
}

impl Config {
    /// Parses `raftlited`'s arguments (without the program name) as rqlited does: flags, then
    /// the data directory, then nothing. A `Run` outcome has passed [`Config::validate`].
    pub fn parse(args: &[String]) -> Result<ParseOutcome, ConfigError> {
        let flags = match flag_set().parse(args)? {
            ParseResult::Help => return Ok(ParseOutcome::Help(Config::usage())),
            ParseResult::Parsed(flags) => flags,
        };
        if flags.bool("version") {
            return Ok(ParseOutcome::Version);
        }
        // raftlite's own: no data directory at all means `./raftlite-data` (rqlited refuses),
        // so `raftlited` alone starts a node; the node says where its data is.
        let default_dir = [DEFAULT_DATA_DIR.to_string()];
        let positional = match flags.positional() {
            [] => &default_dir[..],
            given => given,
        };
        let (data_dir, extra) = positional
            .split_first()
            .ok_or(ConfigError::MissingDataDir)?;
        if !extra.is_empty() {
            return Err(ConfigError::ArgsAfterDataDir {
                data_dir: data_dir.clone(),
                extra: extra.to_vec(),
            });
        }
        // rqlited trims the data directory and then requires it to be non-empty.
        let data_dir = data_dir.trim();
        if data_dir.is_empty() {
            return Err(ConfigError::MissingDataDir);
        }
        let config = Config::from_flags(&flags, data_dir)?;
        config.validate()?;
        Ok(ParseOutcome::Run(Box::new(config)))
    }

    /// The text of `raftlited -h`: a short description, then every flag Go-style.
    pub fn usage() -> String {
        flag_set().usage(USAGE_HEADER)
    }

    fn from_flags(flags: &ParsedFlags, data_dir: &str) -> Result<Config, ConfigError> {
        let data_dir = absolute(data_dir, "data")?;
        let string = |name| flags.non_empty(name).map(str::to_string);
        let path = |name| flags.non_empty(name).map(PathBuf::from);
        let count = |name| non_negative(flags, name);
        let enabled = |name| Some(flags.duration(name)).filter(|d| !d.is_zero());
        let explicit = |name| flags.is_set(name).then(|| flags.duration(name));

        let http_addr = flags.string("http-addr").to_string();
        let raft_addr = flags.string("raft-addr").to_string();
        let http_adv_addr = advertised(flags.non_empty("http-adv-addr"), &http_addr);
        let raft_adv_addr = advertised(flags.non_empty("raft-adv-addr"), &raft_addr);
        let backup_tmp_dir = match flags.non_empty("backup-tmp-dir") {
            Some(dir) => absolute(dir, "backup temporary")?,
            None => data_dir.clone(),
        };

        Ok(Config {
            node_id: string("node-id").or_else(|| raft_adv_addr.clone()),
            http_addr,
            http_adv_addr,
            raft_addr,
            raft_adv_addr,

            join: flags
                .non_empty("join")
                .map(|j| j.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            join_attempts: count("join-attempts")?,
            join_interval: flags.duration("join-interval"),
            join_as: string("join-as"),
            bootstrap_expect: count("bootstrap-expect")?,
            bootstrap_expect_timeout: flags.duration("bootstrap-expect-timeout"),
            cluster_connect_timeout: flags.duration("cluster-connect-timeout"),
            disco_mode: string("disco-mode"),
            disco_key: flags.string("disco-key").to_string(),
            disco_config: string("disco-config"),

            raft_non_voter: flags.bool("raft-non-voter"),
            raft_snap: flags.u64("raft-snap"),
            raft_snap_int: flags.duration("raft-snap-int"),
            raft_snap_wal_size: flags.u64("raft-snap-wal-size"),
            raft_log_level: flags.string("raft-log-level").to_string(),
            raft_heartbeat_timeout: flags.duration("raft-heartbeat-timeout"),
            raft_election_timeout: flags.duration("raft-election-timeout"),
            raft_commit_timeout: flags.duration("raft-commit-timeout"),
            raft_apply_timeout: flags.duration("raft-apply-timeout"),
            raft_leader_lease_timeout: flags.duration("raft-leader-lease-timeout"),
            raft_remove_shutdown: flags.bool("raft-remove-shutdown"),
            raft_cluster_remove_shutdown: flags.bool("raft-cluster-remove-shutdown"),
            raft_shutdown_stepdown: flags.bool("raft-shutdown-stepdown"),
            raft_reap_node_timeout: explicit("raft-reap-node-timeout"),
            raft_reap_read_only_node_timeout: explicit("raft-reap-read-only-node-timeout"),
            raft_log_segment_size: flags.u64("raft-log-segment-size"),
            raft_trailing_logs: flags.u64("raft-trailing-logs"),
            compress_snap_transport: flags.bool("compress-snap-transport"),

            fk: flags.bool("fk"),
            write_budget_steps: flags.u64("write-budget-steps"),
            max_query_result_size: flags.u64("max-query-result-size"),
            db_max_ro_conns: count("db-max-ro-conns")?,
            auto_vacuum_int: enabled("auto-vacuum-int"),
            auto_optimize_int: enabled("auto-optimize-int"),
            extensions_path: flags
                .non_empty("extensions-path")
                .map(|p| p.split(',').map(PathBuf::from).collect())
                .unwrap_or_default(),
            cdc_config: string("cdc-config"),

            write_queue_capacity: count("write-queue-capacity")?,
            write_queue_batch_size: count("write-queue-batch-size")?,
            write_queue_timeout: flags.duration("write-queue-timeout"),
            write_queue_tx: flags.bool("write-queue-tx"),

            auth: path("auth"),
            http_allow_origin: string("http-allow-origin"),
            http_cert: path("http-cert"),
            http_key: path("http-key"),
            http_ca_cert: path("http-ca-cert"),
            http_verify_client: flags.bool("http-verify-client"),
            http_verify_common_name: string("http-verify-common-name"),
            max_body_size: flags.u64("max-body-size"),
            max_load_size: Some(flags.u64("max-load-size")).filter(|n| *n != 0),

            node_cert: path("node-cert"),
            node_key: path("node-key"),
            node_ca_cert: path("node-ca-cert"),
            node_no_verify: flags.bool("node-no-verify"),
            node_verify_client: flags.bool("node-verify-client"),
            node_verify_server_name: string("node-verify-server-name"),
            node_verify_common_name: string("node-verify-common-name"),

            auto_backup: path("auto-backup"),
            auto_restore: path("auto-restore"),
            backup_tmp_dir,
            disk_reserve: flags.u64("disk-reserve"),
            max_backup_copies: flags.usize("max-backup-copies"),
            backup_keep: flags.duration("backup-keep"),
            backup_keep_size: flags.u64("backup-keep-size"),
            dump_wal_limit: Some(flags.u64("dump-wal-limit")).filter(|n| *n != 0),
            dump_stall_timeout: flags.duration("dump-stall-timeout"),

            otlp_endpoint: string("otlp-endpoint"),
            otlp_interval: flags.duration("otlp-interval"),
            otlp_insecure: flags.bool("otlp-insecure"),
            otlp_no_verify: flags.bool("otlp-no-verify"),
            otlp_ca_cert: path("otlp-ca-cert"),
            otlp_cert: path("otlp-cert"),
            otlp_key: path("otlp-key"),

            cpu_profile: path("cpu-profile"),
            mem_profile: path("mem-profile"),
            trace_profile: path("trace-profile"),

            data_dir,
            changed_flags: flags.changed_flags(),
        })
    }

    /// Checks the configuration as rqlited does at startup, in rqlited's order and with its
    /// messages, then raftlite's own limits, then refuses flags that are not supported yet.
    /// Pure: it reads no files and binds nothing, so calling it twice is fine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::MissingDataDir);
        }
        self.validate_tls()?;
        self.validate_addresses()?;
        self.validate_clustering()?;
        self.validate_otlp()?;
        self.validate_limits()?;
        if let Some(flag) = self.refused_flags_in_use().first() {
            let Some(Refused(consequence)) = flag_support(flag) else {
                unreachable!("-{flag} is listed as refused but its table row is not");
            };
            return Err(ConfigError::Unsupported { flag, consequence });
        }
        Ok(())
    }

    /// Fills in what a port-0 bind left unknown, once the binary has bound its sockets:
    /// each missing advertised address becomes the bind host with the real port, and a
    /// missing node ID becomes the Raft advertised address, as rqlited's default. Fields
    /// already set are kept. The binary must also refuse a `-join` address equal to the
    /// resulting Raft address, which `validate` could not check before the bind.
    pub fn resolve_bound_ports(&mut self, http_port: u16, raft_port: u16) {
        if self.http_adv_addr.is_none() {
            self.http_adv_addr = Some(with_port(&self.http_addr, http_port));
        }
        if self.raft_adv_addr.is_none() {
            self.raft_adv_addr = Some(with_port(&self.raft_addr, raft_port));
        }
        if self.node_id.is_none() {
            self.node_id = self.raft_adv_addr.clone();
        }
    }

    /// The port of `-raft-addr` (0 when it has none), as rqlite's `RaftPort`: what a
    /// `-disco-mode dns` lookup's addresses get unless its configuration names a port.
    pub fn raft_port(&self) -> u16 {
        split_host_port(&self.raft_addr)
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(0)
    }

    /// Flags given on the command line (with a non-default value) that raftlite accepts but
    /// does not act on yet; the binary logs a warning for each.
    pub fn accepted_but_ignored(&self) -> Vec<&'static str> {
        self.changed_flags
            .iter()
            .copied()
            .filter(|name| flag_support(name) == Some(Ignored))
            .collect()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        if self.http_cert.is_some() != self.http_key.is_some() {
            return Err(invalid(
                "either both -http-cert and -http-key must be set, or neither",
            ));
        }
        if self.node_cert.is_some() != self.node_key.is_some() {
            return Err(invalid(
                "either both -node-cert and -node-key must be set, or neither",
            ));
        }
        if self.http_verify_common_name.is_some() && !self.http_verify_client {
            return Err(invalid(
                "-http-verify-common-name requires -http-verify-client",
            ));
        }
        // raftlite's own: TLS options that would do nothing without a certificate to serve
        // with, and mutual TLS without a CA to check client certificates against.
        for (set, needs, what) in [
            (
                self.http_verify_client,
                self.http_cert.is_some(),
                "-http-verify-client requires -http-cert and -http-key",
            ),
            (
                self.http_verify_client,
                self.http_ca_cert.is_some(),
                "-http-verify-client requires -http-ca-cert",
            ),
            (
                self.node_ca_cert.is_some(),
                self.node_cert.is_some(),
                "-node-ca-cert requires -node-cert and -node-key",
            ),
            (
                self.node_verify_client,
                self.node_cert.is_some(),
                "-node-verify-client requires -node-cert and -node-key",
            ),
            (
                self.node_verify_client,
                self.node_ca_cert.is_some(),
                "-node-verify-client requires -node-ca-cert",
            ),
            (
                self.node_no_verify,
                self.node_cert.is_some(),
                "-node-no-verify requires -node-cert and -node-key",
            ),
            (
                self.node_verify_server_name.is_some(),
                self.node_cert.is_some(),
                "-node-verify-server-name requires -node-cert and -node-key",
            ),
            (
                self.join_as.is_some(),
                self.auth.is_some(),
                "-join-as requires -auth",
            ),
        ] {
            if set && !needs {
                return Err(invalid(what));
            }
        }
        if self.node_verify_common_name.is_some() && !self.node_verify_client {
            return Err(invalid(
                "-node-verify-common-name requires -node-verify-client",
            ));
        }
        Ok(())
    }

    fn validate_addresses(&self) -> Result<(), ConfigError> {
        // Two port-0 binds get different ports, so only fixed ports can collide.
        if self.raft_addr == self.http_addr && !is_any_port(&self.http_addr) {
            return Err(invalid("HTTP and Raft addresses must differ"));
        }
        let has_scheme = |a: &str| {
            let a = a.to_ascii_lowercase();
            a.starts_with("http://") || a.starts_with("https://")
        };
        if has_scheme(&self.http_addr) || self.http_adv_addr.as_deref().is_some_and(has_scheme) {
            return Err(invalid(
                "HTTP options should not include protocol (http:// or https://)",
            ));
        }
        check_bind(
            &self.http_addr,
            "HTTP bind address not valid",
            "HTTP bind port not valid",
        )?;
        check_advertised(
            self.http_adv_addr.as_deref(),
            &self.http_addr,
            AdvertisedNames {
                kind: "HTTP",
                bind_flag: "http-addr",
                adv_flag: "http-adv-addr",
                bad_address: "HTTP advertised HTTP address not valid",
                bad_port: "HTTP advertised port is not valid",
            },
        )?;
        check_bind(
            &self.raft_addr,
            "raft bind address not valid",
            "raft bind port not valid",
        )?;
        check_advertised(
            self.raft_adv_addr.as_deref(),
            &self.raft_addr,
            AdvertisedNames {
                kind: "Raft",
                bind_flag: "raft-addr",
                adv_flag: "raft-adv-addr",
                bad_address: "raft advertised address not valid",
                bad_port: "raft advertised port is not valid",
            },
        )?;
        if self.raft_adv_addr.is_some() && self.raft_adv_addr == self.http_adv_addr {
            return Err(invalid("advertised HTTP and Raft addresses must differ"));
        }
        Ok(())
    }

    fn validate_clustering(&self) -> Result<(), ConfigError> {
        if self.bootstrap_expect > 0 && self.raft_non_voter {
            return Err(invalid("bootstrapping only applicable to voting nodes"));
        }
        for addr in &self.join {
            if split_host_port(addr).is_none() {
                return Err(invalid(format!("{addr} is an invalid join address")));
            }
            if self.bootstrap_expect == 0 {
                if *addr == self.raft_addr || Some(addr) == self.raft_adv_addr.as_ref() {
                    return Err(invalid("node cannot join with itself unless bootstrapping"));
                }
                if self.auto_restore.is_some() {
                    return Err(invalid(
                        "auto-restoring cannot be used when joining a cluster",
                    ));
                }
            }
        }
        if !self.join.is_empty() && self.disco_mode.is_some() {
            return Err(invalid(
                "disco mode cannot be used when also explicitly joining a cluster",
            ));
        }
        if self.cdc_config.is_some() && self.raft_non_voter {
            return Err(invalid("CDC cannot be enabled on non-voting nodes"));
        }
        match self.disco_mode.as_deref() {
            Some(mode @ ("etcd-kv" | "consul-kv")) if self.bootstrap_expect > 0 => {
                return Err(invalid(format!(
                    "bootstrapping not applicable when using {mode}"
                )));
            }
            Some(mode @ ("dns" | "dns-srv"))
                if self.bootstrap_expect == 0 && !self.raft_non_voter =>
            {
                return Err(invalid(format!(
                    "bootstrap-expect value required when using {mode} with a voting node"
                )));
            }
            Some("consul-kv") => {
                return Err(invalid(
                    "-disco-mode consul-kv is not supported yet (dns, dns-srv and etcd-kv are): refusing to start rather than bootstrapping a separate single-node cluster",
                ));
            }
            None | Some("dns" | "dns-srv" | "etcd-kv") => {}
            Some(_) => {
                return Err(invalid(
                    "disco mode must be one of consul-kv, etcd-kv, dns, or dns-srv",
                ))
            }
        }
        for (flag, timeout) in [
            ("raft-reap-node-timeout", self.raft_reap_node_timeout),
            (
                "raft-reap-read-only-node-timeout",
                self.raft_reap_read_only_node_timeout,
            ),
        ] {
            if timeout.is_some_and(|t| t.is_zero()) {
                return Err(invalid(format!("-{flag} must be greater than 0")));
            }
        }
        Ok(())
    }

    fn validate_otlp(&self) -> Result<(), ConfigError> {
        if self.otlp_cert.is_some() != self.otlp_key.is_some() {
            return Err(invalid(
                "either both -otlp-cert and -otlp-key must be set, or neither",
            ));
        }
        let Some(endpoint) = &self.otlp_endpoint else {
            if self.otlp_insecure
                || self.otlp_no_verify
                || self.otlp_ca_cert.is_some()
                || self.otlp_cert.is_some()
            {
                return Err(invalid("OTLP options require -otlp-endpoint"));
            }
            return Ok(());
        };
        if endpoint.contains("://") {
            return Err(invalid("-otlp-endpoint must not include a protocol scheme"));
        }
        if split_host_port(endpoint).is_none() {
            return Err(invalid("-otlp-endpoint is not a valid address"));
        }
        if self.otlp_interval.is_zero() {
            return Err(invalid("-otlp-interval must be greater than zero"));
        }
        if self.otlp_insecure
            && (self.otlp_no_verify || self.otlp_ca_cert.is_some() || self.otlp_cert.is_some())
        {
            return Err(invalid(
                "-otlp-insecure cannot be used with other OTLP TLS options",
            ));
        }
        Ok(())
    }

    /// raftlite's own flags.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.raft_log_segment_size == 0 {
            return Err(invalid("-raft-log-segment-size must be greater than 0"));
        }
        if self.max_body_size == 0 {
            return Err(invalid("-max-body-size must be greater than 0"));
        }
        if self.max_backup_copies == 0 {
            return Err(invalid(
                "-max-backup-copies must be at least 1, or no backup could ever run",
            ));
        }
        Ok(())
    }

    /// Refused flags (see [`Support::Refused`]) that this configuration turns on, in table
    /// order. A test keeps this list and the table in step.
    fn refused_flags_in_use(&self) -> Vec<&'static str> {
        // None is refused today (`-cdc-config` was, until change data capture was built).
        let in_use: [(&'static str, bool); 0] = [];
        in_use
            .into_iter()
            .filter_map(|(flag, on)| on.then_some(flag))
            .collect()
    }
}

/// The advertised address: the explicit one, else the bind address unless its port is 0
/// (then unknown until bound).
fn advertised(explicit: Option<&str>, bind: &str) -> Option<String> {
    match explicit {
        Some(addr) => Some(addr.to_string()),
        None if is_any_port(bind) => None,
        None => Some(bind.to_string()),
    }
}

/// `addr` with its port replaced, like Go's `net.JoinHostPort` (brackets for IPv6 hosts).
fn with_port(addr: &str, port: u16) -> String {
    let host = split_host_port(addr).map_or(addr, |(host, _)| host);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn is_any_port(addr: &str) -> bool {
    split_host_port(addr).is_some_and(|(_, port)| port.parse::<u16>() == Ok(0))
}

fn absolute(path: &str, what: &str) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map_err(|e| invalid(format!("failed to determine absolute {what} path: {e}")))
}

/// A Go `int` flag as a count; negative values are refused rather than misbehaving later.
fn non_negative(flags: &ParsedFlags, name: &str) -> Result<usize, ConfigError> {
    let value = flags.i64(name);
    usize::try_from(value)
        .map_err(|_| invalid(format!("-{name} must not be negative (got {value})")))
}

fn check_bind(addr: &str, bad_address: &str, bad_port: &str) -> Result<(), ConfigError> {
    let (_, port) = split_host_port(addr).ok_or_else(|| invalid(bad_address))?;
    port.parse::<u16>().map_err(|_| invalid(bad_port))?;
    Ok(())
}

struct AdvertisedNames {
    kind: &'static str,
    bind_flag: &'static str,
    adv_flag: &'static str,
    bad_address: &'static str,
    bad_port: &'static str,
}

/// Checks the advertised address, or the bind address it will be derived from when it is not
/// known yet: it must parse, must not be an unspecified IP, and needs a real port.
fn check_advertised(
    adv: Option<&str>,
    bind: &str,
    names: AdvertisedNames,
) -> Result<(), ConfigError> {
    let (host, port) =
        split_host_port(adv.unwrap_or(bind)).ok_or_else(|| invalid(names.bad_address))?;
    if is_unspecified_ip(host) {
        return Err(invalid(format!(
            "advertised {} address is not routable ({host}), specify it via -{} or -{}",
            names.kind, names.bind_flag, names.adv_flag
        )));
    }
    let port: u16 = port.parse().map_err(|_| invalid(names.bad_port))?;
    if port == 0 && adv.is_some() {
        return Err(invalid(format!(
            "-{} needs a real port, not 0: it is the address others connect to",
            names.adv_flag
        )));
    }
    Ok(())
}

fn is_unspecified_ip(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_unspecified(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_unspecified() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified())
        }
        Err(_) => false,
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; the port may be empty and is not
/// checked. `None` where Go returns an error.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    let colon = addr.rfind(':')?;
    let (host, open, close) = if addr.starts_with('[') {
        let end = addr.find(']')?;
        if end + 1 != colon {
            return None; // "[::1]", "[::1]x:1" or "[::1]:1:2"
        }
        (&addr[1..end], 1, end + 1)
    } else {
        let host = &addr[..colon];
        if host.contains(':') {
            return None; // too many colons
        }
        (host, 0, 0)
    };
    if addr[open..].contains('[') || addr[close..].contains(']') {
        return None;
    }
    Some((host, &addr[colon + 1..]))
}

/// The flags rqlited does not have (docs/compatibility.md lists each, as the tests check).
pub const RAFTLITE_ONLY_FLAGS: &[&str] = &[
    "raft-log-segment-size",
    "raft-trailing-logs",
    "write-budget-steps",
    "max-query-result-size",
    "max-body-size",
    "max-load-size",
    "backup-tmp-dir",
    "disk-reserve",
    "max-backup-copies",
    "backup-keep",
    "backup-keep-size",
    "dump-wal-limit",
    "dump-stall-timeout",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn run(line: &str) -> Config {
        match Config::parse(&args(line)) {
            Ok(ParseOutcome::Run(config)) => *config,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match Config::parse(&args(line)) {
            Err(e) => e.to_string(),
            Ok(outcome) => panic!("{line:?} should fail, got {outcome:?}"),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// What rqlite's Python E2E harness (`system_test/e2e/helpers.py`) passes to rqlited,
    /// with port 0 where the harness picks free ports itself.
    #[test]
    fn e2e_harness_command_line() {
        let c = run(
            "-node-id 1 -http-addr localhost:0 -bootstrap-expect 1 -raft-addr localhost:0 \
             -raft-snap 100 -raft-snap-int 1s -raft-cluster-remove-shutdown=false \
             -raft-non-voter=false -raft-log-level INFO /tmp/x",
        );
        assert_eq!(c.node_id.as_deref(), Some("1"));
        assert_eq!(c.http_addr, "localhost:0");
        assert_eq!(c.raft_addr, "localhost:0");
        assert_eq!(c.http_adv_addr, None, "known only after bind");
        assert_eq!(c.raft_adv_addr, None, "known only after bind");
        assert_eq!(c.bootstrap_expect, 1);
        assert_eq!(c.raft_snap, 100);
        assert_eq!(c.raft_snap_int, SECOND);
        assert!(!c.raft_cluster_remove_shutdown);
        assert!(!c.raft_non_voter);
        assert_eq!(c.raft_log_level, "INFO");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        // The interval is when the WAL's size is measured (-raft-snap-wal-size).
        assert!(c.accepted_but_ignored().is_empty());
    }

    #[test]
    fn e2e_harness_joining_node_without_bootstrap_expect() {
        let c = run(
            "-node-id 2 -http-addr localhost:4003 -raft-addr localhost:4004 \
             -raft-snap 8192 -raft-snap-int 1s -raft-non-voter=false \
             -join localhost:4002 -join-interval 1s -raft-log-level INFO /tmp/y",
        );
        assert_eq!(c.join, ["localhost:4002"]);
        assert_eq!(c.join_interval, SECOND);
        assert_eq!(c.join_attempts, 5);
        assert_eq!(c.bootstrap_expect, 0);
        assert_eq!(c.http_adv_addr.as_deref(), Some("localhost:4003"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("localhost:4004"));
    }

    #[test]
    fn defaults_are_rqliteds_except_loopback_binds() {
        let c = run("/data");
        assert_eq!(c.http_addr, "127.0.0.1:4001");
        assert_eq!(c.raft_addr, "127.0.0.1:4002");
        assert_eq!(c.http_adv_addr.as_deref(), Some("127.0.0.1:4001"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("127.0.0.1:4002"));
        assert_eq!(c.node_id.as_deref(), Some("127.0.0.1:4002"));
        assert!(c.join.is_empty());
        assert_eq!(c.join_attempts, 5);
        assert_eq!(c.join_interval, 3 * SECOND);
        assert_eq!(c.bootstrap_expect_timeout, 120 * SECOND);
        assert_eq!(c.cluster_connect_timeout, 30 * SECOND);
        assert_eq!(c.disco_key, "rqlite");
        assert_eq!(c.raft_snap, 8192);
        assert_eq!(c.raft_snap_int, 10 * SECOND);
        assert_eq!(c.raft_snap_wal_size, 4 * 1024 * 1024);
        assert_eq!(c.raft_log_level, "WARN");
        assert_eq!(c.raft_heartbeat_timeout, SECOND);
        assert_eq!(c.raft_election_timeout, SECOND);
        assert_eq!(c.raft_commit_timeout, Duration::from_millis(50));
        assert_eq!(c.raft_apply_timeout, 10 * SECOND);
        assert_eq!(c.raft_leader_lease_timeout, Duration::ZERO);
        assert!(!c.raft_remove_shutdown && !c.raft_cluster_remove_shutdown);
        assert!(c.raft_shutdown_stepdown);
        assert_eq!(c.raft_reap_node_timeout, None);
        assert_eq!(c.raft_reap_read_only_node_timeout, None);
        assert!(!c.fk && !c.raft_non_voter);
        assert_eq!(c.db_max_ro_conns, 256);
        assert_eq!(c.auto_vacuum_int, None);
        assert_eq!(c.auto_optimize_int, Some(24 * 3600 * SECOND));
        assert_eq!(c.write_queue_capacity, 1024);
        assert_eq!(c.write_queue_batch_size, 128);
        assert_eq!(c.write_queue_timeout, Duration::from_millis(50));
        assert!(!c.write_queue_tx);
        assert_eq!(c.otlp_interval, 30 * SECOND);
        assert_eq!(c.auth, None);
        assert_eq!(c.auto_backup, None);
        // raftlite's own.
        assert_eq!(c.raft_log_segment_size, 64 << 20);
        assert_eq!(c.backup_tmp_dir, c.data_dir);
        assert_eq!(c.disk_reserve, 256 << 20);
        assert_eq!(c.max_body_size, 64 << 20);
        assert_eq!(c.max_load_size, None);
        assert_eq!(c.max_backup_copies, 16);
        assert_eq!(
            c.write_budget_steps,
            crate::db::request::DEFAULT_WRITE_BUDGET_STEPS
        );
        assert_eq!(
            c.max_query_result_size,
            crate::db::settings::DEFAULT_MAX_QUERY_RESULT_BYTES
        );
        assert_eq!(c.dump_wal_limit, Some(1 << 30));
        assert_eq!(c.dump_stall_timeout, Duration::from_secs(120));
        assert!(c.accepted_but_ignored().is_empty());
    }

    #[test]
    fn raftlites_own_flags() {
        let c = run(
            "-raft-log-segment-size 1048576 -backup-tmp-dir /scratch -disk-reserve 0 \
             -max-body-size 0x100000 -max-load-size 1_000_000 -max-backup-copies 2 \
             -dump-wal-limit 0 -dump-stall-timeout 30s /data",
        );
        assert_eq!(c.raft_log_segment_size, 1 << 20);
        assert_eq!(c.backup_tmp_dir, PathBuf::from("/scratch"));
        assert_eq!(c.disk_reserve, 0);
        assert_eq!(c.max_body_size, 1 << 20);
        assert_eq!(c.max_load_size, Some(1_000_000));
        assert_eq!(c.max_backup_copies, 2);
        assert_eq!(run("-write-budget-steps 1_000 /d").write_budget_steps, 1000);
        assert_eq!(c.dump_wal_limit, None);
        assert_eq!(c.dump_stall_timeout, Duration::from_secs(30));
        assert_eq!(
            error("-max-backup-copies 0 /d"),
            "-max-backup-copies must be at least 1, or no backup could ever run"
        );
        assert_eq!(
            error("-raft-log-segment-size 0 /d"),
            "-raft-log-segment-size must be greater than 0"
        );
        assert_eq!(
            error("-max-body-size 0 /d"),
            "-max-body-size must be greater than 0"
        );
    }

    #[test]
    fn data_dir_is_made_absolute() {
        let c = run("-backup-tmp-dir tmp rel/dir");
        assert!(c.data_dir.is_absolute());
        assert!(c.data_dir.ends_with("rel/dir"));
        assert!(c.backup_tmp_dir.is_absolute() && c.backup_tmp_dir.ends_with("tmp"));
    }

    #[test]
    fn help_and_version() {
        for line in ["-h", "-help", "--help", "-fk -h"] {
            match Config::parse(&args(line)) {
                Ok(ParseOutcome::Help(text)) => {
                    assert!(text.contains("Usage: raftlited [flags] [data directory]"));
                    assert!(text.contains("  -raft-snap uint\n    \t"));
                    assert!(text.contains("(default 8192)"));
                    assert!(text.contains("(default \"127.0.0.1:4001\")"));
                    assert!(text.contains("(default 2m0s)"), "bootstrap-expect-timeout");
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        // rqlited checks -version before looking for the data directory.
        for line in ["-version", "--version=true", "-version /d extra"] {
            assert_eq!(
                Config::parse(&args(line)),
                Ok(ParseOutcome::Version),
                "{line}"
            );
        }
        assert!(matches!(
            Config::parse(&args("-version=false /d")),
            Ok(ParseOutcome::Run(_))
        ));
    }

    #[test]
    fn usage_lists_every_flag_once() {
        let usage = Config::usage();
        for f in FLAGS {
            let entry = format!("\n  -{} ", f.spec.name);
            let entry_bool = format!("\n  -{}\n", f.spec.name);
            let count = usage.matches(&entry).count() + usage.matches(&entry_bool).count();
            assert_eq!(count, 1, "-{}", f.spec.name);
        }
    }

    #[test]
    fn data_directory_rules() {
        // No data directory at all: ./raftlite-data (raftlite's own default).
        for line in ["", "-fk", "-node-id 1", "-fk --"] {
            let c = run(line);
            assert!(c.data_dir.is_absolute(), "{line:?}");
            assert!(c.data_dir.ends_with(DEFAULT_DATA_DIR), "{line:?}");
        }
        assert_eq!(
            Config::parse(&["  ".to_string()]),
            Err(ConfigError::MissingDataDir)
        );
        assert_eq!(
            error("-fk /data extra -node-id 2"),
            "arguments after data directory (/data) are not accepted ([extra -node-id 2])"
        );
        // Flags after the data directory are not parsed, so they are extra arguments too.
        assert_eq!(
            error("/data -fk"),
            "arguments after data directory (/data) are not accepted ([-fk])"
        );
        // "--" lets a data directory start with a dash.
        assert_eq!(run("-- -data").data_dir.file_name().unwrap(), "-data");
    }

    #[test]
    fn flag_errors_keep_go_messages_and_exit_code_2() {
        let cases = [
            ("-x /d", "flag provided but not defined: -x"),
            ("-on-disk /d", "flag provided but not defined: -on-disk"),
            ("-node-id", "flag needs an argument: -node-id"),
            (
                "-fk=maybe /d",
                r#"invalid boolean value "maybe" for -fk: parse error"#,
            ),
            (
                "-raft-snap abc /d",
                r#"invalid value "abc" for flag -raft-snap: parse error"#,
            ),
            (
                "-raft-snap -1 /d",
                r#"invalid value "-1" for flag -raft-snap: parse error"#,
            ),
            (
                "-raft-snap-int 10 /d",
                r#"invalid value "10" for flag -raft-snap-int: parse error"#,
            ),
            (
                "-join-interval 1d /d",
                r#"invalid value "1d" for flag -join-interval: parse error"#,
            ),
        ];
        for (line, want) in cases {
            let err = Config::parse(&args(line)).unwrap_err();
            assert_eq!(err.to_string(), want, "{line}");
            assert!(matches!(err, ConfigError::Flag(_)));
            assert_eq!(err.exit_code(), 2);
        }
        assert_eq!(ConfigError::MissingDataDir.exit_code(), 1);
    }

    #[test]
    fn bool_flags_accept_go_forms() {
        let c = run("-fk -raft-non-voter=true -raft-shutdown-stepdown=F --write-queue-tx=1 /d");
        assert!(c.fk && c.raft_non_voter && c.write_queue_tx);
        assert!(!c.raft_shutdown_stepdown);
        // A bool does not take the next argument: "false" becomes the data directory.
        let c = run("-fk false");
        assert!(c.fk);
        assert!(c.data_dir.ends_with("false"));
    }

    #[test]
    fn negative_counts_are_refused() {
        assert_eq!(
            error("-join-attempts -1 /d"),
            "-join-attempts must not be negative (got -1)"
        );
        assert_eq!(
            error("-bootstrap-expect=-3 /d"),
            "-bootstrap-expect must not be negative (got -3)"
        );
    }

    #[test]
    fn http_address_must_not_have_a_scheme() {
        let want = "HTTP options should not include protocol (http:// or https://)";
        assert_eq!(error("-http-addr http://localhost:4001 /d"), want);
        assert_eq!(error("-http-adv-addr HTTPS://example.com:443 /d"), want);
        // Only the scheme is refused, not host names that start with "http".
        assert_eq!(run("-http-addr httpbin:4001 /d").http_addr, "httpbin:4001");
    }

    #[test]
    fn address_syntax() {
        assert_eq!(
            error("-http-addr localhost /d"),
            "HTTP bind address not valid"
        );
        assert_eq!(
            error("-http-addr localhost:http /d"),
            "HTTP bind port not valid"
        );
        assert_eq!(
            error("-http-adv-addr nohost /d"),
            "HTTP advertised HTTP address not valid"
        );
        assert_eq!(
            error("-http-adv-addr h:99999 /d"),
            "HTTP advertised port is not valid"
        );
        assert_eq!(
            error("-raft-addr localhost /d"),
            "raft bind address not valid"
        );
        assert_eq!(
            error("-raft-addr localhost:abc /d"),
            "raft bind port not valid"
        );
        assert_eq!(
            error("-raft-adv-addr a:b:c /d"),
            "raft advertised address not valid"
        );
        assert_eq!(
            error("-raft-adv-addr h: /d"),
            "raft advertised port is not valid"
        );
        let c = run("-http-addr [::1]:4001 -raft-addr [::1]:4002 /d");
        assert_eq!(c.raft_adv_addr.as_deref(), Some("[::1]:4002"));
    }

    #[test]
    fn advertised_addresses_default_to_bind_addresses() {
        let c = run("-http-addr 10.0.0.1:4001 -raft-addr 10.0.0.1:4002 /d");
        assert_eq!(c.http_adv_addr.as_deref(), Some("10.0.0.1:4001"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("10.0.0.1:4002"));
        let c = run("-http-addr 0.0.0.0:4001 -http-adv-addr a:4001 \
             -raft-addr 0.0.0.0:4002 -raft-adv-addr a:4002 /d");
        assert_eq!(c.http_adv_addr.as_deref(), Some("a:4001"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("a:4002"));
        assert_eq!(c.node_id.as_deref(), Some("a:4002"));
    }

    #[test]
    fn unspecified_ip_cannot_be_advertised() {
        assert_eq!(
            error("-http-addr 0.0.0.0:4001 /d"),
            "advertised HTTP address is not routable (0.0.0.0), specify it via -http-addr or -http-adv-addr"
        );
        assert_eq!(
            error("-raft-addr [::]:4002 /d"),
            "advertised Raft address is not routable (::), specify it via -raft-addr or -raft-adv-addr"
        );
        assert_eq!(
            error("-raft-adv-addr [::ffff:0.0.0.0]:4002 /d"),
            "advertised Raft address is not routable (::ffff:0.0.0.0), specify it via -raft-addr or -raft-adv-addr"
        );
        // Port 0 does not make an unspecified bind address advertisable.
        assert!(error("-http-addr 0.0.0.0:0 /d").contains("not routable (0.0.0.0)"));
    }

    #[test]
    fn port_zero_binds_leave_advertised_addresses_to_the_binary() {
        let c = run("-http-addr 127.0.0.1:0 -raft-addr 127.0.0.1:0 /d");
        assert_eq!(
            (c.http_adv_addr, c.raft_adv_addr, c.node_id),
            (None, None, None)
        );
        // An explicit advertised address is kept, and with it the default node ID.
        let c = run("-http-addr 127.0.0.1:0 -raft-addr 127.0.0.1:0 -raft-adv-addr node1:4002 /d");
        assert_eq!(c.raft_adv_addr.as_deref(), Some("node1:4002"));
        assert_eq!(c.node_id.as_deref(), Some("node1:4002"));
        assert_eq!(c.http_adv_addr, None);
        assert_eq!(
            error("-raft-adv-addr node1:0 /d"),
            "-raft-adv-addr needs a real port, not 0: it is the address others connect to"
        );
    }

    #[test]
    fn resolve_bound_ports_fills_only_what_was_unknown() {
        let mut c = run("-http-addr localhost:0 -raft-addr [::1]:0 /d");
        c.resolve_bound_ports(40001, 40002);
        assert_eq!(c.http_adv_addr.as_deref(), Some("localhost:40001"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("[::1]:40002"));
        assert_eq!(c.node_id.as_deref(), Some("[::1]:40002"));
        assert_eq!(c.validate(), Ok(()));

        let mut c = run("-node-id n1 -http-addr localhost:0 -raft-addr localhost:0 \
             -raft-adv-addr node1:4002 /d");
        c.resolve_bound_ports(40001, 40002);
        assert_eq!(c.http_adv_addr.as_deref(), Some("localhost:40001"));
        assert_eq!(c.raft_adv_addr.as_deref(), Some("node1:4002"));
        assert_eq!(c.node_id.as_deref(), Some("n1"));
    }

    #[test]
    fn http_and_raft_addresses_must_differ() {
        assert_eq!(
            error("-http-addr h:5000 -raft-addr h:5000 /d"),
            "HTTP and Raft addresses must differ"
        );
        assert_eq!(
            error("-http-adv-addr a:1 -raft-adv-addr a:1 /d"),
            "advertised HTTP and Raft addresses must differ"
        );
        assert_eq!(
            error("-http-addr 127.0.0.1:0 -raft-addr 127.0.0.1:0 -http-adv-addr a:1 -raft-adv-addr a:1 /d"),
            "advertised HTTP and Raft addresses must differ"
        );
    }

    #[test]
    fn tls_pairs_and_common_names() {
        assert_eq!(
            error("-http-cert c.pem /d"),
            "either both -http-cert and -http-key must be set, or neither"
        );
        assert_eq!(
            error("-node-key k.pem /d"),
            "either both -node-cert and -node-key must be set, or neither"
        );
        assert_eq!(
            error("-http-verify-common-name x /d"),
            "-http-verify-common-name requires -http-verify-client"
        );
        assert_eq!(
            error("-node-verify-common-name x /d"),
            "-node-verify-common-name requires -node-verify-client"
        );
        // Common names are checked (tests/auth.rs): accepted with mutual TLS.
        let c = run("-http-cert c.pem -http-key k.pem -http-ca-cert ca.pem -http-verify-client -http-verify-common-name x /d");
        assert_eq!(c.http_verify_common_name.as_deref(), Some("x"));
        // Complete sets are accepted (the files are read when the node starts).
        let c = run(
            "-http-cert c.pem -http-key k.pem -http-ca-cert ca.pem -http-verify-client \
            -node-cert n.pem -node-key nk.pem -node-ca-cert ca.pem -node-verify-client \
            -node-verify-server-name db.internal -auth a.json -join-as u /d",
        );
        assert!(c.accepted_but_ignored().is_empty());
        // raftlite's own: TLS options that need a certificate, or a CA, to mean anything.
        for (line, want) in [
            (
                "-http-cert c -http-key k -http-verify-client /d",
                "-http-verify-client requires -http-ca-cert",
            ),
            (
                "-node-ca-cert ca.pem /d",
                "-node-ca-cert requires -node-cert and -node-key",
            ),
            (
                "-node-cert c -node-key k -node-verify-client /d",
                "-node-verify-client requires -node-ca-cert",
            ),
            (
                "-node-no-verify /d",
                "-node-no-verify requires -node-cert and -node-key",
            ),
            ("-join-as u /d", "-join-as requires -auth"),
        ] {
            assert_eq!(error(line), want, "{line}");
        }
    }

    #[test]
    fn reap_timeouts_must_be_positive_when_set() {
        assert_eq!(
            error("-raft-reap-node-timeout 0h /d"),
            "-raft-reap-node-timeout must be greater than 0"
        );
        assert_eq!(
            error("-raft-reap-read-only-node-timeout=0 /d"),
            "-raft-reap-read-only-node-timeout must be greater than 0"
        );
        let c = run("-raft-reap-node-timeout 1h -raft-reap-read-only-node-timeout 90s /d");
        assert_eq!(c.raft_reap_node_timeout, Some(3600 * SECOND));
        assert_eq!(c.raft_reap_read_only_node_timeout, Some(90 * SECOND));
    }

    #[test]
    fn bootstrap_expect_needs_a_voter() {
        assert_eq!(
            error("-bootstrap-expect 3 -raft-non-voter /d"),
            "bootstrapping only applicable to voting nodes"
        );
    }

    #[test]
    fn join_rules() {
        let c = run("-join a:4002,b:4002,c:4002 /d");
        assert_eq!(c.join, ["a:4002", "b:4002", "c:4002"]);
        assert_eq!(
            error("-join a:1,nocolon /d"),
            "nocolon is an invalid join address"
        );
        assert_eq!(error("-join a:1, /d"), " is an invalid join address");
        // Only host:port syntax is checked; the E2E readiness test relies on this.
        assert_eq!(run("-join http://nonsense /d").join, ["http://nonsense"]);
        assert_eq!(
            error("-join 127.0.0.1:4002 /d"),
            "node cannot join with itself unless bootstrapping"
        );
        assert_eq!(
            error("-raft-adv-addr me:4002 -join me:4002 /d"),
            "node cannot join with itself unless bootstrapping"
        );
        let c = run("-bootstrap-expect 3 -join 127.0.0.1:4002,b:4002,c:4002 /d");
        assert_eq!(c.bootstrap_expect, 3);
        assert_eq!(
            error("-join a:4002 -auto-restore r.json /d"),
            "auto-restoring cannot be used when joining a cluster"
        );
        assert_eq!(
            error("-join a:4002 -disco-mode dns /d"),
            "disco mode cannot be used when also explicitly joining a cluster"
        );
    }

    #[test]
    fn disco_and_cdc_rules() {
        assert_eq!(
            error("-disco-mode zookeeper /d"),
            "disco mode must be one of consul-kv, etcd-kv, dns, or dns-srv"
        );
        assert_eq!(
            error("-disco-mode etcd-kv -bootstrap-expect 3 /d"),
            "bootstrapping not applicable when using etcd-kv"
        );
        assert_eq!(
            error("-disco-mode dns-srv /d"),
            "bootstrap-expect value required when using dns-srv with a voting node"
        );
        assert_eq!(
            error("-disco-mode consul-kv /d"),
            "-disco-mode consul-kv is not supported yet (dns, dns-srv and etcd-kv are): refusing to start rather than bootstrapping a separate single-node cluster"
        );
        assert_eq!(
            run("-disco-mode etcd-kv /d").disco_mode.as_deref(),
            Some("etcd-kv")
        );
        assert_eq!(
            run("-disco-mode dns -bootstrap-expect 3 /d")
                .disco_mode
                .as_deref(),
            Some("dns")
        );
        assert_eq!(
            run("-disco-mode dns-srv -raft-non-voter /d")
                .disco_mode
                .as_deref(),
            Some("dns-srv")
        );
        assert_eq!(
            error("-cdc-config http://sink -raft-non-voter /d"),
            "CDC cannot be enabled on non-voting nodes"
        );
    }

    #[test]
    fn otlp_rules() {
        assert_eq!(
            error("-otlp-insecure /d"),
            "OTLP options require -otlp-endpoint"
        );
        assert_eq!(
            error("-otlp-cert c /d"),
            "either both -otlp-cert and -otlp-key must be set, or neither"
        );
        assert_eq!(
            error("-otlp-endpoint http://c:4317 /d"),
            "-otlp-endpoint must not include a protocol scheme"
        );
        assert_eq!(
            error("-otlp-endpoint c /d"),
            "-otlp-endpoint is not a valid address"
        );
        assert_eq!(
            error("-otlp-endpoint c:4317 -otlp-interval 0s /d"),
            "-otlp-interval must be greater than zero"
        );
        assert_eq!(
            error("-otlp-endpoint c:4317 -otlp-insecure -otlp-no-verify /d"),
            "-otlp-insecure cannot be used with other OTLP TLS options"
        );
        let c = run("-otlp-endpoint c:4317 -otlp-interval 1m /d");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("c:4317"));
        assert_eq!(c.accepted_but_ignored(), ["otlp-endpoint", "otlp-interval"]);
    }

    #[test]
    fn auto_backup_and_auto_restore_paths_are_taken() {
        // The files are read at start-up (`auto_backup::config`); here only their paths.
        assert_eq!(
            run("-auto-backup backup.json /d").auto_backup,
            Some(PathBuf::from("backup.json"))
        );
        assert_eq!(
            run("-auto-restore restore.json /d").auto_restore,
            Some(PathBuf::from("restore.json"))
        );
        // Read at start-up (`cdc::CdcConfig::from_flag`): the file need not exist yet here.
        assert_eq!(
            run("-cdc-config cdc.json /d").cdc_config.as_deref(),
            Some("cdc.json")
        );
        // Empty means "not enabled", as in rqlited.
        assert_eq!(run("-auto-backup= /d").auto_backup, None);
    }

    /// `validate` decides refusals from field values; this keeps its list and the table's
    /// `Refused` rows in step.
    #[test]
    fn refused_flags_match_the_table() {
        let c = run("/d");
        let mut in_use = c.refused_flags_in_use();
        in_use.sort_unstable();
        let mut refused: Vec<_> = FLAGS
            .iter()
            .filter(|f| matches!(f.support, Refused(_)))
            .map(|f| f.spec.name)
            .collect();
        refused.sort_unstable();
        assert_eq!(in_use, refused);
    }

    #[test]
    fn accepted_but_ignored_lists_changed_ignored_flags_only() {
        let c = run("-raft-commit-timeout 100ms -compress-snap-transport -fk \
             -raft-reap-node-timeout 1h -otlp-interval 30s -cluster-connect-timeout=30s \
             -extensions-path a,b /d");
        assert_eq!(
            c.accepted_but_ignored(),
            ["raft-commit-timeout", "compress-snap-transport"]
        );
        assert_eq!(c.extensions_path, [PathBuf::from("a"), PathBuf::from("b")]);
    }

    /// docs/compatibility.md, "Every rqlited flag": one row per rqlited flag, saying what
    /// the binary does with it.
    #[test]
    fn the_rqlited_flag_table_in_the_docs_says_what_each_flag_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/compatibility.md")).unwrap();
        let section = doc
            .split("### Every rqlited flag")
            .nth(1)
            .expect("the section")
            .split("\n## ")
            .next()
            .unwrap();
        for name in RQLITED_FLAGS {
            let start = format!("| `-{name}` |");
            let rows: Vec<&str> = section.lines().filter(|l| l.starts_with(&start)).collect();
            assert_eq!(rows.len(), 1, "-{name}: {rows:?}");
            let says = rows[0]
                .trim_end_matches('|')
                .rsplit(" | ")
                .next()
                .unwrap()
                .trim();
            let want = match flag_support(name).unwrap() {
                Honoured => "Honoured",
                Ignored => "Accepted, no effect",
                Refused(_) => "Refused",
            };
            assert!(
                says.starts_with(want),
                "-{name}: the docs say {says:?}, the binary {want}"
            );
        }
    }

    #[test]
    fn raftlite_only_flags_are_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for doc in ["docs/compatibility.md", "README.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for name in RAFTLITE_ONLY_FLAGS {
                assert!(
                    text.contains(&format!("`-{name}`")),
                    "{doc} does not describe -{name}"
                );
            }
        }
    }

    /// rqlited's flags at rqlite df4edc42 (cmd/rqlited/flags.toml).
    const RQLITED_FLAGS: &[&str] = &[
        "version",
        "extensions-path",
        "cdc-config",
        "otlp-endpoint",
        "otlp-interval",
        "otlp-insecure",
        "otlp-no-verify",
        "otlp-ca-cert",
        "otlp-cert",
        "otlp-key",
        "http-addr",
        "http-adv-addr",
        "http-allow-origin",
        "auth",
        "auto-backup",
        "auto-restore",
        "http-ca-cert",
        "http-cert",
        "http-key",
        "http-verify-client",
        "http-verify-common-name",
        "node-ca-cert",
        "node-cert",
        "node-key",
        "node-no-verify",
        "node-verify-client",
        "node-verify-server-name",
        "node-verify-common-name",
        "node-id",
        "compress-snap-transport",
        "raft-addr",
        "raft-adv-addr",
        "join",
        "join-attempts",
        "join-interval",
        "join-as",
        "bootstrap-expect",
        "bootstrap-expect-timeout",
        "disco-mode",
        "disco-key",
        "disco-config",
        "fk",
        "db-max-ro-conns",
        "auto-vacuum-int",
        "auto-optimize-int",
        "raft-log-level",
        "raft-non-voter",
        "raft-snap",
        "raft-snap-wal-size",
        "raft-snap-int",
        "raft-leader-lease-timeout",
        "raft-heartbeat-timeout",
        "raft-commit-timeout",
        "raft-election-timeout",
        "raft-apply-timeout",
        "raft-remove-shutdown",
        "raft-cluster-remove-shutdown",
        "raft-shutdown-stepdown",
        "raft-reap-node-timeout",
        "raft-reap-read-only-node-timeout",
        "cluster-connect-timeout",
        "write-queue-capacity",
        "write-queue-batch-size",
        "write-queue-timeout",
        "write-queue-tx",
        "cpu-profile",
        "mem-profile",
        "trace-profile",
    ];

    #[test]
    fn every_flag_has_a_support_level_and_rqliteds_flags_are_all_present() {
        let rqlited = RQLITED_FLAGS;
        for name in rqlited {
            assert!(flag_support(name).is_some(), "-{name} missing");
        }
        // raftlite's own, each described in docs/compatibility.md ("Command line") and the
        // README's flag table (`raftlite_only_flags_are_documented` checks both).
        for name in RAFTLITE_ONLY_FLAGS {
            assert!(flag_support(name).is_some(), "-{name} missing");
            assert!(!rqlited.contains(name), "-{name} is rqlited's");
        }
        assert_eq!(
            FLAGS.len(),
            rqlited.len() + RAFTLITE_ONLY_FLAGS.len(),
            "every flag is rqlited's or listed in RAFTLITE_ONLY_FLAGS"
        );
        assert_eq!(flag_support("cdc-config"), Some(Honoured));
        assert_eq!(flag_support("auto-backup"), Some(Honoured));
        assert_eq!(flag_support("auto-restore"), Some(Honoured));
        assert_eq!(flag_support("no-such-flag"), None);
    }

    #[test]
    fn validate_is_repeatable_and_sees_field_changes() {
        let mut c = run("/d");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.validate(), Ok(()));
        c.raft_non_voter = true;
        c.bootstrap_expect = 2;
        assert_eq!(
            c.validate(),
            Err(invalid("bootstrapping only applicable to voting nodes"))
        );
        c.data_dir = PathBuf::new();
        assert_eq!(c.validate(), Err(ConfigError::MissingDataDir));
    }

    #[test]
    fn split_host_port_matches_go() {
        let ok = [
            ("localhost:4001", ("localhost", "4001")),
            (":4001", ("", "4001")),
            ("host:", ("host", "")),
            ("[::1]:4001", ("::1", "4001")),
            ("[fe80::1%eth0]:80", ("fe80::1%eth0", "80")),
            ("http://nonsense", ("http", "//nonsense")),
        ];
        for (addr, want) in ok {
            assert_eq!(split_host_port(addr), Some(want), "{addr}");
        }
        for addr in [
            "",
            "localhost",
            "::1:4001",
            "[::1]",
            "[::1]x:1",
            "[::1]:1:2",
            "a]:1",
            "[a:1",
            "a[b:1",
        ] {
            assert_eq!(split_host_port(addr), None, "{addr}");
        }
    }
}
