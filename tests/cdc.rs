//! Change data capture end to end: real `raftlited` processes started with `-cdc-config`, and a
//! real HTTP receiver inside the test ([`Receiver`]) that records every request it reads and
//! can be switched at run time between answering 200, answering 500, stalling past the node's
//! `transmit_timeout` without answering, and being down (listener closed; later reopened on the
//! same port). It can also serve HTTPS requiring a client certificate ([`Receiver::start_tls`],
//! rustls, the node's own TLS library, with certificates rcgen makes: [`Pki`]).
//!
//! Every request a node sends is checked against rqlite's envelope ([`check_envelopes`]): a
//! POST of `application/json` to the endpoint's path, `node_id` of a node that may send,
//! `service_id` when configured (absent otherwise), and a `payload` of 1 to `max_batch_size`
//! items in increasing `index` order, each with a non-empty `events` list. Only bodies the
//! receiver answered 200 to count as delivered ([`Receiver::accepted`]).
//!
//! Every wait is bounded ([`wait_until`]); the receiver binds 127.0.0.1 only, on a port the
//! kernel picks.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use common::{logs_of, run_binary, wait_until, Cluster, Node};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// What the receiver does with a request it has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// 200, empty body: delivered.
    Ok,
    /// 500, empty body: the node must send the same batch again.
    Fail,
    /// No answer for [`STALL`] (longer than any `transmit_timeout` these tests set), then the
    /// connection is closed.
    Stall,
}

/// How long a [`Reply::Stall`] holds a request (or until the receiver goes down).
const STALL: Duration = Duration::from_secs(3);

/// A request the receiver read whole, and what it did with it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    /// The body as JSON (a JSON string holding the raw text if it was not JSON).
    body: Value,
    reply: Reply,
    /// Over HTTPS: the client's certificate (DER) from the connection's handshake.
    client_cert: Option<Vec<u8>>,
}

struct Shared {
    /// The reply once `script` is used up.
    reply: Mutex<Reply>,
    /// Replies for the next requests, in order, before `reply` applies again.
    script: Mutex<VecDeque<Reply>>,
    /// In the order the receiver answered (stalled ones: when read). A reply is written while
    /// this lock is held, so the order here is the order the node saw its answers.
    received: Mutex<Vec<Received>>,
    /// The open connections (clones), shut down when the receiver goes down.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    closing: AtomicBool,
    /// HTTPS: every connection starts with a handshake under this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTPS: why each failed handshake failed (rustls's error, `Debug`), in order.
    handshake_errors: Mutex<Vec<String>>,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length or chunked bodies), or
/// HTTPS with [`Receiver::start_tls`], that records every request body.
struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on a free loopback port and answers 200.
    fn start() -> Receiver {
        Receiver::start_with(None)
    }

    /// [`Receiver::start`] over HTTPS: each connection's handshake under `tls` first.
    fn start_tls(tls: rustls::ServerConfig) -> Receiver {
        Receiver::start_with(Some(Arc::new(tls)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let mut receiver = Receiver {
            port,
            shared: Arc::new(Shared {
                reply: Mutex::new(Reply::Ok),
                script: Mutex::new(VecDeque::new()),
                received: Mutex::new(Vec::new()),
                connections: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                tls,
                handshake_errors: Mutex::new(Vec::new()),
            }),
            acceptor: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: TcpListener) {
        self.shared.closing.store(false, Ordering::SeqCst);
        let shared = Arc::clone(&self.shared);
        self.acceptor = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.closing.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    shared.connections.lock().unwrap().insert(id, clone);
                }
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    serve_connection(stream, &shared);
                    shared.connections.lock().unwrap().remove(&id);
                });
            }
            // The listener closes here.
        }));
    }

    /// The endpoint to configure (a path of its own, so the test sees the node keeps it).
    fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}{ENDPOINT_PATH}", self.port)
    }

    fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// The replies for the next requests, in order; then [`Receiver::set_reply`]'s again.
    fn script(&self, replies: &[Reply]) {
        self.shared
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().copied());
    }

    fn script_left(&self) -> usize {
        self.shared.script.lock().unwrap().len()
    }

    /// Every request read so far.
    fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// HTTPS: the handshakes that failed so far, why each did.
    fn handshake_errors(&self) -> Vec<String> {
        self.shared.handshake_errors.lock().unwrap().clone()
    }

    /// The bodies answered 200, in the order they were answered.
    fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.reply == Reply::Ok)
            .map(|r| r.body)
            .collect()
    }

    /// Closes the listener and every open connection: the node gets connection errors.
    fn down(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wakes the acceptor out of accept(); it sees `closing` and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = acceptor.join();
        for (_, c) in self.shared.connections.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (bounded wait for the port).
    fn up(&mut self) {
        assert!(self.acceptor.is_none(), "the receiver is already up");
        let mut listener = None;
        let bound = wait_until(Duration::from_secs(10), || {
            listener = TcpListener::bind(("127.0.0.1", self.port)).ok();
            listener.is_some()
        });
        assert!(bound, "could not listen on 127.0.0.1:{} again", self.port);
        self.serve(listener.expect("bound"));
    }

    /// One line per request: the reply, the sender and the indexes, for failure messages.
    fn summary(&self) -> String {
        self.received()
            .iter()
            .map(|r| {
                let indexes: Vec<u64> = r.body["payload"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|i| i["index"].as_u64()).collect())
                    .unwrap_or_default();
                format!("{:?} {} {:?}\n", r.reply, r.body["node_id"], indexes)
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

const ENDPOINT_PATH: &str = "/cdc/events";

/// Answers requests on one connection until it closes, the client asks to close, a request
/// stalls, or the receiver goes down. Over HTTPS the handshake comes first; a failed one is
/// recorded and the connection closed.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Some(tls) = &shared.tls else {
        let Ok(socket) = stream.try_clone() else {
            return;
        };
        serve_requests(&mut BufReader::new(stream), shared, None);
        let _ = socket.shutdown(Shutdown::Both);
        return;
    };
    let mut socket = stream;
    let mut conn = rustls::ServerConnection::new(Arc::clone(tls)).expect("a TLS connection");
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut socket) {
            // The rustls error itself when there is one (`NoCertificatesPresented`,
            // `AlertReceived(..)`), else the socket's.
            let why = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                Some(e) => format!("{e:?}"),
                None => format!("{e:?}"),
            };
            shared.handshake_errors.lock().unwrap().push(why);
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
    }
    let client_cert = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec());
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, socket));
    serve_requests(&mut reader, shared, client_cert);
    let tls = reader.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(Shutdown::Both);
}

