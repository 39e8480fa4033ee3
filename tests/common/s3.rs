//! A real S3-compatible server for the tests: moto's standalone server (`moto_server`, from
//! PyPI, installed by `scripts/test-all.sh` into `target/moto-venv`, which exports
//! `RAFTLITE_MOTO_SERVER`), started per test with plain HTTP helpers to look into its buckets;
//! and [`FaultyProxy`], a TCP proxy in front of it that passes, cuts, stalls or refuses
//! connections on command, for the "storage fails or stalls mid-upload" tests.
//!
//! Without `RAFTLITE_MOTO_SERVER`, [`Moto::start`] calls `prerequisite_missing` (CI fails the
//! test, a developer's run prints the skip).
//!
//! What moto does with these requests (checked against moto 5.2.5, `tests/s3/requirements.txt`):
//! it checks no signature by default, but a request without an `Authorization` header is
//! anonymous, and an anonymous GET or HEAD of a private object answers 403. So the helpers send
//! a dummy SigV4 header ([`DUMMY_AUTHORIZATION`]); its unknown access key maps to moto's default
//! account, the one a node signing with any key it does not know writes to as well.
//!
//! Invariants: moto binds port 0 and the harness reads the port it bound from its log, so tests
//! running in parallel never guess ports; every wait is bounded; moto is killed and every
//! proxy thread ends when its handle drops.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::blocking::{Client, RequestBuilder, Response};

/// The environment variable naming the `moto_server` executable.
pub const MOTO_SERVER_ENV: &str = "RAFTLITE_MOTO_SERVER";

/// A SigV4 `Authorization` header moto accepts without checking it (see the module doc).
pub const DUMMY_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// How long moto may take to listen and answer (its imports alone take a second or two).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The line werkzeug (moto's HTTP server) logs once it listens, then the URL.
const LISTENING_LINE: &str = "Running on ";

