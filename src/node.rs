//! A node's life: bind the listeners, open the store, serve HTTP, form or join the cluster,
//! stop cleanly on a signal.
//!
//! Start-up order follows rqlited: listen on the Raft port, then the HTTP port (so a port
//! clash is reported before anything is opened), open the store, start both services (so
//! `/status` and `/readyz?noleader` answer while the node is still joining), then form or
//! join the cluster. A port of 0 binds a free port; the bound address is then the advertised
//! one (unless one is given) and is logged as `node HTTP API available at http://ADDR`
//! (`https://` with `-http-cert`), which tests and scripts read. Before any of that, the
//! `-auth` file and every TLS file are read (`load_security`): a bad one stops the node with
//! an error naming it, before anything is bound or opened.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::auth::Auth;
use crate::cluster::membership::{self, JoinOptions};
use crate::db::DbSettings;
use crate::http::{self, AppState, Limits};
use crate::store::backup::{BackupOptions, DumpCaps};
use crate::store::{NodeInfo, Store, StoreOptions};
use crate::tls::{self, ClientTls, NodeTransport, ServerTls};

/// Everything a node needs to start (built from the command line by the binary).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    pub http_addr: String,
    pub http_adv_addr: Option<String>,
    pub raft_addr: String,
    pub raft_adv_addr: Option<String>,
    pub non_voter: bool,
    pub foreign_keys: bool,
    /// `-extensions-path`: the SQLite extensions every connection loads (`crate::extensions`).
    pub extensions_path: Vec<PathBuf>,
    /// `-write-budget-steps`: the budget this node gives the writes it proposes as leader.
    pub write_budget_steps: u64,
    /// `-max-query-result-size`: the most bytes of rows one read statement may return.
    pub max_query_result_size: u64,
    pub max_readers: usize,
    pub max_body_size: usize,
    /// `-max-load-size`: the largest `/db/load` or `/boot` body (decompressed).
    pub max_load_size: Option<u64>,
    /// `-dump-wal-limit` and `-dump-stall-timeout`: caps on a SQL dump's snapshot.
    pub dump_caps: DumpCaps,
    pub join: JoinOptions,
    pub log_segment_size: u64,
    pub snapshot_threshold: u64,
    pub trailing_logs: u64,
    /// `-raft-apply-timeout`: see `store::StoreOptions::apply_timeout`.
    pub apply_timeout: Duration,
    /// `-raft-snap-int`, `-raft-snap-wal-size`: see `store::StoreOptions::wal_snapshot`.
    pub wal_snapshot: Option<(Duration, u64)>,
    pub election_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Where binary backup copies go (`-backup-tmp-dir`); None: the data directory.
    pub backup_tmp_dir: Option<PathBuf>,
    /// Bytes that backup copies leave free (`-disk-reserve`).
    pub disk_reserve: u64,
    /// Backup copies in progress at once (`-max-backup-copies`).
    pub max_backup_copies: usize,
    /// `-backup-keep` and `-backup-keep-size`: how long and how much finished copies are kept.
    pub backup_keep: Duration,
    pub backup_keep_size: u64,
    /// `-auto-backup`: the leader's periodic backups, read from the configuration file.
    pub auto_backup: Option<crate::auto_backup::AutoBackupConfig>,
    /// `-auto-restore`, read: a node that starts with no data loads the storage's backup.
    pub auto_restore: Option<crate::auto_backup::AutoRestoreConfig>,
    /// `-write-queue-*`.
    pub write_queue: crate::http::write_queue::QueueOptions,
    /// `-raft-shutdown-stepdown`: a leader hands leadership over before a graceful stop.
    pub shutdown_stepdown: bool,
    /// `-raft-cluster-remove-shutdown`: leave the cluster on a graceful stop.
    pub remove_on_shutdown: bool,
    /// `-raft-remove-shutdown`: stop when the leader removes this node from the cluster.
    pub shutdown_on_remove: bool,
    /// `-auto-optimize-int`: how often the leader proposes `PRAGMA optimize` (`None`: never).
    pub auto_optimize: Option<Duration>,
    /// `-auto-vacuum-int`: how often the leader proposes `VACUUM` (`None`: never).
    pub auto_vacuum: Option<Duration>,
    /// `-cdc-config`: change data capture (`crate::cdc`), read at start-up.
    pub cdc: Option<crate::cdc::CdcConfig>,
    /// `-raft-reap-node-timeout`, `-raft-reap-read-only-node-timeout`: the leader removes
    /// members it has not heard from for that long (`cluster::reaper`).
    pub reap: crate::cluster::reaper::ReapTimeouts,
    /// `-auth`: the credentials file.
    pub auth_file: Option<PathBuf>,
    /// `-join-as`: the user (in the `-auth` file) whose credentials cluster requests carry.
    pub join_as: Option<String>,
    /// `-http-cert/-http-key/-http-ca-cert/-http-verify-client`: HTTPS for the API.
    pub http_tls: Option<ServerTls>,
    /// `-node-cert/-node-key/-node-ca-cert/-node-verify-client`: TLS on the Raft port.
    pub node_tls: Option<ServerTls>,
    /// `-node-no-verify`: accept any certificate from other nodes.
    pub node_no_verify: bool,
    /// `-node-verify-server-name`: the name other nodes' certificates must carry.
    pub node_verify_server_name: Option<String>,
    /// `-http-allow-origin`: the `Access-Control-Allow-Origin` every answer carries.
    pub http_allow_origin: Option<String>,
}