/// The requests of one connection (see [`serve_connection`]); answers go to the stream under
/// `reader`.
fn serve_requests<S: Read + Write>(
    reader: &mut BufReader<S>,
    shared: &Shared,
    client_cert: Option<Vec<u8>>,
) {
    while let Some(request) = read_request(reader) {
        if shared.closing.load(Ordering::SeqCst) {
            break;
        }
        let reply = {
            let next = shared.script.lock().unwrap().pop_front();
            next.unwrap_or(*shared.reply.lock().unwrap())
        };
        let body = serde_json::from_slice(&request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
        let received = Received {
            method: request.method,
            path: request.path,
            content_type: request.content_type,
            body,
            reply,
            client_cert: client_cert.clone(),
        };
        let status = match reply {
            Reply::Stall => {
                shared.received.lock().unwrap().push(received);
                let until = Instant::now() + STALL;
                while Instant::now() < until && !shared.closing.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            Reply::Ok => "200 OK",
            Reply::Fail => "500 Internal Server Error",
        };
        let close = if request.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n{close}\r\n");
        {
            let mut all = shared.received.lock().unwrap();
            let writer = reader.get_mut();
            if writer
                .write_all(answer.as_bytes())
                .and_then(|_| writer.flush())
                .is_err()
            {
                break;
            }
            all.push(received);
        }
        if request.close {
            break;
        }
    }
}

struct Request {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
    close: bool,
}

/// Reads one HTTP/1.1 request; `None` when the connection ends or the request is malformed.
/// (`100 Continue` goes to the stream under `reader`.)
fn read_request<S: Read + Write>(reader: &mut BufReader<S>) -> Option<Request> {
    const MAX_BODY: usize = 64 << 20;
    let mut line = String::new();
    // A client may send empty lines before a request.
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut close = parts.next() == Some("HTTP/1.0");
    let (mut length, mut chunked, mut expect) = (0usize, false, false);
    let mut content_type = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "content-type" => content_type = value.to_string(),
            "expect" => expect = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if expect {
        let writer = reader.get_mut();
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
        writer.flush().ok()?;
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(line.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return None;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    } else {
        if length > MAX_BODY {
            return None;
        }
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        content_type,
        body,
        close,
    })
}

// ---------------------------------------------------------------------------------------------
// What was received
// ---------------------------------------------------------------------------------------------

/// One payload item of a request.
#[derive(Clone, Debug)]
struct Item {
    index: u64,
    node_id: String,
    events: Vec<Value>,
}

/// The payload items of `bodies`, in order.
fn items(bodies: &[Value]) -> Vec<Item> {
    let mut out = Vec::new();
    for body in bodies {
        let node_id = body["node_id"].as_str().unwrap_or_default().to_string();
        for item in body["payload"].as_array().into_iter().flatten() {
            out.push(Item {
                index: item["index"].as_u64().unwrap_or(0),
                node_id: node_id.clone(),
                events: item["events"].as_array().cloned().unwrap_or_default(),
            });
        }
    }
    out
}

/// The indexes of the items holding an INSERT of row `id` into `table`.
fn insert_indexes(items: &[Item], table: &str, id: i64) -> Vec<u64> {
    items
        .iter()
        .filter(|item| {
            item.events.iter().any(|e| {
                e["op"] == "INSERT" && e["table"] == table && e["new_row_id"].as_i64() == Some(id)
            })
        })
        .map(|item| item.index)
        .collect()
}

/// How many times each index was received.
fn index_counts(items: &[Item]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.index).or_insert(0) += 1;
    }
    counts
}