/// Everything but the unreserved characters and `/` is escaped in an object's path: S3 keys
/// are path-like, and `/` in a key is a plain character of the key.
const KEY_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A running moto server, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:PORT`: the endpoint to give the node.
    pub endpoint: String,
    child: Child,
    log_path: PathBuf,
    client: Client,
    /// Holds the log file; removed after the process is gone.
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it answers HTTP. `None`,
    /// after `prerequisite_missing` (which fails the test under CI), when
    /// `RAFTLITE_MOTO_SERVER` is not set. A server that is set but does not start fails the
    /// test with its log.
    pub fn start() -> Option<Moto> {
        let server = std::env::var_os(MOTO_SERVER_ENV).filter(|s| !s.is_empty());
        let Some(server) = server else {
            super::prerequisite_missing(&format!(
                "{MOTO_SERVER_ENV} is not set (scripts/test-all.sh installs moto's server into \
                 target/moto-venv and sets it to target/moto-venv/bin/moto_server)"
            ));
            return None;
        };
        let dir = tempfile::tempdir().expect("create a temp dir for moto's log");
        let log_path = dir.path().join("moto.log");
        let log = File::create(&log_path).expect("create moto's log");
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            // The log is read while moto runs: no output may wait in a buffer.
            .env("PYTHONUNBUFFERED", "1")
            // A developer's shell may have this set for other moto uses; with it, unsigned
            // requests fail (see the module doc), so the harness would not work.
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share moto's log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", server.to_string_lossy()));
        let mut moto = Moto {
            endpoint: String::new(),
            child,
            log_path,
            client: Client::builder()
                // The server is on loopback: a proxy from the environment must not be used.
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            _dir: dir,
        };
        moto.endpoint = moto.wait_listening();
        moto.wait_answering();
        Some(moto)
    }

    /// Waits (bounded) for the URL moto logs once it listens.
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            let url = log.lines().find_map(|line| {
                let at = line.find(LISTENING_LINE)? + LISTENING_LINE.len();
                line[at..].split_whitespace().next()
            });
            if let Some(url) = url {
                return url.trim_end_matches('/').to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto exited ({status}) before listening:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen within {START_TIMEOUT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until moto answers an HTTP request, whatever the answer.
    fn wait_answering(&self) {
        let answered = super::wait_until(START_TIMEOUT, || {
            self.client.get(&self.endpoint).send().is_ok()
        });
        assert!(answered, "moto never answered HTTP:\n{}", self.log());
    }

    /// `host:port` of the server (for [`FaultyProxy::start`]).
    pub fn address(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// Everything moto has written so far (its start-up lines and one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Creates a bucket (in moto's default region, us-east-1).
    pub fn create_bucket(&self, name: &str) {
        let r = self.send(self.client.put(format!("{}/{name}", self.endpoint)));
        self.expect_success(r, &format!("create bucket {name}"));
    }

    /// Stores an object.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        // Sent without a Content-Type: moto's server (Flask) reads a form-encoded body as a
        // form and would store an empty object.
        let r = self.send(
            self.client
                .put(self.object_url(bucket, key))
                .body(bytes.to_vec()),
        );
        self.expect_success(r, &format!("put {bucket}/{key}"));
    }

    /// An object's bytes; `None` if there is no such object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.send(self.client.get(self.object_url(bucket, key)));
        if r.status().as_u16() == 404 {
            return None;
        }
        let r = self.expect_success(r, &format!("get {bucket}/{key}"));
        Some(r.bytes().expect("read an object's body").to_vec())
    }

    /// An object's user metadata: its `x-amz-meta-*` headers, names in lower case with the
    /// prefix kept, in the order moto sent them; `None` if there is no such object.
    pub fn head_metadata(&self, bucket: &str, key: &str) -> Option<Vec<(String, String)>> {
        let r = self.send(self.client.head(self.object_url(bucket, key)));
        if r.status().as_u16() == 404 {
            return None;
        }
        let r = self.expect_success(r, &format!("head {bucket}/{key}"));
        let meta = r
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-amz-meta-"))
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        Some(meta)
    }

    /// The keys in `bucket` that start with `prefix`, in S3's order (by UTF-8 bytes), across
    /// every page of ListObjectsV2.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let request = self
                .client
                .get(format!("{}/{bucket}", self.endpoint))
                .query(&query);
            let r = self.expect_success(self.send(request), &format!("list {bucket}/{prefix}"));
            let xml = r.text().expect("read a listing");
            keys.extend(xml_elements(&xml, "Key"));
            if xml_elements(&xml, "IsTruncated") != ["true"] {
                return keys;
            }
            let next = xml_elements(&xml, "NextContinuationToken").pop();
            token =
                Some(next.unwrap_or_else(|| panic!("truncated listing without a token:\n{xml}")));
        }
    }

    /// An object's `ETag` header, quotes included (a multipart upload's is `"MD5-PARTS"`);
    /// `None` if there is no such object.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let r = self.send(self.client.head(self.object_url(bucket, key)));
        if r.status().as_u16() == 404 {
            return None;
        }
        let r = self.expect_success(r, &format!("head {bucket}/{key}"));
        let etag = r.headers().get("etag").expect("an object without an ETag");
        Some(String::from_utf8_lossy(etag.as_bytes()).into_owned())
    }

    /// The keys of the multipart uploads started in `bucket` and neither completed nor
    /// aborted (ListMultipartUploads; moto answers them all on one page).
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let request = self
            .client
            .get(format!("{}/{bucket}", self.endpoint))
            .query(&[("uploads", "")]);
        let r = self.expect_success(self.send(request), &format!("list uploads in {bucket}"));
        let xml = r.text().expect("read a listing of uploads");
        assert_ne!(
            xml_elements(&xml, "IsTruncated"),
            ["true"],
            "more uploads than one page:\n{xml}"
        );
        xml_elements(&xml, "Key")
    }

    /// Turns moto's checking of credentials on (a request signed with an access key moto
    /// does not know then fails with 403 `InvalidAccessKeyId`; so do this harness's own
    /// requests) or off (any key is accepted, the default), through
    /// `POST /moto-api/reset-auth`, whose body is the number of requests to accept unchecked.
    pub fn check_credentials(&self, on: bool) {
        // No Content-Type: moto reads the body raw (a form-encoded one would be parsed away).
        let request = self
            .client
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body(if on { "0" } else { "inf" });
        self.expect_success(self.send(request), "POST /moto-api/reset-auth");
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/{bucket}/{}",
            self.endpoint,
            utf8_percent_encode(key, KEY_PATH)
        )
    }

    fn send(&self, request: RequestBuilder) -> Response {
        request
            .header("Authorization", DUMMY_AUTHORIZATION)
            .send()
            .unwrap_or_else(|e| panic!("request to moto: {e}\n{}", self.log()))
    }

    fn expect_success(&self, r: Response, what: &str) -> Response {
        if r.status().is_success() {
            return r;
        }
        let status = r.status();
        panic!(
            "{what}: moto answered {status}: {}",
            r.text().unwrap_or_default()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of every `<tag>…</tag>` element in `xml`, unescaped. S3's listings are flat enough
/// that a string search is exact for the elements asked here (`Key` appears only in `Contents`
/// without a delimiter, and the others once).
fn xml_elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(xml_unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    found
}

/// Undoes XML's escaping of text (`&amp;` last, so `&amp;lt;` stays `&lt;`).
fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// What [`FaultyProxy`] does with connections, changeable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// Forward, but once a connection has carried this many bytes towards the server (counted
    /// from its start, so a kept-alive connection that already carried more is closed at its
    /// next byte), close both sides: an upload cut mid-body. Answers are forwarded.
    CutRequestsAfter(u64),
    /// Accept and read, but forward nothing either way and answer nothing: a server that
    /// hangs. A connection that stalled has lost bytes, so it is closed when the mode changes.
    Stall,
    /// Close every new connection at once, and open ones within a [`TICK`]: a server that is
    /// gone.
    Refuse,
}

/// How often a connection's threads look at the mode and the stop flag while nothing arrives.
const TICK: Duration = Duration::from_millis(100);
/// How long connecting to the upstream may take.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);
/// How long a write may block: only a peer that stops reading entirely is this slow.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

struct ProxyShared {
    upstream: String,
    fault: Mutex<Fault>,
    stop: AtomicBool,
    connections: AtomicU64,
    bytes_to_server: AtomicU64,
    /// Clones of every open socket, by connection, shut down on drop so no thread waits on
    /// them.
    open: Mutex<Vec<(u64, TcpStream)>>,
    next_id: AtomicU64,
}

impl ProxyShared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Registers a connection's sockets for the shutdown on drop; `None` if the proxy is
    /// already stopping.
    fn register(&self, sockets: &[&TcpStream]) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap();
        // Checked under the lock: drop sets the flag before it sweeps `open`.
        if self.stopping() {
            return None;
        }
        for s in sockets {
            open.push((id, s.try_clone().ok()?));
        }
        Some(id)
    }

    fn unregister(&self, id: u64) {
        self.open.lock().unwrap().retain(|(i, _)| *i != id);
    }
}

/// A TCP proxy on a free loopback port in front of `upstream`, injecting the [`Fault`] set
/// with [`FaultyProxy::set`] (initially [`Fault::Pass`]).
pub struct FaultyProxy {
    /// `http://127.0.0.1:PORT`: the endpoint to give the node instead of the server's.
    pub endpoint: String,
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultyProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`
    /// (`host:port`).
    pub fn start(upstream: &str) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            fault: Mutex::new(Fault::Pass),
            stop: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            bytes_to_server: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let for_acceptor = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(listener, for_acceptor));
        FaultyProxy {
            endpoint: format!("http://{addr}"),
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Changes what the proxy does, for new and open connections alike.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// Connections accepted so far, refused ones included.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.bytes_to_server.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept, so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for (_, s) in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    for conn in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(conn) = conn else { continue };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || serve(conn, &shared));
    }
}

/// One accepted connection: refused, held, or forwarded, as the mode says when it arrives.
fn serve(client: TcpStream, shared: &ProxyShared) {
    let stalled = AtomicBool::new(false);
    match shared.fault() {
        Fault::Refuse => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::Stall => {
            let Some(id) = shared.register(&[&client]) else {
                return;
            };
            // Nothing was forwarded: the pump only discards, then closes when the stall ends.
            stalled.store(true, Ordering::SeqCst);
            pump(&client, None, Direction::ToServer, shared, &stalled);
            shared.unregister(id);
        }
        Fault::Pass | Fault::CutRequestsAfter(_) => {
            let Some(server) = connect(&shared.upstream) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            let Some(id) = shared.register(&[&client, &server]) else {
                return;
            };
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    pump(
                        &server,
                        Some(&client),
                        Direction::ToClient,
                        shared,
                        &stalled,
                    )
                });
                pump(
                    &client,
                    Some(&server),
                    Direction::ToServer,
                    shared,
                    &stalled,
                );
            });
            shared.unregister(id);
        }
    }
}

fn connect(upstream: &str) -> Option<TcpStream> {
    let addr = upstream.to_socket_addrs().ok()?.next()?;
    TcpStream::connect_timeout(&addr, UPSTREAM_CONNECT).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// Copies `from` into `to` (`None`: discard) as the mode allows, until either side ends, the
/// mode ends the connection, or the proxy stops; then shuts both down, which ends the pump of
/// the other direction too. Reads time out every [`TICK`] so the mode and the stop flag are
/// seen while the connection is idle.
fn pump(
    from: &TcpStream,
    to: Option<&TcpStream>,
    direction: Direction,
    shared: &ProxyShared,
    stalled: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(TICK));
    if let Some(to) = to {
        let _ = to.set_write_timeout(Some(WRITE_TIMEOUT));
    }
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopping() {
        let n = match (&*from).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(_) => break,
        };
        let fault = shared.fault();
        if fault == Fault::Stall {
            stalled.store(true, Ordering::SeqCst);
            continue;
        }
        if fault == Fault::Refuse || stalled.load(Ordering::SeqCst) {
            break;
        }
        let Some(to) = to else { break };
        if n == 0 {
            continue;
        }
        let mut chunk = &buf[..n];
        let limit = match (fault, direction) {
            (Fault::CutRequestsAfter(limit), Direction::ToServer) => Some(limit),
            _ => None,
        };
        if let Some(limit) = limit {
            let room = limit.saturating_sub(sent);
            chunk = &chunk[..chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        }
        if (&*to).write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len() as u64;
        if direction == Direction::ToServer {
            shared
                .bytes_to_server
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if limit.is_some_and(|limit| sent >= limit) {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    if let Some(to) = to {
        let _ = to.shutdown(Shutdown::Both);
    }
}
