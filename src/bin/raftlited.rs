//! `raftlited`: the raftlite node. Parses rqlited-style flags and runs a node until a signal.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use raftlite::auto_backup;
use raftlite::cluster::discovery::Discovery;
use raftlite::cluster::membership::JoinOptions;
use raftlite::config::{Config, ConfigError, ParseOutcome};
use raftlite::node::{self, NodeOptions};
use raftlite::tls::ServerTls;

fn main() -> ExitCode {
    raftlite::failpoint::setup();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::parse(&args) {
        Ok(ParseOutcome::Run(config)) => config,
        Ok(ParseOutcome::Help(usage)) => {
            eprint!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(ParseOutcome::Version) => {
            println!(
                "raftlited {} (SQLite {})",
                raftlite::VERSION,
                raftlite_ffi::sqlite_version()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("raftlited: {e}");
            if matches!(e, ConfigError::Flag(_)) {
                // As Go's flag package does: the usage follows a syntax error.
                eprint!("{}", Config::usage());
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    init_logging(&config.raft_log_level);
    for flag in config.accepted_but_ignored() {
        tracing::warn!("flag -{flag} is accepted for rqlited compatibility but has no effect yet");
    }
    let auto_backup = match config.auto_backup.as_deref().map(auto_backup::config::read) {
        Some(Err(e)) => {
            eprintln!("raftlited: -auto-backup: {e:#}");
            return ExitCode::FAILURE;
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let auto_restore = match config
        .auto_restore
        .as_deref()
        .map(auto_backup::config::read_restore)
    {
        Some(Err(e)) => {
            eprintln!("raftlited: -auto-restore: {e:#}");
            return ExitCode::FAILURE;
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let discovery = match config.disco_mode.as_deref().map(|mode| {
        Discovery::from_flags(
            mode,
            &config.disco_key,
            config.disco_config.as_deref(),
            config.raft_port(),
        )
    }) {
        Some(Err(e)) => {
            eprintln!("raftlited: -disco-config: {e:#}");
            return ExitCode::FAILURE;
        }
        Some(Ok(d)) => d.map(Arc::new),
        None => None,
    };
    let cdc = match config
        .cdc_config
        .as_deref()
        .map(raftlite::cdc::CdcConfig::from_flag)
    {
        Some(Err(e)) => {
            eprintln!("raftlited: -cdc-config: {e:#}");
            return ExitCode::FAILURE;
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let opts = NodeOptions {
        auto_backup,
        auto_restore,
        data_dir: config.data_dir.clone(),
        node_id: config.node_id.clone(),
        http_addr: config.http_addr.clone(),
        http_adv_addr: config.http_adv_addr.clone(),
        raft_addr: config.raft_addr.clone(),
        raft_adv_addr: config.raft_adv_addr.clone(),
        non_voter: config.raft_non_voter,
        foreign_keys: config.fk,
        extensions_path: config.extensions_path.clone(),
        write_budget_steps: config.write_budget_steps,
        max_query_result_size: config.max_query_result_size,
        max_readers: config.db_max_ro_conns,
        max_body_size: usize::try_from(config.max_body_size).unwrap_or(usize::MAX),
        max_load_size: config.max_load_size,
        dump_caps: raftlite::store::backup::DumpCaps {
            wal_limit: config.dump_wal_limit,
            stall_timeout: config.dump_stall_timeout,
        },
        join: JoinOptions {
            join: config.join.clone(),
            attempts: config.join_attempts,
            interval: config.join_interval,
            bootstrap_expect: config.bootstrap_expect,
            bootstrap_expect_timeout: config.bootstrap_expect_timeout,
            discovery,
        },
        log_segment_size: config.raft_log_segment_size,
        snapshot_threshold: config.raft_snap,
        trailing_logs: config.raft_trailing_logs,
        apply_timeout: config.raft_apply_timeout,
        wal_snapshot: (config.raft_snap_wal_size > 0)
            .then_some((config.raft_snap_int, config.raft_snap_wal_size)),
        election_timeout: config.raft_election_timeout,
        heartbeat_interval: config.raft_heartbeat_timeout / 5,
        backup_tmp_dir: Some(config.backup_tmp_dir.clone()),
        disk_reserve: config.disk_reserve,
        max_backup_copies: config.max_backup_copies,
        backup_keep: config.backup_keep,
        backup_keep_size: config.backup_keep_size,
        write_queue: raftlite::http::write_queue::QueueOptions {
            capacity: config.write_queue_capacity,
            batch_size: config.write_queue_batch_size,
            timeout: config.write_queue_timeout,
            transaction: config.write_queue_tx,
        },
        shutdown_stepdown: config.raft_shutdown_stepdown,
        remove_on_shutdown: config.raft_cluster_remove_shutdown,
        shutdown_on_remove: config.raft_remove_shutdown,
        auto_optimize: config.auto_optimize_int,
        auto_vacuum: config.auto_vacuum_int,
        cdc,
        reap: raftlite::cluster::reaper::ReapTimeouts {
            voter: config.raft_reap_node_timeout,
            non_voter: config.raft_reap_read_only_node_timeout,
        },
        auth_file: config.auth.clone(),
        join_as: config.join_as.clone(),
        http_tls: match (&config.http_cert, &config.http_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                ca: config.http_ca_cert.clone(),
                verify_client: config.http_verify_client,
                verify_common_name: config.http_verify_common_name.clone(),
            }),
            _ => None,
        },
        node_tls: match (&config.node_cert, &config.node_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                ca: config.node_ca_cert.clone(),
                verify_client: config.node_verify_client,
                verify_common_name: config.node_verify_common_name.clone(),
            }),
            _ => None,
        },
        node_no_verify: config.node_no_verify,
        node_verify_server_name: config.node_verify_server_name.clone(),
        http_allow_origin: config.http_allow_origin.clone(),
    };
    // SQLite's temporary files (a VACUUM's copy of the database, large sorts) go on the data
    // directory's disk, which -disk-reserve and the leader's room check watch, rather than a
    // /tmp that may be a small tmpfs. Set before any thread starts (SQLite reads it once).
    if std::env::var_os("SQLITE_TMPDIR").is_none() {
        let dir = config.data_dir.join("sqlite-tmp");
        match std::fs::create_dir_all(&dir) {
            Ok(()) => std::env::set_var("SQLITE_TMPDIR", &dir),
            Err(e) => eprintln!("raftlited: create {}: {e}", dir.display()),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftlited: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(node::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("raftlited: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. `RUST_LOG` wins; otherwise raftlite logs at info and `-raft-log-level`
/// sets the level of the Raft library, as it does in rqlited.
fn init_logging(raft_level: &str) {
    let raft = match raft_level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "INFO" => "info",
        "ERROR" => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,openraft={raft}")));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