/// Checks every request received so far against rqlite's envelope (see the module
/// documentation). `node_ids`: the nodes that may have sent.
fn check_envelopes(rx: &Receiver, service_id: Option<&str>, node_ids: &[&str], max_batch: usize) {
    let summary = rx.summary();
    for r in rx.received() {
        let b = &r.body;
        assert_eq!(r.method, "POST", "{b}");
        assert_eq!(r.path, ENDPOINT_PATH, "{b}");
        assert!(
            r.content_type.starts_with("application/json"),
            "Content-Type {:?}: {b}",
            r.content_type
        );
        let node_id = b["node_id"].as_str().unwrap_or_default();
        assert!(
            node_ids.contains(&node_id),
            "node_id {node_id:?} is not one of {node_ids:?}: {b}"
        );
        match service_id {
            Some(s) => assert_eq!(b["service_id"], s, "{b}"),
            None => assert!(b.get("service_id").is_none(), "service_id not set: {b}"),
        }
        let payload = b["payload"]
            .as_array()
            .unwrap_or_else(|| panic!("no payload array: {b}"));
        assert!(
            !payload.is_empty() && payload.len() <= max_batch,
            "{} payload items (max_batch_size {max_batch}): {b}",
            payload.len()
        );
        let mut previous = 0;
        for item in payload {
            let index = item["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("no index: {b}"));
            assert!(
                index > previous,
                "payload indexes not increasing ({previous} then {index}): {b}\nall:\n{summary}"
            );
            previous = index;
            assert!(
                item["commit_timestamp"].as_u64().is_some_and(|t| t > 0),
                "commit_timestamp: {b}"
            );
            let events = item["events"]
                .as_array()
                .unwrap_or_else(|| panic!("no events: {b}"));
            assert!(!events.is_empty(), "an item without events: {b}");
            for e in events {
                assert!(
                    ["INSERT", "UPDATE", "DELETE"].contains(&e["op"].as_str().unwrap_or("")),
                    "op: {e}"
                );
                assert!(e["table"].is_string(), "table: {e}");
            }
        }
    }
}

/// Waits (bounded: 60 s) until the accepted bodies hold an INSERT of every row of `ids` into
/// `table`.
fn wait_for_inserts(rx: &Receiver, table: &str, ids: &[i64], logs: impl Fn() -> String) {
    let missing = || -> Vec<i64> {
        let got = items(&rx.accepted());
        ids.iter()
            .copied()
            .filter(|id| insert_indexes(&got, table, *id).is_empty())
            .collect()
    };
    let ok = wait_until(Duration::from_secs(60), || missing().is_empty());
    assert!(
        ok,
        "no INSERT event delivered for rows {:?} of {table}; received:\n{}\n{}",
        missing(),
        rx.summary(),
        logs()
    );
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// Writes `config` as a CDC configuration file in `dir`; returns its path.
fn config_file(dir: &Path, name: &str, config: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).expect("write the CDC configuration");
    path.to_str().expect("UTF-8 path").to_string()
}

/// `/status`'s `cdc` object (`Null` when there is none).
fn cdc_status(node: &Node) -> Value {
    node.get("/status")
        .json()
        .get("cdc")
        .cloned()
        .unwrap_or(Value::Null)
}

fn cdc_number(node: &Node, key: &str) -> Option<u64> {
    cdc_status(node)[key].as_u64()
}

/// POSTs `body` to `/db/execute?raft_index` (then `query`, e.g. `&transaction`); checks for
/// 200 and returns the answer.
fn execute(node: &Node, query: &str, body: &str) -> Value {
    let a = node.post(&format!("/db/execute?raft_index{query}"), body);
    assert_eq!(a.status, 200, "{body}: {}", a.body);
    a.json()
}

/// The log index of the entry a write became.
fn raft_index(answer: &Value) -> u64 {
    answer["raft_index"]
        .as_u64()
        .filter(|i| *i > 0)
        .unwrap_or_else(|| panic!("no raft_index: {answer}"))
}

/// Inserts row `id` into `t` (one request, one entry); returns the entry's index.
fn insert_row(node: &Node, id: i64) -> u64 {
    let answer = execute(
        node,
        "",
        &format!(r#"[["INSERT INTO t(id, v) VALUES(?, 'x')", {id}]]"#),
    );
    assert_eq!(answer["results"][0]["rows_affected"], 1, "{answer}");
    raft_index(&answer)
}

const CREATE_T: &str = r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]"#;

/// The INSERT event of row `id` of `t` (column `v` is `'x'`).
fn t_insert(id: i64) -> Value {
    json!({"op": "INSERT", "table": "t", "new_row_id": id, "after": {"id": id, "v": "x"}})
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A CA, the receiver's certificate from it (for `localhost` and 127.0.0.1), and a client
/// certificate from it; the CA and the client's files are written for the nodes.
struct Pki {
    dir: tempfile::TempDir,
    ca: rustls::pki_types::CertificateDer<'static>,
    server: (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    /// The client certificate (DER), to compare with what the receiver saw.
    client: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "cdc test CA");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let leaf = |names: &[&str], name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert, key)
        };
        let (server, server_key) = leaf(
            &["localhost", "127.0.0.1"],
            "cdc receiver",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(&[], "cdc sender", ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write a PEM file")
        };
        write("ca.pem", ca.pem());
        write("client.pem", client.pem());
        write("client-key.pem", client_key.serialize_pem());
        Pki {
            ca: ca.der().clone(),
            server: (
                server.der().clone(),
                rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
            ),
            client: client.der().to_vec(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The receiver's TLS: its certificate, and a client certificate from the CA required.
    fn receiver_tls(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("the CA");
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .expect("client verifier");
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(clients)
            .with_single_cert(vec![self.server.0.clone()], self.server.1.clone_key())
            .expect("the receiver's certificate")
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_single_node_sends_each_entrys_row_changes_in_log_order() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "cdc.json",
        &json!({"endpoint": rx.url(), "service_id": "svc-1", "max_batch_delay": "20ms"}),
    );
    let node = Node::start(&["-node-id", "cdc1", "-cdc-config", &cfg]);
    execute(
        &node,
        "",
        r#"["CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB)"]"#,
    );
    // The events expected at each index.
    let mut expected: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let alice = json!({"id": 7, "name": "Alice", "score": 1.5, "photo": "AP8Q"});
    let eight = json!({"id": 8, "name": null, "score": 0.5, "photo": null});

    // Two inserts in one request: two events of one entry, in statement order; a blob in
    // base64 (00 ff 10), NULLs as null.
    let a = execute(
        &node,
        "",
        r#"[["INSERT INTO users(id, name, score, photo) VALUES(?, ?, ?, x'00ff10')", 7, "Alice", 1.5],
            ["INSERT INTO users(id, name, score, photo) VALUES(8, NULL, 0.5, NULL)"]]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![
            json!({"op": "INSERT", "table": "users", "new_row_id": 7, "after": alice}),
            json!({"op": "INSERT", "table": "users", "new_row_id": 8, "after": eight}),
        ],
    );

    let alicia = json!({"id": 7, "name": "Alicia", "score": 2.75, "photo": "AP8Q"});
    let a = execute(
        &node,
        "",
        r#"["UPDATE users SET name = 'Alicia', score = 2.75 WHERE id = 7"]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![
            json!({"op": "UPDATE", "table": "users", "new_row_id": 7, "old_row_id": 7,
                    "before": alice, "after": alicia}),
        ],
    );

    let a = execute(&node, "", r#"["DELETE FROM users WHERE id = 8"]"#);
    expected.insert(
        raft_index(&a),
        vec![json!({"op": "DELETE", "table": "users", "old_row_id": 8, "before": eight})],
    );

    // Without `transaction`, a failing statement changes nothing and the others stay.
    let a = execute(
        &node,
        "",
        r#"["INSERT INTO users(id, name, score) VALUES(9, 'Bob', 3.5)",
            "INSERT INTO users(id, name) VALUES(7, 'dup')",
            "UPDATE users SET name = 'Bobby' WHERE id = 9"]"#,
    );
    assert!(
        a["results"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("UNIQUE")),
        "{a}"
    );
    let bob = json!({"id": 9, "name": "Bob", "score": 3.5, "photo": null});
    let bobby = json!({"id": 9, "name": "Bobby", "score": 3.5, "photo": null});
    expected.insert(
        raft_index(&a),
        vec![
            json!({"op": "INSERT", "table": "users", "new_row_id": 9, "after": bob}),
            json!({"op": "UPDATE", "table": "users", "new_row_id": 9, "old_row_id": 9,
                   "before": bob, "after": bobby}),
        ],
    );

    // A transaction that fails: none of its changes, so no events at all.
    let a = execute(
        &node,
        "&transaction",
        r#"["INSERT INTO users(id, name) VALUES(10, 'Carol')",
            "DELETE FROM users WHERE id = 7",
            "INSERT INTO nosuch VALUES(1)"]"#,
    );
    assert!(a.to_string().contains("no such table: nosuch"), "{a}");
    assert!(
        node.query("SELECT id FROM users ORDER BY id")
            .contains("[[7],[9]]"),
        "the failed transaction changed rows"
    );

    // An entry whose COMMIT SQLite refuses (a full-text table written inside the request's
    // transaction, then the request failing, leaves its pending data behind): the entry
    // applies as a no-op, and its rows' events, queued before the COMMIT, are never sent.
    let a = execute(
        &node,
        "&transaction",
        r#"["INSERT INTO users(id, name) VALUES(13, 'Eve')",
            "CREATE VIRTUAL TABLE ft USING fts5(a)",
            "INSERT INTO ft(ft) VALUES('rebuild')",
            "INSERT INTO nosuch VALUES(1)"]"#,
    );
    assert!(a.to_string().contains("commit refused"), "{a}");
    assert!(
        node.query("SELECT id FROM users ORDER BY id")
            .contains("[[7],[9]]"),
        "the refused entry changed rows"
    );

    // A savepoint rolled back: its insert has no event; the delete after it has.
    let a = execute(
        &node,
        "",
        r#"["SAVEPOINT s1", "INSERT INTO users(id, name) VALUES(11, 'Dan')", "ROLLBACK TO s1",
            "RELEASE s1", "DELETE FROM users WHERE id = 9"]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![json!({"op": "DELETE", "table": "users", "old_row_id": 9, "before": bobby})],
    );

    // A statement that matches no row: an entry without events.
    execute(
        &node,
        "",
        r#"["UPDATE users SET name = 'nobody' WHERE id = 999"]"#,
    );

    let a = execute(
        &node,
        "",
        r#"["INSERT INTO users(id, name, score) VALUES(12, 'Zoë', -1.25)"]"#,
    );
    let last = raft_index(&a);
    expected.insert(
        last,
        vec![json!({"op": "INSERT", "table": "users", "new_row_id": 12,
                    "after": {"id": 12, "name": "Zoë", "score": -1.25, "photo": null}})],
    );

    let delivered = wait_until(Duration::from_secs(30), || {
        items(&rx.accepted()).iter().any(|i| i.index == last)
    });
    assert!(
        delivered,
        "index {last} never delivered; received:\n{}\n{}",
        rx.summary(),
        node.log()
    );
    // The mark reaches the last index (default interval: 1 s); whatever the node would send
    // for earlier entries it has sent by then.
    let marked = wait_until(Duration::from_secs(15), || {
        cdc_number(&node, "high_watermark").is_some_and(|h| h >= last)
    });
    assert!(marked, "high_watermark: {}", cdc_status(&node));

    check_envelopes(&rx, Some("svc-1"), &["cdc1"], 10);
    assert!(
        rx.received().iter().all(|r| r.reply == Reply::Ok),
        "{}",
        rx.summary()
    );
    let got = items(&rx.accepted());
    let indexes: Vec<u64> = got.iter().map(|i| i.index).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "indexes not strictly increasing across requests: {indexes:?}"
    );
    let received: BTreeMap<u64, Vec<Value>> =
        got.into_iter().map(|i| (i.index, i.events)).collect();
    assert_eq!(received, expected, "received:\n{}", rx.summary());

    // /status agrees with what the receiver saw.
    let answered_200 = || {
        rx.received()
            .iter()
            .filter(|r| r.reply == Reply::Ok)
            .count() as u64
    };
    assert!(
        wait_until(Duration::from_secs(10), || cdc_number(
            &node,
            "num_transmits"
        ) == Some(answered_200())),
        "num_transmits != {} requests answered 200: {}",
        answered_200(),
        cdc_status(&node)
    );
    let s = cdc_status(&node);
    assert_eq!(s["endpoint"], rx.url(), "{s}");
    assert_eq!(s["sent_through"], last, "{s}");
    assert_eq!(s["num_transmit_failures"], 0, "{s}");
    assert_eq!(s["num_dropped"], 0, "{s}");
    assert!(s["queue_length"].is_u64(), "{s}");
    let h = s["high_watermark"].as_u64().unwrap_or(0);
    let commit = node.get("/status").json()["store"]["raft"]["commit_index"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        h >= last && h <= commit,
        "high_watermark {h} not in [{last}, commit index {commit}]: {s}"
    );
}