impl NodeOptions {
    /// A single node on loopback with free ports: what tests and examples start from.
    pub fn local(data_dir: impl Into<PathBuf>) -> NodeOptions {
        NodeOptions {
            data_dir: data_dir.into(),
            node_id: None,
            http_addr: "127.0.0.1:0".into(),
            http_adv_addr: None,
            raft_addr: "127.0.0.1:0".into(),
            raft_adv_addr: None,
            non_voter: false,
            foreign_keys: false,
            extensions_path: Vec::new(),
            write_budget_steps: crate::db::request::DEFAULT_WRITE_BUDGET_STEPS,
            max_query_result_size: crate::db::settings::DEFAULT_MAX_QUERY_RESULT_BYTES,
            max_readers: 256,
            max_body_size: Limits::default().max_body_size,
            max_load_size: None,
            dump_caps: DumpCaps::default(),
            join: JoinOptions {
                join: vec![],
                attempts: 5,
                interval: Duration::from_secs(3),
                bootstrap_expect: 0,
                bootstrap_expect_timeout: Duration::from_secs(120),
                discovery: None,
            },
            log_segment_size: 64 * 1024 * 1024,
            snapshot_threshold: 8192,
            trailing_logs: 1024,
            apply_timeout: Duration::from_secs(10),
            wal_snapshot: Some((Duration::from_secs(10), 4 << 20)),
            election_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(200),
            backup_tmp_dir: None,
            disk_reserve: 256 << 20,
            max_backup_copies: 16,
            backup_keep: Duration::from_secs(300),
            backup_keep_size: 4 << 30,
            auto_backup: None,
            auto_restore: None,
            write_queue: Default::default(),
            shutdown_stepdown: true,
            remove_on_shutdown: false,
            shutdown_on_remove: false,
            auto_optimize: None,
            auto_vacuum: None,
            cdc: None,
            reap: crate::cluster::reaper::ReapTimeouts {
                voter: None,
                non_voter: None,
            },
            auth_file: None,
            join_as: None,
            http_tls: None,
            node_tls: None,
            node_no_verify: false,
            node_verify_server_name: None,
            http_allow_origin: None,
        }
    }
}

