//! The fault proxy: a TCP proxy on loopback in front of every node's Raft port and HTTP port,
//! through which the nodes (and only the nodes) reach each other, and which cuts, heals and
//! blackholes each directed link on command.
//!
//! Every node is started with `-raft-adv-addr` and `-http-adv-addr` pointing at its two
//! listeners here, so every call one node makes to another (Raft RPCs, joins, `/nodes` probes,
//! staged-load pulls, and requests a follower forwards to the leader's HTTP API) comes through
//! the proxy. Clients of the test talk to the nodes' real HTTP ports and are never cut.
//!
//! **Who is calling.** All nodes share one advertised address per peer, so a listener cannot
//! tell the caller by the port it was reached on. The proxy asks the kernel instead: the
//! accepted connection's peer address is the caller's local socket, which `/proc/net/tcp` maps
//! to a socket inode, which exactly one node process holds among its file descriptors
//! (`/proc/PID/fd`). A connection whose owner is not (yet) a registered node is retried for
//! a bounded time, then dropped.
//!
//! **What a cut means.** A link is directed: `cut(a, b)` stops the calls `a` makes to `b`
//! (their requests and the answers to them, which share the TCP connection), and leaves the
//! calls `b` makes to `a` alone. So one-way loss is "a cannot call b while b can call a";
//! loss of single packets or of answers alone cannot be built over HTTP-on-TCP, and is not.
//! A cut closes every open proxied connection of that link at once and then, depending on the
//! [`Cut`] mode, refuses new ones (accept and close: the caller sees a reset) or blackholes
//! them (accept, read and discard, never answer: the caller waits for its own timeout). A heal
//! lets new connections through and closes the blackholed ones.
//!
//! Invariants: every thread here ends when the proxy is dropped (the listeners are woken and
//! every connection is shut down); no wait is unbounded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an accepted connection may wait for its caller to be known (a node that is
/// joining calls out before the test has learnt its pid) or for its target's real address.
const IDENTIFY_WAIT: Duration = Duration::from_secs(10);
/// How long the proxy waits to connect to a node's real port.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);

/// What a cut link does with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Accept and close at once: the caller sees the connection reset or closed.
    Refuse,
    /// Accept and never answer: the caller waits for its own timeout.
    Blackhole,
}

/// The two ports of a node the proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortKind {
    Raft,
    Http,
}

/// What the proxy did, for the report.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Connections forwarded to a node.
    pub forwarded: AtomicU64,
    /// Open connections closed by a cut.
    pub severed: AtomicU64,
    /// New connections refused on a cut link.
    pub refused: AtomicU64,
    /// New connections held without an answer on a cut link.
    pub blackholed: AtomicU64,
    /// Connections dropped because their caller could not be identified: in practice, callers
    /// that had already given up and closed their end.
    pub unidentified: AtomicU64,
}

impl ProxyCounters {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "connections forwarded {}, severed by a cut {}, refused {}, blackholed {}, \
             callers not identified {}",
            get(&self.forwarded),
            get(&self.severed),
            get(&self.refused),
            get(&self.blackholed),
            get(&self.unidentified)
        )
    }
}

/// One open connection through the proxy, as the proxy sees it.
struct Open {
    from: usize,
    to: usize,
    /// The accepted socket (and, when forwarded, the socket to the node): shutting them down
    /// ends both pumping threads.
    sockets: Vec<TcpStream>,
    /// True for a connection held on a blackholed link.
    held: bool,
}

struct Shared {
    /// Node index → its pid, once started.
    pids: Mutex<Vec<Option<u32>>>,
    /// Node index → its real (raft, http) addresses, once started.
    upstreams: Mutex<Vec<Option<(SocketAddr, SocketAddr)>>>,
    /// `links[from][to]`: `None` when the link is healthy.
    links: Mutex<Vec<Vec<Option<Cut>>>>,
    open: Mutex<HashMap<u64, Open>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    pub counters: ProxyCounters,
}

/// The proxy for a cluster of `n` nodes: two listeners per node.
pub struct FaultNet {
    shared: Arc<Shared>,
    /// Node index → (raft listener address, http listener address).
    listen: Vec<(SocketAddr, SocketAddr)>,
    acceptors: Vec<JoinHandle<()>>,
}