#[test]
fn the_table_filter_and_rowid_only_mode() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    // A regular expression matched anywhere in the name: `keep_a` and `zz_keeep` pass,
    // `kp_other` does not.
    let cfg = config_file(
        dir.path(),
        "cdc.json",
        &json!({"endpoint": rx.url(), "row_ids_only": true, "table_filter": "ke+p",
                "max_batch_delay": 20_000_000u64}),
    );
    let node = Node::start(&["-node-id", "filter1", "-cdc-config", &cfg]);
    execute(
        &node,
        "",
        r#"["CREATE TABLE keep_a (id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE zz_keeep (v TEXT)",
            "CREATE TABLE kp_other (id INTEGER PRIMARY KEY, v TEXT)"]"#,
    );
    let mut expected: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let a = execute(
        &node,
        "",
        r#"["INSERT INTO keep_a(id, v) VALUES(1, 'a')", "INSERT INTO kp_other(id, v) VALUES(1, 'x')",
            "INSERT INTO zz_keeep(v) VALUES('z')"]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![
            json!({"op": "INSERT", "table": "keep_a", "new_row_id": 1}),
            json!({"op": "INSERT", "table": "zz_keeep", "new_row_id": 1}),
        ],
    );
    // Only a table the filter leaves out: an entry without events.
    execute(
        &node,
        "",
        r#"["INSERT INTO kp_other(id, v) VALUES(2, 'y')", "UPDATE kp_other SET v = 'w'"]"#,
    );
    let a = execute(
        &node,
        "",
        r#"["UPDATE keep_a SET v = 'b' WHERE id = 1", "DELETE FROM kp_other WHERE id = 1"]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![json!({"op": "UPDATE", "table": "keep_a", "new_row_id": 1, "old_row_id": 1})],
    );
    // An update that moves the row: old and new rowids differ.
    let a = execute(&node, "", r#"["UPDATE keep_a SET id = 5 WHERE id = 1"]"#);
    expected.insert(
        raft_index(&a),
        vec![json!({"op": "UPDATE", "table": "keep_a", "new_row_id": 5, "old_row_id": 1})],
    );
    let a = execute(
        &node,
        "",
        r#"["DELETE FROM zz_keeep", "DELETE FROM kp_other"]"#,
    );
    expected.insert(
        raft_index(&a),
        vec![json!({"op": "DELETE", "table": "zz_keeep", "old_row_id": 1})],
    );
    let a = execute(&node, "", r#"["INSERT INTO keep_a(id, v) VALUES(9, 'z')"]"#);
    let last = raft_index(&a);
    expected.insert(
        last,
        vec![json!({"op": "INSERT", "table": "keep_a", "new_row_id": 9})],
    );

    let delivered = wait_until(Duration::from_secs(30), || {
        items(&rx.accepted()).iter().any(|i| i.index == last)
    });
    assert!(
        delivered,
        "index {last} never delivered; received:\n{}\n{}",
        rx.summary(),
        node.log()
    );
    let marked = wait_until(Duration::from_secs(15), || {
        cdc_number(&node, "high_watermark").is_some_and(|h| h >= last)
    });
    assert!(marked, "high_watermark: {}", cdc_status(&node));

    check_envelopes(&rx, None, &["filter1"], 10);
    let got = items(&rx.accepted());
    let counts = index_counts(&got);
    assert!(
        counts.values().all(|n| *n == 1),
        "an index twice: {counts:?}"
    );
    let received: BTreeMap<u64, Vec<Value>> =
        got.into_iter().map(|i| (i.index, i.events)).collect();
    assert_eq!(received, expected, "received:\n{}", rx.summary());
}

#[test]
fn a_failing_then_stalling_receiver_loses_and_repeats_nothing() {
    let rx = Receiver::start();
    rx.script(&[
        Reply::Fail,
        Reply::Fail,
        Reply::Fail,
        Reply::Stall,
        Reply::Stall,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "cdc.json",
        &json!({
            "endpoint": rx.url(),
            "max_batch_size": 5,
            "max_batch_delay": "20ms",
            // 1 s, in nanoseconds as Go writes a time.Duration.
            "transmit_timeout": 1_000_000_000u64,
            "transmit_retry_policy": "linear",
            "transmit_min_backoff": "100ms",
            "transmit_max_backoff": "300ms",
        }),
    );
    let node = Node::start(&["-node-id", "flaky1", "-cdc-config", &cfg]);
    execute(&node, "", CREATE_T);
    let ids: Vec<i64> = (1..=30).collect();
    let written: BTreeMap<i64, u64> = ids.iter().map(|&id| (id, insert_row(&node, id))).collect();
    wait_for_inserts(&rx, "t", &ids, || node.log());
    assert_eq!(rx.script_left(), 0, "the receiver's script was not used up");

    check_envelopes(&rx, None, &["flaky1"], 5);
    let all = rx.received();
    let count = |reply: Reply| all.iter().filter(|r| r.reply == reply).count();
    assert!(
        count(Reply::Fail) >= 3 && count(Reply::Stall) >= 2,
        "{}",
        rx.summary()
    );
    // A request that was not answered 200 is followed by the same batch again.
    for pair in all.windows(2) {
        if pair[0].reply != Reply::Ok {
            assert_eq!(
                pair[1].body["payload"],
                pair[0].body["payload"],
                "a refused batch was not sent again as it was:\n{}",
                rx.summary()
            );
        }
    }
    // Every row's INSERT delivered exactly once, at its entry's index; no index twice; and
    // in log order across requests.
    let got = items(&rx.accepted());
    for (&id, &index) in &written {
        assert_eq!(
            insert_indexes(&got, "t", id),
            vec![index],
            "row {id}:\n{}",
            rx.summary()
        );
    }
    let indexes: Vec<u64> = got.iter().map(|i| i.index).collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "delivered indexes not strictly increasing: {indexes:?}"
    );
    // Nothing but those inserts.
    let row_at: BTreeMap<u64, i64> = written.iter().map(|(&id, &index)| (index, id)).collect();
    for item in &got {
        let id = row_at.get(&item.index).copied();
        assert!(id.is_some(), "index {} is no insert's", item.index);
        assert_eq!(
            item.events,
            vec![t_insert(id.unwrap_or(0))],
            "index {}",
            item.index
        );
    }
    let s = cdc_status(&node);
    assert!(
        s["num_transmit_failures"].as_u64().is_some_and(|n| n >= 5),
        "3 answers of 500 and 2 stalls, each a failed attempt: {s}"
    );
    assert_eq!(s["num_dropped"], 0, "{s}");
    let answered_200 = count(Reply::Ok) as u64;
    assert!(
        wait_until(Duration::from_secs(10), || cdc_number(
            &node,
            "num_transmits"
        ) == Some(answered_200)),
        "num_transmits != {answered_200}: {}",
        cdc_status(&node)
    );
}

#[test]
fn events_wait_for_a_receiver_that_restarts_and_survive_a_node_restart() {
    let mut rx = Receiver::start();
    // The URL form: defaults for everything else.
    let url = rx.url();
    let args = ["-node-id", "keep1", "-cdc-config", &url];
    let mut node = Node::start(&args);
    let _temp = node.take_temp();
    let data = node.data_dir.clone();
    assert_eq!(cdc_status(&node)["endpoint"], url);
    execute(&node, "", CREATE_T);
    let mut written: BTreeMap<i64, u64> = BTreeMap::new();

    // Delivered while the receiver is up.
    for id in 1..=5 {
        written.insert(id, insert_row(&node, id));
    }
    wait_for_inserts(&rx, "t", &[1, 2, 3, 4, 5], || node.log());

    // The receiver goes down: the entries wait in the queue; then it comes back.
    rx.down();
    let failures_before = cdc_number(&node, "num_transmit_failures").unwrap_or(0);
    for id in 6..=15 {
        written.insert(id, insert_row(&node, id));
    }
    let waiting = wait_until(Duration::from_secs(30), || {
        let s = cdc_status(&node);
        s["queue_length"].as_u64().is_some_and(|q| q >= 10)
            && s["num_transmit_failures"]
                .as_u64()
                .is_some_and(|f| f > failures_before)
    });
    assert!(
        waiting,
        "entries not queued, or not attempted, while the receiver was down: {}",
        cdc_status(&node)
    );
    rx.up();
    wait_for_inserts(&rx, "t", &(1..=15).collect::<Vec<_>>(), || node.log());
    // Recorded as delivered: nothing up to here may be sent again after the restart.
    let marked = wait_until(Duration::from_secs(15), || {
        cdc_number(&node, "high_watermark").is_some_and(|h| h >= written[&15])
    });
    assert!(marked, "high_watermark: {}", cdc_status(&node));

    // Down again; entries queued; the node stops; the receiver comes back; the node restarts
    // on its data and sends what it queued before it stopped.
    rx.down();
    for id in 16..=25 {
        written.insert(id, insert_row(&node, id));
    }
    let queued = wait_until(Duration::from_secs(30), || {
        cdc_number(&node, "queue_length").is_some_and(|q| q >= 10)
    });
    assert!(queued, "entries not queued: {}", cdc_status(&node));
    let status = node.stop();
    assert!(status.success(), "{status:?}:\n{}", node.log());
    let before_restart = rx.received().len();
    rx.up();
    let node = Node::start_in(&data, &args);
    wait_for_inserts(&rx, "t", &(1..=25).collect::<Vec<_>>(), || node.log());
    for id in 26..=30 {
        written.insert(id, insert_row(&node, id));
    }
    wait_for_inserts(&rx, "t", &(1..=30).collect::<Vec<_>>(), || node.log());

    check_envelopes(&rx, None, &["keep1"], 10);
    let got = items(&rx.accepted());
    let counts = index_counts(&got);
    assert!(
        counts.values().all(|n| *n == 1),
        "an index delivered twice: {counts:?}\n{}",
        rx.summary()
    );
    for (&id, &index) in &written {
        assert_eq!(insert_indexes(&got, "t", id), vec![index], "row {id}");
    }
    let after: Vec<u64> = items(
        &rx.received()[before_restart..]
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>(),
    )
    .iter()
    .map(|i| i.index)
    .collect();
    assert!(
        after.iter().all(|i| *i > written[&15]),
        "the restarted node sent entries at or below the mark {}: {after:?}",
        written[&15]
    );
}

#[test]
fn a_leader_kill_loses_no_event_and_repeats_none_below_the_high_water_mark() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "cdc.json",
        &json!({
            "endpoint": rx.url(),
            "high_watermark_interval": "200ms",
            "max_batch_delay": "20ms",
            "transmit_timeout": "2s",
            "transmit_retry_policy": 1,
            "transmit_min_backoff": "100ms",
            "transmit_max_backoff": "500ms",
        }),
    );
    let mut c = Cluster::start(3, &["-cdc-config", &cfg]);
    let leader = c.leader();
    let first_id = c.nodes[leader].get("/status").json()["store"]["node_id"]
        .as_str()
        .expect("node_id")
        .to_string();
    c.nodes[leader].execute(CREATE_T);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let running = |c: &Cluster| -> Vec<String> {
        c.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.http_addr.clone())
            .collect()
    };
    // The index each row was inserted at, when the answer says this write inserted it.
    let mut inserted_at: BTreeMap<i64, u64> = BTreeMap::new();
    let mut write = |addrs: &[String], id: i64| {
        let answer = insert_retrying(&client, addrs, id);
        if answer["results"][0]["rows_affected"] == 1 {
            inserted_at.insert(id, raft_index(&answer));
        }
    };

    let addrs = running(&c);
    for id in 1..=20 {
        write(&addrs, id);
    }
    wait_for_inserts(&rx, "t", &(1..=20).collect::<Vec<_>>(), || c.logs());
    // The receiver refuses while these are written: the first leader cannot deliver them, so
    // the new leader must send them from its own queue.
    rx.set_reply(Reply::Fail);
    for id in 21..=30 {
        write(&addrs, id);
    }
    let before_kill = rx.received();
    c.nodes[leader].kill();
    rx.set_reply(Reply::Ok);
    assert!(
        before_kill
            .iter()
            .all(|r| r.body["node_id"] == first_id.as_str()),
        "only the leader ({first_id}) sends:\n{}",
        rx.summary()
    );
    let addrs = running(&c);
    for id in 31..=60 {
        write(&addrs, id);
    }
    let ids: Vec<i64> = (1..=60).collect();
    wait_for_inserts(&rx, "t", &ids, || c.logs());

    check_envelopes(&rx, None, &["node1", "node2", "node3"], 10);
    let got = items(&rx.accepted());
    let first_max = got
        .iter()
        .filter(|i| i.node_id == first_id)
        .map(|i| i.index)
        .max()
        .unwrap_or(0);
    for (index, n) in index_counts(&got) {
        assert!(
            n == 1 || index <= first_max,
            "index {index} delivered {n} times, above the last index the first leader \
             delivered ({first_max}):\n{}",
            rx.summary()
        );
    }
    // Every node builds the same events for an entry: copies agree.
    let mut by_index: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for item in &got {
        if let Some(previous) = by_index.insert(item.index, item.events.clone()) {
            assert_eq!(
                previous, item.events,
                "two versions of index {}",
                item.index
            );
        }
    }
    // Each row inserted once: one index with its INSERT, the write's own when the answer
    // said it inserted.
    for id in 1..=60 {
        let indexes: BTreeSet<u64> = insert_indexes(&got, "t", id).into_iter().collect();
        assert_eq!(indexes.len(), 1, "row {id} inserted at {indexes:?}");
        if let Some(at) = inserted_at.get(&id) {
            assert!(
                indexes.contains(at),
                "row {id}: {indexes:?}, written at {at}"
            );
        }
    }
    // What the first leader could not deliver came from another node.
    for id in 21..=30 {
        let index = insert_indexes(&got, "t", id)[0];
        assert!(
            got.iter()
                .any(|i| i.index == index && i.node_id != first_id),
            "row {id} (index {index}) was not sent by the new leader:\n{}",
            rx.summary()
        );
    }
    // The mark catches up with the last insert on both survivors, and they agree on it.
    let last = insert_indexes(&got, "t", 60)[0];
    let survivors: Vec<&Node> = c.nodes.iter().filter(|n| n.is_running()).collect();
    let agreed = wait_until(Duration::from_secs(30), || {
        let marks: Vec<Option<u64>> = survivors
            .iter()
            .map(|n| cdc_number(n, "high_watermark"))
            .collect();
        marks.iter().all(|m| m.is_some_and(|m| m >= last)) && marks.windows(2).all(|w| w[0] == w[1])
    });
    assert!(
        agreed,
        "high_watermark did not reach {last} on both survivors: {:?}\n{}",
        survivors.iter().map(|n| cdc_status(n)).collect::<Vec<_>>(),
        logs_of(&c.nodes)
    );
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    assert!(
        cdc_number(&c.nodes[new_leader], "sent_through").is_some_and(|s| s >= last),
        "{}",
        cdc_status(&c.nodes[new_leader])
    );
}

