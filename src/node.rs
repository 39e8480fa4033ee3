//! A node's life: bind the listeners, open the database, serve HTTP, stop cleanly on a signal.
//!
//! Start-up order follows rqlited: listen on the Raft port first, then the HTTP port, so
//! that a port clash is reported before anything is opened. A port of 0 binds a free port;
//! the bound address is then the advertised one (unless one is given) and is logged as
//! `node HTTP API available at http://ADDR`, which tests and scripts read.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::db::{Database, DbSettings, DB_FILE_NAME};
use crate::http::{self, AppState, Limits};
use crate::store::{NodeInfo, Store};

/// Everything a node needs to start (built from the command line by the binary).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    pub http_addr: String,
    pub http_adv_addr: Option<String>,
    pub raft_addr: String,
    pub raft_adv_addr: Option<String>,
    pub foreign_keys: bool,
    pub max_readers: usize,
    pub max_body_size: usize,
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
            foreign_keys: false,
            max_readers: 256,
            max_body_size: Limits::default().max_body_size,
        }
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    prepare_data_dir(&opts.data_dir)?;
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
    let node = NodeInfo {
        id: opts.node_id.clone().unwrap_or_else(|| raft_adv.clone()),
        api_addr: http_adv,
        raft_addr: raft_adv,
        https: false,
        voter: true,
    };

    let db_path = opts.data_dir.join(DB_FILE_NAME);
    let settings = DbSettings {
        foreign_keys: opts.foreign_keys,
        max_readers: opts.max_readers,
        ..Default::default()
    };
    let db = Arc::new(Database::open(&db_path, settings)?);
    let store = Arc::new(Store::new(Arc::clone(&db), node.clone()));
    let state = AppState {
        store,
        limits: Limits {
            max_body_size: opts.max_body_size,
        },
        data_dir: opts.data_dir.display().to_string(),
        http_bind_addr: http_bound.clone(),
        started: Instant::now(),
        start_time_rfc3339: now_rfc3339(),
    };
    let server = http::serve(http_listener, state).context("start the HTTP server")?;
    let handle = server.handle();
    tracing::info!(node_id = %node.id, "raft listening on {raft_bound}");
    tracing::info!("node HTTP API available at http://{http_bound}");
    // The Raft listener is held so the port stays ours; the cluster issue serves Raft on it.
    let _raft_listener = raft_listener;

    let server_task = tokio::spawn(server);
    wait_for_shutdown_signal().await;
    tracing::info!("shutting down");
    handle.stop(true).await;
    let _ = server_task.await;
    db.close();
    tracing::info!("stopped");
    Ok(())
}

fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create data directory {}", dir.display()))?;
    let meta =
        std::fs::metadata(dir).with_context(|| format!("read data directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("data directory {} is not a directory", dir.display());
    }
    // Fail now, with the path in the message, rather than at the first write.
    let probe = dir.join(".raftlite-write-probe");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the node with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
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