impl FaultNet {
    /// Binds two listeners per node on free loopback ports and starts accepting.
    pub fn new(n: usize) -> FaultNet {
        let shared = Arc::new(Shared {
            pids: Mutex::new(vec![None; n]),
            upstreams: Mutex::new(vec![None; n]),
            links: Mutex::new(vec![vec![None; n]; n]),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counters: ProxyCounters::default(),
        });
        let mut listen = Vec::new();
        let mut acceptors = Vec::new();
        for to in 0..n {
            let mut addrs = Vec::new();
            for kind in [PortKind::Raft, PortKind::Http] {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy listener");
                addrs.push(listener.local_addr().expect("proxy listener address"));
                let shared = Arc::clone(&shared);
                acceptors.push(std::thread::spawn(move || {
                    accept_loop(listener, to, kind, shared)
                }));
            }
            listen.push((addrs[0], addrs[1]));
        }
        FaultNet {
            shared,
            listen,
            acceptors,
        }
    }

    /// The flags that make node `i` advertise its proxy listeners to the others.
    pub fn advertise_args(&self, i: usize) -> Vec<String> {
        let (raft, http) = self.listen[i];
        vec![
            "-raft-adv-addr".into(),
            raft.to_string(),
            "-http-adv-addr".into(),
            http.to_string(),
        ]
    }

    /// Node `i`'s advertised (proxied) Raft address: what others join through.
    pub fn raft_addr(&self, i: usize) -> String {
        self.listen[i].0.to_string()
    }

    /// Tells the proxy node `i`'s process and real addresses.
    pub fn attach(&self, i: usize, pid: u32, raft_addr: &str, http_addr: &str) {
        let parse = |a: &str| a.parse::<SocketAddr>().expect("a node address");
        self.shared.pids.lock().unwrap()[i] = Some(pid);
        self.shared.upstreams.lock().unwrap()[i] = Some((parse(raft_addr), parse(http_addr)));
    }

    pub fn len(&self) -> usize {
        self.listen.len()
    }

    /// Cuts the calls `from` makes to `to` (see the module doc).
    pub fn cut(&self, from: usize, to: usize, mode: Cut) {
        if from == to {
            return;
        }
        self.shared.links.lock().unwrap()[from][to] = Some(mode);
        let mut severed = 0;
        let mut open = self.shared.open.lock().unwrap();
        open.retain(|_, c| {
            if c.from == from && c.to == to && !c.held {
                for s in &c.sockets {
                    let _ = s.shutdown(Shutdown::Both);
                }
                severed += 1;
                false
            } else {
                true
            }
        });
        self.shared
            .counters
            .severed
            .fetch_add(severed, Ordering::Relaxed);
    }

    /// Lets `from` call `to` again; connections held on the blackholed link are closed.
    pub fn heal(&self, from: usize, to: usize) {
        self.shared.links.lock().unwrap()[from][to] = None;
        let mut open = self.shared.open.lock().unwrap();
        open.retain(|_, c| {
            if c.from == from && c.to == to && c.held {
                for s in &c.sockets {
                    let _ = s.shutdown(Shutdown::Both);
                }
                false
            } else {
                true
            }
        });
    }