/// Inserts row `id` of `t` through whichever of `addrs` takes it (followers forward),
/// retrying while a leader is elected (bounded: 60 s). `INSERT OR IGNORE` with an explicit id
/// makes a retry of a write that did commit harmless. Returns the answer.
fn insert_retrying(client: &reqwest::blocking::Client, addrs: &[String], id: i64) -> Value {
    let body = format!(r#"[["INSERT OR IGNORE INTO t(id, v) VALUES(?, 'x')", {id}]]"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let addr = &addrs[attempt % addrs.len()];
        let last_error = match client
            .post(format!("http://{addr}/db/execute?raft_index"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().unwrap_or_default();
                if status == 200 {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        if v["results"][0].get("error").is_none()
                            && v["results"][0]["rows_affected"].is_u64()
                        {
                            return v;
                        }
                    }
                }
                format!("{status} {text}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "row {id} not written within 60 s: {last_error}"
        );
        // Retry pacing during an election, not a synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

#[test]
fn stdout_is_an_endpoint() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The test kit discards a node's stdout: a wrapper sends it to a file.
    let out = dir.path().join("stdout.txt");
    let wrapper = dir.path().join("raftlited-stdout");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" >>'{}'\n",
            common::BIN,
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let args = ["-node-id", "out1", "-cdc-config", "stdout"];
    // A freshly written script can be "busy" for an instant while another test's child
    // forks; a few bounded tries.
    let mut spawned = Err(String::new());
    for _ in 0..5 {
        spawned = Node::spawn_program(&wrapper, &data, &args, &[]);
        match &spawned {
            Err(log) if log.contains("Text file busy") => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => break,
        }
    }
    let node = spawned.unwrap_or_else(|log| panic!("node did not start:\n{log}"));
    node.wait_ready();
    assert_eq!(cdc_status(&node)["endpoint"], "stdout");
    execute(&node, "", CREATE_T);
    let index = insert_row(&node, 1);

    let envelope = || -> Option<Value> {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
            .find(|v| {
                v["payload"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|i| i["index"] == index))
            })
    };
    let seen = wait_until(Duration::from_secs(30), || envelope().is_some());
    assert!(
        seen,
        "no envelope line for index {index} on stdout:\n{}\n{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        node.log()
    );
    let e = envelope().expect("seen");
    assert_eq!(e["node_id"], "out1", "{e}");
    assert!(e.get("service_id").is_none(), "{e}");
    let item = e["payload"]
        .as_array()
        .and_then(|p| p.iter().find(|i| i["index"] == index))
        .expect("the item");
    assert_eq!(item["events"], json!([t_insert(1)]), "{e}");
    assert!(
        item["commit_timestamp"].as_u64().is_some_and(|t| t > 0),
        "{e}"
    );
}

#[test]
fn a_bad_cdc_configuration_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = "http://127.0.0.1:9/cdc";
    let cases: [(&str, Value, &[&str]); 4] = [
        (
            "unknown key",
            json!({"endpoint": endpoint, "no_such_key": true}),
            &["no_such_key"],
        ),
        (
            "missing endpoint",
            json!({"service_id": "s"}),
            &["endpoint"],
        ),
        (
            "bad regex",
            json!({"endpoint": endpoint, "table_filter": "users("}),
            &["table_filter", "users("],
        ),
        (
            "bad duration",
            json!({"endpoint": endpoint, "max_batch_delay": "soon"}),
            &["max_batch_delay", "soon"],
        ),
    ];
    for (i, (what, config, names)) in cases.iter().enumerate() {
        let cfg = config_file(dir.path(), &format!("bad{i}.json"), config);
        let data = dir.path().join(format!("data{i}"));
        let (code, out) = run_binary(
            &[
                "-http-addr",
                "127.0.0.1:0",
                "-raft-addr",
                "127.0.0.1:0",
                "-cdc-config",
                &cfg,
                data.to_str().unwrap(),
            ],
            Duration::from_secs(20),
        );
        assert!(
            matches!(code, Some(c) if c != 0),
            "{what}: exit {code:?} (None: still running after 20 s):\n{out}"
        );
        assert!(
            names.iter().any(|n| out.contains(n)),
            "{what}: the message names none of {names:?}:\n{out}"
        );
        assert!(
            !out.contains("not supported yet"),
            "{what}: refused as unsupported, not for its configuration:\n{out}"
        );
    }
    // The same command line with a good file starts.
    let cfg = config_file(dir.path(), "good.json", &json!({"endpoint": endpoint}));
    let node = Node::start(&["-cdc-config", &cfg]);
    assert_eq!(cdc_status(&node)["endpoint"], endpoint);
}