/// What `-auth` and the TLS flags make of the files they name, read before anything starts
/// so a bad file stops the node with an error naming it.
struct Security {
    auth: Option<Arc<Auth>>,
    http_server: Option<rustls::ServerConfig>,
    node_server: Option<rustls::ServerConfig>,
    forward_client: reqwest::Client,
}

fn load_security(opts: &NodeOptions) -> anyhow::Result<Security> {
    let auth = match &opts.auth_file {
        Some(path) => Some(Arc::new(Auth::load(path)?)),
        None => None,
    };
    let join_authorization = match (&opts.join_as, &auth) {
        (None, _) => None,
        (Some(user), None) => bail!("-join-as {user} needs -auth"),
        (Some(user), Some(auth)) => {
            let Some(password) = auth.password_of(user) else {
                bail!("-join-as {user}: the -auth file has no user {user} with a password");
            };
            if password.starts_with("$2") {
                bail!("-join-as {user}: the -auth file holds a bcrypt hash for {user}; joining needs the password itself");
            }
            Some(crate::auth::basic_header(user, &password))
        }
    };
    let http_server = match &opts.http_tls {
        Some(t) => Some(tls::server_config(t, "HTTPS")?),
        None => None,
    };
    let node_server = match &opts.node_tls {
        Some(t) => Some(tls::server_config(t, "node")?),
        None => None,
    };
    let node_client = match &opts.node_tls {
        Some(t) => Some(tls::client_config(
            &ClientTls {
                ca: t.ca.clone(),
                identity: Some((t.cert.clone(), t.key.clone())),
                insecure: opts.node_no_verify,
                server_name: opts.node_verify_server_name.clone(),
            },
            "node",
        )?),
        None => None,
    };
    if auth.is_some() {
        warn_about_node_traffic(opts, join_authorization.is_some());
    }
    tls::set_node_transport(NodeTransport::new(node_client, join_authorization));
    // Forwarding to the leader's API: trust -http-ca-cert, and present this node's HTTP
    // certificate in case the leader wants one (-http-verify-client).
    // Never decode a response: a forwarded backup's coded bytes and `Content-Encoding` go to
    // the client as the leader sent them (these are no-ops unless a reqwest decoding feature
    // is on, which a workspace build could turn on for everyone).
    let mut forward = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate();
    if let Some(t) = &opts.http_tls {
        forward = forward.use_preconfigured_tls(tls::client_config(
            &ClientTls {
                ca: t.ca.clone(),
                identity: Some((t.cert.clone(), t.key.clone())),
                insecure: false,
                server_name: None,
            },
            "HTTPS",
        )?);
    }
    Ok(Security {
        auth,
        http_server,
        node_server,
        forward_client: forward.build().context("build the forwarding client")?,
    })
}

/// What a person starting the node wants to know first: where it serves, where its data is,
/// and how to talk to it (printed on stdout; the log line above is what scripts read).
fn serving_banner(scheme: &str, http: &str, raft: &str, data_dir: &std::path::Path) -> String {
    let (host, port) = http.rsplit_once(':').unwrap_or((http, ""));
    let shell = if host == "127.0.0.1" && port == "4001" && scheme == "http" {
        "raftlite".to_string()
    } else {
        let tls = if scheme == "https" { " -s https" } else { "" };
        format!("raftlite -H {host} -p {port}{tls}")
    };
    format!(
        "raftlite {version} is serving\n  \
         HTTP API  {scheme}://{http}\n  \
         Console   {scheme}://{http}/console/\n  \
         Raft      {raft}\n  \
         Data      {data}\n  \
         Shell     {shell}",
        version = crate::VERSION,
        data = data_dir.display(),
    )
}