    /// Cuts every link between `group` and the other nodes, both ways.
    pub fn isolate(&self, group: &[usize], mode: Cut) {
        for a in 0..self.len() {
            for b in 0..self.len() {
                if group.contains(&a) != group.contains(&b) {
                    self.cut(a, b, mode);
                }
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for a in 0..self.len() {
            for b in 0..self.len() {
                self.heal(a, b);
            }
        }
    }

    /// The links cut now, as `(from, to)`.
    pub fn cut_links(&self) -> Vec<(usize, usize)> {
        let links = self.shared.links.lock().unwrap();
        let mut out = Vec::new();
        for (a, row) in links.iter().enumerate() {
            for (b, l) in row.iter().enumerate() {
                if l.is_some() {
                    out.push((a, b));
                }
            }
        }
        out
    }

    pub fn counters(&self) -> &ProxyCounters {
        &self.shared.counters
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake every acceptor so it sees the flag.
        for (raft, http) in &self.listen {
            let _ = TcpStream::connect_timeout(raft, Duration::from_secs(1));
            let _ = TcpStream::connect_timeout(http, Duration::from_secs(1));
        }
        for c in self.shared.open.lock().unwrap().values() {
            for s in &c.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
    }
}

fn accept_loop(listener: TcpListener, to: usize, kind: PortKind, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || handle(conn, to, kind, shared));
    }
}

/// Finds which registered node holds the other end of `conn` (see the module doc). Waits
/// (bounded) only while some node is not registered yet (a joining node calls out before the
/// test knows its pid); a caller that has already closed its end, or that is no node, is
/// answered at once: polling for those made a cut with many short-lived connections cost
/// more CPU than the nodes had.
fn caller_of(conn: &TcpStream, shared: &Shared) -> Option<usize> {
    let peer = conn.peer_addr().ok()?;
    let local = conn.local_addr().ok()?;
    let deadline = Instant::now() + IDENTIFY_WAIT;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        let entries = procfs::net::tcp().ok()?;
        let found = entries
            .iter()
            .find(|e| e.local_address == peer && e.remote_address == local);
        let inode = found.map(|e| e.inode).filter(|&inode| inode != 0)?;
        let pids = shared.pids.lock().unwrap().clone();
        for (i, pid) in pids.iter().enumerate() {
            let Some(pid) = pid else { continue };
            let Ok(process) = procfs::process::Process::new(*pid as i32) else {
                continue;
            };
            let Ok(fds) = process.fd() else { continue };
            let holds = fds
                .flatten()
                .any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(s) if s == inode));
            if holds {
                return Some(i);
            }
        }
        if pids.iter().all(Option::is_some) || Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn upstream_of(to: usize, kind: PortKind, shared: &Shared) -> Option<SocketAddr> {
    let deadline = Instant::now() + IDENTIFY_WAIT;
    loop {
        if let Some((raft, http)) = shared.upstreams.lock().unwrap()[to] {
            return Some(match kind {
                PortKind::Raft => raft,
                PortKind::Http => http,
            });
        }
        if Instant::now() > deadline || shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn handle(conn: TcpStream, to: usize, kind: PortKind, shared: Arc<Shared>) {
    let _ = conn.set_nodelay(true);
    let Some(from) = caller_of(&conn, &shared) else {
        shared.counters.unidentified.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // Decide and register under the links lock, so a cut that lands now either sees this
    // connection or is seen by it.
    let links = shared.links.lock().unwrap();
    match links[from][to] {
        Some(Cut::Refuse) => {
            drop(links);
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Some(Cut::Blackhole) => {
            let Ok(keep) = conn.try_clone() else { return };
            shared.open.lock().unwrap().insert(
                id,
                Open {
                    from,
                    to,
                    sockets: vec![keep],
                    held: true,
                },
            );
            drop(links);
            shared.counters.blackholed.fetch_add(1, Ordering::Relaxed);
            // Read and discard until the heal (or the caller) closes it.
            let mut sink = [0u8; 16 * 1024];
            let mut conn = conn;
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            shared.open.lock().unwrap().remove(&id);
        }
        None => {
            drop(links);
            let Some(addr) = upstream_of(to, kind, &shared) else {
                return;
            };
            let Ok(upstream) = TcpStream::connect_timeout(&addr, UPSTREAM_CONNECT) else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let (Ok(c2), Ok(u2), Ok(ck), Ok(uk)) = (
                conn.try_clone(),
                upstream.try_clone(),
                conn.try_clone(),
                upstream.try_clone(),
            ) else {
                return;
            };
            {
                // A cut may have landed while we connected: check again under the lock.
                let links = shared.links.lock().unwrap();
                if links[from][to].is_some() {
                    let _ = conn.shutdown(Shutdown::Both);
                    let _ = upstream.shutdown(Shutdown::Both);
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                shared.open.lock().unwrap().insert(
                    id,
                    Open {
                        from,
                        to,
                        sockets: vec![ck, uk],
                        held: false,
                    },
                );
            }
            shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            let back = std::thread::spawn(move || pump(u2, c2));
            pump(conn, upstream);
            let _ = back.join();
            shared.open.lock().unwrap().remove(&id);
        }
    }
}

/// Copies `from` into `to` until either side ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