#[test]
fn without_a_cdc_configuration_status_has_no_cdc_section() {
    let node = Node::start(&[]);
    let status = node.get("/status").json();
    assert!(status["store"].is_object(), "{status}");
    assert!(status.get("cdc").is_none(), "{status}");
}

#[test]
fn a_batch_whose_retries_run_out_is_dropped_and_counted() {
    const MAX_RETRIES: usize = 2;
    let rx = Receiver::start();
    rx.set_reply(Reply::Fail);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "cdc.json",
        &json!({
            "endpoint": rx.url(),
            "max_batch_delay": "20ms",
            "transmit_max_retries": MAX_RETRIES,
            "transmit_retry_policy": "exponential",
            "transmit_min_backoff": "50ms",
            "transmit_max_backoff": "100ms",
        }),
    );
    let node = Node::start(&["-node-id", "drop1", "-cdc-config", &cfg]);
    execute(&node, "", CREATE_T);
    let dropped: Vec<u64> = (1..=3).map(|id| insert_row(&node, id)).collect();
    let given_up = wait_until(Duration::from_secs(30), || {
        cdc_number(&node, "num_dropped") == Some(3)
    });
    assert!(
        given_up,
        "3 entries not dropped: {}\n{}",
        cdc_status(&node),
        rx.summary()
    );
    rx.set_reply(Reply::Ok);
    let kept: Vec<u64> = (4..=5).map(|id| insert_row(&node, id)).collect();
    wait_for_inserts(&rx, "t", &[4, 5], || node.log());

    check_envelopes(&rx, None, &["drop1"], 10);
    let got = items(&rx.accepted());
    let delivered: BTreeSet<u64> = got.iter().map(|i| i.index).collect();
    assert_eq!(
        delivered,
        kept.iter().copied().collect::<BTreeSet<u64>>(),
        "dropped entries sent again, or kept ones lost:\n{}",
        rx.summary()
    );
    // Each refused batch was tried at most 1 + transmit_max_retries times, and every dropped
    // entry was tried.
    let refused: Vec<Value> = rx
        .received()
        .iter()
        .filter(|r| r.reply == Reply::Fail)
        .map(|r| r.body["payload"].clone())
        .collect();
    let mut attempts: Vec<(Value, usize)> = Vec::new();
    for payload in &refused {
        match attempts.iter_mut().find(|(p, _)| p == payload) {
            Some((_, n)) => *n += 1,
            None => attempts.push((payload.clone(), 1)),
        }
    }
    assert!(
        attempts.iter().all(|(_, n)| *n <= MAX_RETRIES + 1),
        "a batch tried more than {} times:\n{}",
        MAX_RETRIES + 1,
        rx.summary()
    );
    let tried: BTreeSet<u64> = items(
        &refused
            .iter()
            .map(|p| json!({"payload": p}))
            .collect::<Vec<_>>(),
    )
    .iter()
    .map(|i| i.index)
    .collect();
    for index in &dropped {
        assert!(
            tried.contains(index),
            "entry {index} never tried:\n{}",
            rx.summary()
        );
    }
    let s = cdc_status(&node);
    assert_eq!(s["num_dropped"], 3, "{s}");
    assert_eq!(s["num_transmit_failures"], refused.len(), "{s}");
}