/// With `-auth`, node-to-node traffic must prove membership and should be private: says so
/// loudly at start-up when it does neither.
fn warn_about_node_traffic(opts: &NodeOptions, has_join_as: bool) {
    let mutual_tls = opts.node_tls.as_ref().is_some_and(|t| t.verify_client);
    if !has_join_as && !mutual_tls {
        tracing::warn!(
            "-auth is set but this node has neither -join-as nor node mutual TLS \
             (-node-verify-client): other nodes with -auth refuse its Raft traffic, so it can \
             only run alone"
        );
    }
    if opts.node_tls.is_none() {
        tracing::warn!(
            "-auth is set but node-to-node traffic is not encrypted (no -node-cert): the \
             -join-as credentials and every replicated write cross the network in clear; \
             keep the Raft port on a private network or turn on node TLS"
        );
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    // Listening from the start: a signal that comes between two waits is kept, not lost.
    let mut stop = StopSignals::install();
    // Everything the node creates from here (database, log, backup copies, staged loads) is
    // its user's alone: 0600 files, 0700 directories.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let security = load_security(&opts)?;
    prepare_data_dir(&opts.data_dir)?;
    let backup_tmp_dir = match &opts.backup_tmp_dir {
        Some(dir) if dir != &opts.data_dir => {
            let own = private_backup_dir(dir, &opts.data_dir)?;
            remove_leftovers(&own, &[crate::store::backup::TEMP_PREFIX]);
            own
        }
        _ => opts.data_dir.clone(),
    };
    let raft_listener = TcpListener::bind(&opts.raft_addr)
        .with_context(|| format!("listen on the Raft address {}", opts.raft_addr))?;
    let http_listener = TcpListener::bind(&opts.http_addr)
        .with_context(|| format!("listen on the HTTP address {}", opts.http_addr))?;
    let raft_bound = raft_listener
        .local_addr()
        .context("read the bound Raft address")?
        .to_string();
    let http_bound = http_listener
        .local_addr()
        .context("read the bound HTTP address")?
        .to_string();
    let raft_adv = opts
        .raft_adv_addr
        .clone()
        .unwrap_or_else(|| raft_bound.clone());
    let http_adv = opts
        .http_adv_addr
        .clone()
        .unwrap_or_else(|| http_bound.clone());
    if raft_adv == http_adv {
        bail!("the advertised HTTP and Raft addresses must differ (both are {raft_adv})");
    }
    let node = NodeInfo {
        id: resolve_node_id(&opts.data_dir, opts.node_id.as_deref(), &raft_adv)?,
        api_addr: http_adv,
        raft_addr: raft_adv,
        https: opts.http_tls.is_some(),
        voter: !opts.non_voter,
    };

    let extensions = crate::extensions::Extensions::gather(&opts.data_dir, &opts.extensions_path)
        .context("-extensions-path")?;
    if !extensions.files.is_empty() {
        tracing::info!(names = ?extensions.names(), "SQLite extensions loaded on every connection");
    }
    let network = crate::cluster::network::HttpNetwork::new(opts.data_dir.clone())?;
    let contacts = network.contacts();
    let store = Store::open(
        StoreOptions {
            data_dir: opts.data_dir.clone(),
            node: node.clone(),
            db: DbSettings {
                foreign_keys: opts.foreign_keys,
                max_readers: opts.max_readers,
                write_budget_steps: opts.write_budget_steps,
                max_query_result_bytes: opts.max_query_result_size,
                extensions: extensions.files.clone().into(),
                extensions_digest: extensions.digest.clone(),
                ..Default::default()
            },
            log_segment_size: opts.log_segment_size,
            snapshot_threshold: opts.snapshot_threshold,
            trailing_logs: opts.trailing_logs,
            wal_snapshot: opts.wal_snapshot,
            apply_timeout: opts.apply_timeout,
            election_timeout: opts.election_timeout,
            heartbeat_interval: opts.heartbeat_interval,
            cdc: opts.cdc.clone(),
            backup: BackupOptions {
                tmp_dir: backup_tmp_dir,
                disk_reserve: opts.disk_reserve,
                max_copies: opts.max_backup_copies,
                keep_for: opts.backup_keep,
                keep_bytes: opts.backup_keep_size,
                dump_caps: opts.dump_caps,
            },
        },
        network,
    )
    .await?;
    let raft_server = crate::cluster::rpc::serve(
        raft_listener,
        Arc::clone(&store),
        security.node_server,
        crate::cluster::rpc::RaftPortOptions {
            auth: security.auth.clone(),
            members_by_tls: opts.node_tls.as_ref().is_some_and(|t| t.verify_client),
            disk_reserve: opts.disk_reserve,
        },
    )
    .context("start the Raft service")?;
    let raft_handle = raft_server.handle();
    let raft_task = tokio::spawn(raft_server);
    tracing::info!(node_id = %node.id, "raft listening on {raft_bound}");

    // Before the node serves, as rqlited does: a node that cannot fetch the backup it was told
    // to start from stops here (unless `continue_on_failure`).
    let auto_restore = match &opts.auto_restore {
        Some(config) => tokio::select! {
            downloaded = crate::auto_backup::restore::download(&store, config, opts.max_load_size) => {
                downloaded.context("auto-restore")?
            }
            _ = stop.recv() => {
                // The download's file goes with its future; the node stops as asked.
                tracing::warn!("stop signal during the auto-restore download; shutting down");
                store.begin_stopping();
                raft_handle.stop(true).await;
                let _ = raft_task.await;
                store.shutdown().await;
                return Ok(());
            }
        },
        None => None,
    };
    let uploader = Arc::new(crate::auto_backup::UploaderStats::default());
    let auto_backup = match opts.auto_backup.clone() {
        Some(config) => Some(
            crate::auto_backup::start(Arc::clone(&store), config, Arc::clone(&uploader))
                .context("start automatic backups")?,
        ),
        None => None,
    };

    use crate::store::housekeeping::{self, Chore};
    for (chore, interval) in [
        (Chore::Optimize, opts.auto_optimize),
        (Chore::Vacuum, opts.auto_vacuum),
    ] {
        if let Some(interval) = interval {
            tokio::spawn(housekeeping::run(Arc::clone(&store), chore, interval));
        }
    }
    let cdc = match (&opts.cdc, store.shared().cdc.get()) {
        (Some(config), Some(apply)) => {
            let stats = Arc::new(crate::cdc::sender::SenderStats::default());
            crate::cdc::sender::start(
                Arc::clone(&store),
                Arc::clone(&apply.queue),
                config.clone(),
                Arc::clone(&stats),
            )
            .context("start change data capture")?;
            Some(crate::http::CdcState {
                config: config.clone(),
                queue: Arc::clone(&apply.queue),
                stats,
            })
        }
        _ => None,
    };
    tokio::spawn(crate::cluster::reaper::run(
        Arc::clone(&store),
        contacts,
        opts.reap,
    ));
    let archiver_stats = Arc::new(crate::archive::ArchiverStats::default());
    let archiver = match opts
        .auto_backup
        .as_ref()
        .and_then(|c| c.archive.clone().map(|a| (c.storage.clone(), a)))
    {
        Some((storage, archive)) => {
            let target = crate::auto_backup::storage::Target::open_for_uploads(&storage, false)
                .context("start continuous archiving")?;
            Some(crate::archive::start(
                Arc::clone(&store),
                Arc::new(target),
                archive,
                Arc::clone(&archiver_stats),
            ))
        }
        None => {
            // Content kept for an archiver that no longer runs would stay for good.
            crate::store::restore::files::forget_archived_loads(&opts.data_dir);
            None
        }
    };

    let forward_client = security.forward_client;
    let node_client = tls::node()
        .client_builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("build the node client")?;
    let state = AppState {
        store: Arc::clone(&store),
        write_queue: crate::http::write_queue::WriteQueue::start(
            Arc::clone(&store),
            forward_client.clone(),
            opts.write_queue,
        ),
        forward_client,
        node_client,
        auth: security.auth,
        limits: Limits {
            max_body_size: opts.max_body_size,
            max_load_size: opts.max_load_size,
        },
        data_dir: opts.data_dir.display().to_string(),
        http_bind_addr: http_bound.clone(),
        started: Instant::now(),
        start_time_rfc3339: now_rfc3339(),
        writer_pragmas: parking_lot::Mutex::new(serde_json::Value::Null),
        allow_origin: opts.http_allow_origin.clone(),
        discovery: opts.join.discovery.clone(),
        auto_vacuum: opts.auto_vacuum,
        cdc,
        uploader,
        archiver: archiver_stats,
    };
    let https = security.http_server.is_some();
    let server =
        http::serve(http_listener, state, security.http_server).context("start the HTTP server")?;
    let http_handle = server.handle();
    let http_task = tokio::spawn(server);
    let scheme = if https { "https" } else { "http" };
    tracing::info!("node HTTP API available at {scheme}://{http_bound}");
    println!(
        "{}",
        serving_banner(scheme, &http_bound, &raft_bound, &opts.data_dir)
    );

    // A stop signal while the node is still forming or joining is a clean stop (exit 0), as
    // it is afterwards: the operator asked for it, and nothing is half done (forming and
    // joining are retried from the start on the next run).
    let auto_restore = auto_restore.map(|downloaded| {
        crate::auto_backup::restore::install_when_leader(
            Arc::clone(&store),
            downloaded,
            crate::store::restore::RestoreLimits {
                max_size: opts.max_load_size,
                disk_reserve: opts.disk_reserve,
            },
        )
    });
    // etcd-kv: the leader keeps its record in etcd from the start (a restarted leader too).
    let etcd_reporter = opts.join.discovery.clone().map(|d| {
        tokio::spawn(crate::cluster::discovery::etcd::report_leadership(
            Arc::clone(&store),
            d,
        ))
    });
    let formed = tokio::select! {
        r = membership::form_or_join(&store, &opts.join) => r.map(|()| true),
        _ = stop.recv() => {
            tracing::warn!("stop signal while forming the cluster; shutting down");
            Ok(false)
        }
    };
    let outcome = match formed {
        Ok(true) => {
            let removed = async {
                if opts.shutdown_on_remove {
                    store.removed_from_cluster().await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = stop.recv() => {
                    tracing::info!("shutting down");
                    store.begin_stopping();
                    leave_gracefully(&store, &opts).await;
                }
                _ = removed => {
                    // No longer a member: nothing to hand over or leave.
                    tracing::warn!("removed from the cluster; shutting down (-raft-remove-shutdown)");
                }
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    store.begin_stopping();
    // No backup starts once the node stops, and one being written gives up (its temporary
    // file goes): a stop must not wait for a multi-gigabyte upload.
    if let Some(auto_backup) = auto_backup {
        auto_backup.shut_down().await;
    }
    if let Some(auto_restore) = &auto_restore {
        auto_restore.abort();
    }
    if let Some(reporter) = &etcd_reporter {
        reporter.abort();
    }
    if let Some(archiver) = archiver {
        archiver.shut_down().await;
    }
    http_handle.stop(true).await;
    raft_handle.stop(true).await;
    let _ = http_task.await;
    let _ = raft_task.await;
    store.shutdown().await;
    tracing::info!("stopped");
    outcome
}

/// What a graceful stop does before closing (rqlited's order): a leader steps down, then
/// the node asks to be removed. Both are bounded; a failure is logged and the stop goes on.
async fn leave_gracefully(store: &Store, opts: &NodeOptions) {
    if opts.shutdown_stepdown && store.is_leader() && store.voter_ids().len() > 1 {
        match crate::cluster::stepdown::step_down(store, None).await {
            Ok(leader) => tracing::info!(new_leader = %leader, "stepped down before shutting down"),
            Err(e) => tracing::warn!("stepdown before shutting down: {e}"),
        }
    }
    if opts.remove_on_shutdown {
        membership::leave_cluster(store).await;
    }
}

/// The node id: `-node-id` if given, else the id this data directory was first started with,
/// else (rqlited's default) the advertised Raft address. Remembering the first id keeps a
/// node the same member when it restarts on another address (port 0, a new host); rqlited
/// would see a new node there.
fn resolve_node_id(
    data_dir: &std::path::Path,
    given: Option<&str>,
    raft_adv: &str,
) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    if let Some(id) = given {
        return Ok(id.to_string());
    }
    match std::fs::read_to_string(&path) {
        Ok(stored) if !stored.trim().is_empty() => Ok(stored.trim().to_string()),
        _ => {
            std::fs::write(&path, raft_adv).with_context(|| format!("write {}", path.display()))?;
            Ok(raft_adv.to_string())
        }
    }
}

/// The data directory: created if needed, private to the node's user (the directory and
/// its subdirectories 0700, the files in them 0600; files made later get the same modes from
/// the umask [`run`] sets), writable, and rid of what an earlier run left half done.
fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create data directory {}", dir.display()))?;
    let meta =
        std::fs::metadata(dir).with_context(|| format!("read data directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("data directory {} is not a directory", dir.display());
    }
    make_private(dir).with_context(|| format!("make data directory {} private", dir.display()))?;
    // Fail now, with the path in the message, rather than at the first write.
    let probe = dir.join(".raftlite-write-probe");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    // Temporary files of an earlier run that died mid-transfer.
    remove_leftovers(
        dir,
        &[
            "snapshot-in-",
            "snapshot-out-",
            crate::store::backup::TEMP_PREFIX,
            crate::store::state_machine::SNAPSHOT_META_TEMP,
        ],
    );
    // Loads: partial uploads and pulls, half-prepared installs, old staged content.
    crate::store::restore::files::clean_at_startup(dir);
    Ok(())
}

/// Modes that keep the node's files to its own user: a backup server's files are its data.
const PRIVATE_DIR_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Sets `dir` (and the directories below it) to 0700 and the files in them to 0600.
fn make_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            make_private(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(
                entry.path(),
                std::fs::Permissions::from_mode(PRIVATE_FILE_MODE),
            )?;
        }
    }
    Ok(())
}

/// This node's own directory inside `-backup-tmp-dir`: `raftlite-<hash of the data
/// directory>`, 0700. A shared temporary directory may hold other programs' files, or another
/// node's copies in progress; start-up clears only this directory.
fn private_backup_dir(
    parent: &std::path::Path,
    data_dir: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    use sha2::Digest as _;
    use std::os::unix::fs::DirBuilderExt as _;
    let identity = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(identity.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let own = parent.join(format!("raftlite-{name}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(&own)
        .with_context(|| format!("create backup directory {}", own.display()))?;
    make_private(&own).with_context(|| format!("make {} private", own.display()))?;
    Ok(own)
}

/// Removes the files in `dir` whose names start with one of `prefixes`.
fn remove_leftovers(dir: &std::path::Path, prefixes: &[&str]) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// SIGTERM and SIGINT, listened for from start-up to the end of `run`.
///
/// Each wait must use the same listeners: tokio hands a signal only to the listeners that
/// exist when it arrives, so a listener created for a second wait (serving, after forming the
/// cluster) missed a SIGTERM sent in between, and the node ignored it.
struct StopSignals(Option<(Signal, Signal)>);

impl StopSignals {
    fn install() -> StopSignals {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
            _ => {
                tracing::warn!("cannot install signal handlers; stop the node with SIGKILL");
                StopSignals(None)
            }
        }
    }

    /// Waits for the next SIGTERM or SIGINT (forever, without handlers).
    async fn recv(&mut self) {
        match &mut self.0 {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// The current time as RFC 3339 (UTC), for `/status`.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::http::json::rfc3339_from_unix(secs)
}