/// The harness itself, without a node: the receiver answers 200 and 500 (on a kept-alive
/// connection), stalls past a client's timeout, reads chunked bodies, refuses connections while
/// down and answers again on the same port once up.
#[test]
fn the_test_receiver_answers_refuses_stalls_and_restarts() {
    fn post(url: &str, body: reqwest::blocking::Body) -> Result<u16, String> {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(700))
            .build()
            .unwrap()
            .post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
    let mut rx = Receiver::start();
    let url = rx.url();
    rx.script(&[Reply::Fail, Reply::Stall]);
    assert_eq!(post(&url, r#"{"n":1}"#.into()), Ok(500));
    let stalled = Instant::now();
    assert!(post(&url, r#"{"n":2}"#.into()).is_err(), "a stall answers");
    assert!(stalled.elapsed() < STALL, "the client's timeout ended it");
    // Kept-alive connection of one client for two requests.
    let client = reqwest::blocking::Client::new();
    for n in [3, 4] {
        let status = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200);
    }
    // A body of unknown length goes chunked.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(br#"{"n":5}"#.to_vec()));
    assert_eq!(post(&url, chunked), Ok(200));
    rx.down();
    assert!(post(&url, "{}".into()).is_err(), "down, yet answered");
    rx.up();
    assert_eq!(post(&url, r#"{"n":6}"#.into()), Ok(200));
    let seen: Vec<(Value, Reply)> = rx
        .received()
        .into_iter()
        .map(|r| {
            assert_eq!(
                (r.method.as_str(), r.path.as_str()),
                ("POST", ENDPOINT_PATH)
            );
            assert!(r.content_type.starts_with("application/json"));
            (r.body["n"].clone(), r.reply)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!(1), Reply::Fail),
            (json!(2), Reply::Stall),
            (json!(3), Reply::Ok),
            (json!(4), Reply::Ok),
            (json!(5), Reply::Ok),
            (json!(6), Reply::Ok),
        ]
    );
    assert_eq!(rx.accepted().len(), 4);
}

/// The `tls` settings against a receiver that serves HTTPS and requires a client certificate
/// from its CA. One node per setting, all at once, told apart by `node_id`: the CA and a client
/// certificate (delivered); the same with a `server_name` the receiver's certificate does not
/// hold (refused by the node); no client certificate (refused by the receiver); no CA but
/// `insecure_skip_verify` (delivered).
#[test]
fn the_endpoint_can_be_https_with_its_ca_and_a_client_certificate() {
    let pki = Pki::new();
    let rx = Receiver::start_tls(pki.receiver_tls());
    assert!(rx.url().starts_with("https://127.0.0.1:"), "{}", rx.url());
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client-key.pem"),
    );
    let cases = [
        (
            "tls-ca",
            json!({"ca_cert_file": ca, "cert_file": cert, "key_file": key}),
        ),
        (
            "tls-name",
            json!({"ca_cert_file": ca, "cert_file": cert, "key_file": key,
                   "server_name": "elsewhere.example"}),
        ),
        ("tls-anon", json!({"ca_cert_file": ca})),
        (
            "tls-skip",
            json!({"insecure_skip_verify": true, "cert_file": cert, "key_file": key}),
        ),
    ];
    let nodes: Vec<Node> = cases
        .iter()
        .map(|(id, tls)| {
            let cfg = config_file(
                pki.dir.path(),
                &format!("{id}.json"),
                &json!({
                    "endpoint": rx.url(),
                    "tls": tls,
                    "max_batch_delay": "20ms",
                    "transmit_timeout": "2s",
                    "transmit_min_backoff": "100ms",
                    "transmit_max_backoff": "100ms",
                }),
            );
            let node = Node::start(&["-node-id", id, "-cdc-config", &cfg]);
            execute(&node, "", CREATE_T);
            insert_row(&node, 1);
            node
        })
        .collect();
    let node = |id: &str| &nodes[cases.iter().position(|c| c.0 == id).expect("a case")];
    let logs = || logs_of(&nodes);

    // Delivered by the two that trust the receiver (its CA, or anything) and present the
    // client certificate.
    let delivered_by = |id: &str| {
        items(&rx.accepted())
            .iter()
            .any(|i| i.node_id == id && i.events == vec![t_insert(1)])
    };
    let delivered = wait_until(Duration::from_secs(30), || {
        delivered_by("tls-ca") && delivered_by("tls-skip")
    });
    assert!(
        delivered,
        "not delivered over HTTPS; received:\n{}handshake errors: {:?}\n{}",
        rx.summary(),
        rx.handshake_errors(),
        logs()
    );
    // The other two keep failing: the node refuses the receiver's certificate for the name
    // it was told, or the receiver refuses a client without a certificate.
    let failing = wait_until(Duration::from_secs(30), || {
        ["tls-name", "tls-anon"]
            .iter()
            .all(|id| cdc_number(node(id), "num_transmit_failures").is_some_and(|n| n >= 2))
    });
    assert!(
        failing,
        "failures not counted: {} {}\n{}",
        cdc_status(node("tls-name")),
        cdc_status(node("tls-anon")),
        logs()
    );

    check_envelopes(&rx, None, &["tls-ca", "tls-skip"], 10);
    for r in rx.received() {
        assert!(
            r.client_cert.as_deref() == Some(pki.client.as_slice()),
            "a request without the client certificate: {}",
            r.body
        );
    }
    let errors = rx.handshake_errors();
    assert!(
        errors.iter().any(|e| e.contains("NoCertificatesPresented")),
        "the receiver never refused a client without a certificate: {errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("AlertReceived")),
        "no node refused the receiver's certificate: {errors:?}"
    );
    for id in ["tls-name", "tls-anon"] {
        let s = cdc_status(node(id));
        assert_eq!(s["num_transmits"], 0, "{id}: {s}");
        assert_eq!(s["sent_through"], 0, "{id}: {s}");
        assert_eq!(s["queue_length"], 1, "{id}: the event still waits: {s}");
    }
    for id in ["tls-ca", "tls-skip"] {
        let s = cdc_status(node(id));
        assert_eq!(s["num_transmit_failures"], 0, "{id}: {s}");
    }
}

/// The crash point between queueing an entry's events and committing the entry: the node
/// dies with the events durable in its queue and the row not in its database. After the
/// restart the entry is applied again (queued again, replacing what was there): one row, and
/// one delivery of its event.
#[cfg(feature = "failpoints")]
#[test]
fn a_node_killed_after_queueing_an_entrys_events_before_its_commit_sends_them_once() {
    const POINT: &str = "apply::cdc_queued_before_commit";
    let rx = Receiver::start();
    let temp = tempfile::tempdir().unwrap();
    let cfg = config_file(
        temp.path(),
        "cdc.json",
        &json!({"endpoint": rx.url(), "max_batch_delay": "20ms",
                "high_watermark_interval": "200ms"}),
    );
    let data = temp.path().join("data");
    let args = ["-node-id", "crash1", "-cdc-config", &cfg];
    let c_insert = |rowid: i64, v: &str| {
        let after = json!({ "v": v });
        json!({"op": "INSERT", "table": "c", "new_row_id": rowid, "after": after})
    };
    // Every write entry passes the point, events or not: the table comes from a node without
    // it. (A rowid table without a key: an insert applied twice would be two rows.)
    let mut node = Node::start_in(&data, &args);
    execute(&node, "", r#"["CREATE TABLE c (v TEXT)"]"#);
    let status = node.stop();
    assert!(status.success(), "{status:?}:\n{}", node.log());

    // Whatever the node might send before it dies is refused, so only what it sends after
    // the restart can count as delivered.
    rx.set_reply(Reply::Fail);
    let mut node =
        Node::start_in_with_env(&data, &args, &[("FAILPOINTS", &format!("{POINT}=return"))]);
    let url = node.url("/db/execute?raft_index");
    let write = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .post(url)
            .header("Content-Type", "application/json")
            .body(r#"["INSERT INTO c(v) VALUES('once')"]"#)
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
            .map_err(|e| e.to_string())
    });
    let died = node.wait_for_exit(Duration::from_secs(30));
    let log = node.log();
    assert!(died.is_some(), "the node never reached {POINT}:\n{log}");
    assert!(
        log.contains(&format!("failpoint {POINT}: killing the process")),
        "the node died, but not at {POINT} ({died:?}):\n{log}"
    );
    let answer = write.join().expect("the writer thread");
    assert!(
        !matches!(&answer, Ok((200, _))),
        "the write was answered 200 by a node that died before committing it: {answer:?}"
    );

    // What the crash left: the entry's event durable in the queue, its row not in the
    // database. (Read-only connections: nothing is checkpointed or changed.)
    let read = |file: &str, sql: &str| -> Vec<(i64, String)> {
        let conn =
            raftlite_ffi::Connection::open(data.join(file), raftlite_ffi::OpenFlags::READ_ONLY)
                .unwrap_or_else(|e| panic!("open {file}: {e}"));
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows = Vec::new();
        while stmt
            .step()
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .is_row()
        {
            let text = String::from_utf8_lossy(stmt.column_text(1)).into_owned();
            rows.push((stmt.column_i64(0), text));
        }
        rows
    };
    let queued = read("cdc/queue.db", "SELECT idx, events FROM entries");
    let queued_events: Vec<Value> = queued
        .iter()
        .map(|(_, events)| serde_json::from_str(events).expect("queued events are JSON"))
        .collect();
    assert_eq!(
        queued_events,
        vec![json!([c_insert(1, "once")])],
        "the queue: {queued:?}"
    );
    assert_eq!(
        read("db.sqlite", "SELECT count(*), '' FROM c"),
        vec![(0, String::new())],
        "the row was committed before the crash point"
    );

    rx.set_reply(Reply::Ok);
    let node = Node::start_in(&data, &args);
    let rows = || node.query("SELECT rowid, v FROM c ORDER BY rowid");
    let applied = wait_until(Duration::from_secs(30), || rows().contains("once"));
    assert!(
        applied,
        "the entry was not applied after the restart: {}\n{}",
        rows(),
        node.log()
    );
    let values =
        serde_json::from_str::<Value>(&rows()).expect("JSON")["results"][0]["values"].clone();
    assert_eq!(values, json!([[1, "once"]]), "{}", node.log());

    let delivered = |rowid: i64| {
        let got = items(&rx.accepted());
        insert_indexes(&got, "c", rowid)
    };
    let sent = wait_until(Duration::from_secs(30), || !delivered(1).is_empty());
    assert!(
        sent,
        "the crashed entry's event never delivered:\n{}\n{}",
        rx.summary(),
        node.log()
    );
    let crashed_at = delivered(1)[0];
    let mut later = Vec::new();
    for (rowid, v) in [(2, "two"), (3, "three")] {
        let a = execute(&node, "", &format!(r#"["INSERT INTO c(v) VALUES('{v}')"]"#));
        later.push((rowid, v, raft_index(&a)));
    }
    let last = later[1].2;
    let all = wait_until(Duration::from_secs(30), || {
        later
            .iter()
            .all(|(rowid, _, _)| !delivered(*rowid).is_empty())
    });
    assert!(
        all,
        "later inserts not delivered:\n{}\n{}",
        rx.summary(),
        node.log()
    );
    // Once recorded as delivered, nothing up to the last insert may be sent again.
    let marked = wait_until(Duration::from_secs(15), || {
        cdc_number(&node, "high_watermark").is_some_and(|h| h >= last)
    });
    assert!(marked, "high_watermark: {}", cdc_status(&node));

    check_envelopes(&rx, None, &["crash1"], 10);
    let got = items(&rx.accepted());
    let counts = index_counts(&got);
    assert!(
        counts.values().all(|n| *n == 1),
        "an index delivered twice: {counts:?}\n{}",
        rx.summary()
    );
    let expected: BTreeMap<u64, Vec<Value>> =
        std::iter::once((crashed_at, vec![c_insert(1, "once")]))
            .chain(
                later
                    .iter()
                    .map(|(rowid, v, index)| (*index, vec![c_insert(*rowid, v)])),
            )
            .collect();
    let received: BTreeMap<u64, Vec<Value>> =
        got.into_iter().map(|i| (i.index, i.events)).collect();
    assert_eq!(received, expected, "received:\n{}", rx.summary());
    assert!(crashed_at < later[0].2, "{crashed_at} {later:?}");
    let values =
        serde_json::from_str::<Value>(&rows()).expect("JSON")["results"][0]["values"].clone();
    assert_eq!(values, json!([[1, "once"], [2, "two"], [3, "three"]]));
}
