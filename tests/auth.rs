//! `-auth`, perms and TLS, end to end: a 3-node cluster over HTTPS and inter-node mutual
//! TLS with credentials, every API endpoint with the right perm, a wrong perm and no
//! credentials; forwarding that carries the caller's identity; start-up errors for bad files;
//! per-connection errors for plaintext, unknown-CA and expired-certificate clients.
//!
//! Certificates are made here with rcgen: one CA, and one certificate for 127.0.0.1 that
//! every node uses for both serving and as a client.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_binary, wait_until, Node, FAST_RAFT};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use reqwest::blocking::Client;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a valid certificate for 127.0.0.1, an expired one, one for the name
    /// `db.internal` only, and a second CA (with its own certificate for 127.0.0.1) that
    /// nobody trusts.
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_key) = make_ca("raftlite test CA");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        let (cert, key) = make_leaf(&ca, &ca_key, false);
        write("node.pem", cert);
        write("node-key.pem", key);
        let (cert, key) = make_leaf(&ca, &ca_key, true);
        write("expired.pem", cert);
        write("expired-key.pem", key);
        let (cert, key) = make_leaf_for(&ca, &ca_key, false, &["db.internal"], "raftlite node");
        write("named.pem", cert);
        write("named-key.pem", key);
        // Signed by the same CA, with another subject Common Name.
        let (cert, key) = make_leaf_for(&ca, &ca_key, false, &["127.0.0.1"], "intruder");
        write("intruder.pem", cert);
        write("intruder-key.pem", key);
        let (cert, key) = make_leaf_for(&ca, &ca_key, false, &["127.0.0.1"], "renewed node");
        write("renewed.pem", cert);
        write("renewed-key.pem", key);
        let (other, other_key) = make_ca("someone else's CA");
        write("other-ca.pem", other.pem());
        let (cert, key) = make_leaf(&other, &other_key, false);
        write("other.pem", cert);
        write("other-key.pem", key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("CA cert"), key)
}

fn make_leaf(ca: &rcgen::Certificate, ca_key: &KeyPair, expired: bool) -> (String, String) {
    make_leaf_for(
        ca,
        ca_key,
        expired,
        &["127.0.0.1", "localhost"],
        "raftlite node",
    )
}

fn make_leaf_for(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    expired: bool,
    names: &[&str],
    common_name: &str,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, ca, ca_key).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS client trusting `ca`, presenting `identity` (cert, key) if given.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).expect("CA");
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// The users of the cluster test: one per perm the API checks (password `pw-<perm>`), `rw`
/// with execute and query, `joiner` for -join-as, `root` with all; `*` gets only `ui`.
fn auth_file(extra: &str) -> String {
    let mut users: Vec<String> = [
        "execute",
        "query",
        "backup",
        "load",
        "status",
        "ready",
        "remove",
        "leader-ops",
        "snapshot",
    ]
    .iter()
    .map(|p| format!(r#"{{"username": "{p}", "password": "pw-{p}", "perms": ["{p}"]}}"#))
    .collect();
    users.push(r#"{"username": "rw", "password": "pw-rw", "perms": ["execute", "query"]}"#.into());
    // `remove` too: a node leaving on shutdown (-raft-cluster-remove-shutdown) asks as it.
    users.push(
        r#"{"username": "joiner", "password": "pw-join", "perms": ["join", "remove"]}"#.into(),
    );
    users.push(r#"{"username": "root", "password": "pw-root", "perms": ["all"]}"#.into());
    users.push(r#"{"username": "*", "perms": ["ui"]}"#.into());
    if !extra.is_empty() {
        users.push(extra.into());
    }
    format!("[\n{}\n]\n", users.join(",\n"))
}

struct TlsNode {
    node: Node,
    client: Client,
    _temp: tempfile::TempDir,
}

impl TlsNode {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.node.http_addr)
    }

    /// Sends a request as `user` (password `pw-<user>`, or none for anonymous).
    fn send(
        &self,
        user: Option<&str>,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, self.url(path)).body(body);
        if let Some(u) = user {
            let pw = match u {
                "joiner" => "pw-join".to_string(),
                _ => format!("pw-{u}"),
            };
            req = req.basic_auth(u, Some(pw));
        }
        let content_type = if path == "/db/load" || path == "/boot" {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let resp = req
            .header("Content-Type", content_type)
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().unwrap().to_vec())
    }

    fn status_as(&self, user: Option<&str>, method: &str, path: &str, body: &[u8]) -> u16 {
        self.send(user, method, path, body.to_vec()).0
    }
}

/// Spawns a node and waits until it answers `/readyz` over HTTPS as `ready`.
fn start_tls_node(client: Client, args: &[String]) -> TlsNode {
    let temp = tempfile::tempdir().unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::spawn(&temp.path().join("data"), &args)
        .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
    let n = TlsNode {
        node,
        client,
        _temp: temp,
    };
    let ok = wait_until(Duration::from_secs(30), || {
        n.client
            .get(n.url("/readyz"))
            .basic_auth("ready", Some("pw-ready"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(ok, "node never became ready:\n{}", n.node.log());
    n
}

#[test]
fn tls_cluster_with_auth_checks_every_endpoint() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    std::fs::write(&auth, auth_file("")).unwrap();
    // Node 3 lets `sneak` take backups; the leader does not know `sneak`.
    let lenient = files.path().join("lenient.json");
    std::fs::write(
        &lenient,
        auth_file(r#"{"username": "sneak", "password": "pw-sneak", "perms": ["backup"]}"#),
    )
    .unwrap();
    let tls_args = |auth: &Path| -> Vec<String> {
        let mut a: Vec<String> = FAST_RAFT.iter().map(|s| s.to_string()).collect();
        for (flag, file) in [
            ("-http-cert", "node.pem"),
            ("-http-key", "node-key.pem"),
            ("-http-ca-cert", "ca.pem"),
            ("-node-cert", "node.pem"),
            ("-node-key", "node-key.pem"),
            ("-node-ca-cert", "ca.pem"),
        ] {
            a.push(flag.into());
            a.push(pki.arg(file));
        }
        a.extend(
            [
                "-http-verify-client",
                "-node-verify-client",
                "-join-as",
                "joiner",
                "-auth",
            ]
            .map(String::from),
        );
        a.push(auth.display().to_string());
        a
    };
    let identity = (pki.path("node.pem"), pki.path("node-key.pem"));
    let new_client = || client(&pki.path("ca.pem"), Some((&identity.0, &identity.1)));

    let mut first_args = tls_args(&auth);
    first_args.extend(["-node-id".into(), "node1".into()]);
    let leader = start_tls_node(new_client(), &first_args);
    let mut nodes = vec![leader];
    for (i, file) in [(2, &auth), (3, &lenient)] {
        let mut args = tls_args(file);
        args.extend([
            "-node-id".into(),
            format!("node{i}"),
            "-join".into(),
            nodes[0].node.raft_addr.clone(),
        ]);
        if i == 3 {
            args.push("-raft-cluster-remove-shutdown".into());
        }
        nodes.push(start_tls_node(new_client(), &args));
    }
    let logs = |nodes: &[TlsNode]| -> String {
        nodes
            .iter()
            .map(|n| n.node.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    // Every node sees three reachable members: joins carried -join-as credentials, and the
    // Raft RPCs and /nodes probes ran over mutual TLS.
    let all_reachable = wait_until(Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            let (status, _, body) = n.send(Some("status"), "GET", "/nodes", vec![]);
            status == 200
                && serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .is_some_and(|o| o.len() == 3 && o.values().all(|n| n["reachable"] == true))
        })
    });
    assert!(all_reachable, "cluster did not form:\n{}", logs(&nodes));
    let leader = &nodes[0];
    let (follower, lenient_follower) = (&nodes[1], &nodes[2]);

    // A backup made first, to load later.
    leader.send(
        Some("root"),
        "POST",
        "/db/execute",
        br#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#.to_vec(),
    );
    let (status, _, backup) = leader.send(Some("root"), "GET", "/db/backup", vec![]);
    assert_eq!(status, 200);

    // (method, path, body, the user with the perm, a user without it, expected status).
    let q = "/db/query?q=SELECT%20*%20FROM%20t";
    type Case<'a> = (&'a str, &'a str, Vec<u8>, &'a str, &'a str, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/db/execute",
            br#"["INSERT INTO t VALUES(2)"]"#.to_vec(),
            "execute",
            "query",
            200,
        ),
        ("GET", q, vec![], "query", "execute", 200),
        (
            "POST",
            "/db/query",
            br#"["SELECT 1"]"#.to_vec(),
            "query",
            "execute",
            200,
        ),
        // request and sql need both execute and query.
        (
            "POST",
            "/db/request",
            br#"["SELECT 1"]"#.to_vec(),
            "rw",
            "query",
            200,
        ),
        (
            "POST",
            "/db/request",
            br#"["SELECT 1"]"#.to_vec(),
            "rw",
            "execute",
            200,
        ),
        ("GET", "/db/backup", vec![], "backup", "query", 200),
        ("POST", "/db/load", backup.clone(), "load", "backup", 200),
        ("GET", "/status", vec![], "status", "ready", 200),
        ("GET", "/metrics", vec![], "status", "backup", 200),
        ("GET", "/nodes", vec![], "status", "query", 200),
        ("GET", "/readyz", vec![], "ready", "status", 200),
        ("GET", "/leader", vec![], "status", "leader-ops", 200),
        ("POST", "/reap", vec![], "snapshot", "status", 200),
        ("GET", "/debug/vars", vec![], "status", "snapshot", 200),
        // The console's API calls need the perm of what they stand for.
        (
            "POST",
            "/console/api/backup-jobs",
            b"{}".to_vec(),
            "backup",
            "query",
            201,
        ),
        (
            "GET",
            "/console/api/cluster",
            vec![],
            "status",
            "backup",
            200,
        ),
        // A node that is not a member: the perm let it through to the real answer.
        (
            "DELETE",
            "/remove",
            br#"{"id": "nobody"}"#.to_vec(),
            "remove",
            "status",
            404,
        ),
    ];
    for (method, path, body, right, wrong, want) in &cases {
        let (status, headers, answer) = leader.send(Some(right), method, path, body.clone());
        assert_eq!(
            status,
            *want,
            "{method} {path} as {right}: {}",
            String::from_utf8_lossy(&answer)
        );
        let (status, headers_401, answer) = leader.send(Some(wrong), method, path, body.clone());
        assert_eq!(status, 401, "{method} {path} as {wrong}");
        assert!(answer.is_empty(), "a refusal has an empty body");
        assert_eq!(
            headers_401
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"rqlite\"")
        );
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(
            leader.status_as(None, method, path, body),
            401,
            "{method} {path} without credentials"
        );
    }
    // /boot needs load: any answer but 401 with it (a cluster of three cannot be booted).
    let sqlite = backup.clone();
    assert_ne!(
        leader.status_as(Some("load"), "POST", "/boot", &sqlite),
        401
    );
    assert_eq!(
        leader.status_as(Some("backup"), "POST", "/boot", &sqlite),
        401
    );
    assert_eq!(leader.status_as(None, "POST", "/boot", &sqlite), 401);
    // A wrong password is no better than none.
    let resp = leader
        .client
        .get(leader.url(q))
        .basic_auth("query", Some("pw-wrong"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    // OPTIONS and unknown paths are answered before and without any check, as in rqlite.
    assert_eq!(leader.status_as(None, "OPTIONS", "/db/backup", b""), 200);
    assert_eq!(leader.status_as(None, "GET", "/no/such/path", b""), 404);

    // Through a follower: the caller's credentials travel with the forwarded request.
    let (status, headers, body) = follower.send(
        Some("execute"),
        "POST",
        "/db/execute",
        br#"["INSERT INTO t VALUES(3)"]"#.to_vec(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.contains_key("x-rqlite-served-by"),
        "forwarded to the leader"
    );
    // Queued writes forwarded in batches carry their callers' credentials too.
    let (status, _, body) = follower.send(
        Some("execute"),
        "POST",
        "/db/execute?queue&wait",
        br#"["INSERT INTO t VALUES(4)"]"#.to_vec(),
    );
    let body = String::from_utf8_lossy(&body);
    assert!(status == 200 && !body.contains("error"), "{status} {body}");
    // A follower refuses a backup to a user without `backup` ...
    assert_eq!(
        follower.status_as(Some("query"), "GET", "/db/backup", b""),
        401
    );
    assert_eq!(follower.status_as(None, "GET", "/db/backup", b""), 401);
    assert_eq!(
        follower.status_as(Some("backup"), "GET", "/db/backup", b""),
        200
    );
    // ... and a follower whose own file is more lenient is no way around the leader: it
    // forwards `sneak`'s credentials, and the leader refuses them.
    assert_eq!(
        lenient_follower.status_as(Some("sneak"), "GET", "/db/backup", b""),
        401,
        "the leader re-checks forwarded credentials"
    );
    assert_eq!(
        lenient_follower.status_as(Some("sneak"), "GET", "/db/backup?redirect", b""),
        301,
        "the follower itself lets sneak through to the redirect"
    );

    // Mutual TLS: a client without a certificate cannot even connect.
    let anonymous_tls = client(&pki.path("ca.pem"), None);
    anonymous_tls
        .get(leader.url("/readyz"))
        .basic_auth("ready", Some("pw-ready"))
        .send()
        .expect_err("no client certificate");
    assert_eq!(leader.status_as(Some("ready"), "GET", "/readyz", b""), 200);

    // The auth file is followed: a changed password takes effect at once, and the old one,
    // verified and cached before, is refused.
    assert_eq!(leader.status_as(Some("query"), "GET", q, b""), 200);
    std::fs::write(&auth, auth_file("").replace("pw-query", "pw-QUERY")).unwrap();
    assert_eq!(leader.status_as(Some("query"), "GET", q, b""), 401);
    let resp = leader
        .client
        .get(leader.url(q))
        .basic_auth("query", Some("pw-QUERY"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    std::fs::write(&auth, auth_file("")).unwrap();

    // A snapshot needs snapshot (200, or 204 when there is nothing new to snapshot).
    assert_eq!(
        leader.status_as(Some("status"), "POST", "/snapshot", b""),
        401
    );
    assert_eq!(leader.status_as(None, "POST", "/snapshot", b""), 401);
    assert!(matches!(
        leader.status_as(Some("snapshot"), "POST", "/snapshot", b""),
        200 | 204
    ));
    // The console's page needs ui, which `*` has here; a download link needs its job id only.
    assert_eq!(leader.status_as(None, "GET", "/console/", b""), 200);
    assert_eq!(
        leader.status_as(None, "GET", "/console/api/backup-jobs/0000/download", b""),
        404
    );

    // Stepping down needs leader-ops (the perm lets the request through to its real answer).
    assert_eq!(
        leader.status_as(Some("status"), "POST", "/leader", b""),
        401
    );
    assert_eq!(leader.status_as(None, "POST", "/leader", b""), 401);
    assert_ne!(
        leader.status_as(Some("leader-ops"), "POST", "/leader", b""),
        401
    );

    // A graceful stop of node 3 (-raft-cluster-remove-shutdown) asks the leader to remove it,
    // over mutual TLS and as the -join-as user.
    let mut third = nodes.pop().expect("node 3");
    assert!(third.node.stop().success(), "{}", third.node.log());
    let two_left = wait_until(Duration::from_secs(30), || {
        let (status, _, body) = nodes[0].send(Some("status"), "GET", "/nodes", vec![]);
        status == 200
            && serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.len()))
                == Some(2)
    });
    assert!(two_left, "node 3 was not removed:\n{}", third.node.log());
}

#[test]
fn joins_need_the_join_perm() {
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    // Anonymous readiness and status, so the harness can wait for the nodes.
    let text = auth_file("").replace(
        r#"{"username": "*", "perms": ["ui"]}"#,
        r#"{"username": "*", "perms": ["ready", "status"]}"#,
    );
    std::fs::write(&auth, text).unwrap();
    let auth = auth.display().to_string();
    // Every member proves itself to the others (-join-as), the first one too: its Raft
    // traffic to the joiner carries the same credentials.
    let first = Node::start(
        &[
            FAST_RAFT,
            &["-auth", &auth, "-node-id", "n1", "-join-as", "joiner"],
        ]
        .concat(),
    );
    // `query` exists but may not join: the join is refused with 401 and the node gives up.
    let dir = files.path().join("second");
    let dir_arg = dir.display().to_string();
    let (code, out) = run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            "-auth",
            &auth,
            "-join-as",
            "query",
            "-join",
            &first.raft_addr,
            "-join-attempts",
            "1",
            "-join-interval",
            "100ms",
            &dir_arg,
        ],
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("401"), "{out}");
    assert!(
        !out.contains("pw-query"),
        "a password must never be logged:\n{out}"
    );
    // Anonymous joins are refused too.
    let (code, out) = run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            "-auth",
            &auth,
            "-join",
            &first.raft_addr,
            "-join-attempts",
            "1",
            &format!("{dir_arg}-anon"),
        ],
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("401"), "{out}");
    // `joiner` may.
    let second = Node::start(
        &[
            FAST_RAFT,
            &[
                "-auth",
                &auth,
                "-join-as",
                "joiner",
                "-join",
                &first.raft_addr,
            ],
        ]
        .concat(),
    );
    let members = wait_until(Duration::from_secs(20), || {
        first
            .get("/nodes")
            .json()
            .as_object()
            .is_some_and(|o| o.len() == 2)
    });
    assert!(members, "{}\n{}", first.log(), second.log());
    assert!(
        !first.log().contains("pw-join"),
        "a password must never be logged"
    );
}

fn start_error(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let mut all = vec!["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    all.push(&data);
    let (code, out) = run_binary(&all, Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "{args:?} must fail to start: {code:?}\n{out}"
    );
    out
}

#[test]
fn bad_auth_and_certificate_files_stop_the_node_with_a_clear_error() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let malformed = file("malformed.json", "[{\"username\": \"a\", ");
    let out = start_error(&["-auth", &malformed]);
    assert!(
        out.contains("malformed.json") && out.contains("not a JSON list"),
        "{out}"
    );
    let typo = file(
        "typo.json",
        r#"[{"username": "a", "password": "p", "perms": ["backups"]}]"#,
    );
    let out = start_error(&["-auth", &typo]);
    assert!(
        out.contains("typo.json") && out.contains("unknown perm \"backups\""),
        "{out}"
    );
    assert!(!out.contains("\"p\""), "no password in the error");
    let out = start_error(&["-auth", "/nonexistent/auth.json"]);
    assert!(out.contains("/nonexistent/auth.json"), "{out}");
    let hashed = file(
        "hashed.json",
        r#"[{"username": "j", "password": "$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY", "perms": ["join"]}]"#,
    );
    let out = start_error(&["-auth", &hashed, "-join-as", "j"]);
    assert!(out.contains("bcrypt hash"), "{out}");

    let garbage = file("garbage.pem", "not a certificate\n");
    let (cert, key) = (pki.arg("node.pem"), pki.arg("node-key.pem"));
    let out = start_error(&["-http-cert", &garbage, "-http-key", &key]);
    assert!(
        out.contains("garbage.pem") && out.contains("no PEM certificate"),
        "{out}"
    );
    let out = start_error(&["-http-cert", "/nonexistent/c.pem", "-http-key", &key]);
    assert!(out.contains("/nonexistent/c.pem"), "{out}");
    let out = start_error(&["-http-cert", &cert, "-http-key", &cert]);
    assert!(
        out.contains("node.pem") && out.contains("no PEM private key"),
        "{out}"
    );
    // A key that does not belong to the certificate.
    let out = start_error(&["-node-cert", &cert, "-node-key", &pki.arg("other-key.pem")]);
    assert!(out.contains("do not form a usable pair"), "{out}");
    let out = start_error(&[
        "-node-cert",
        &cert,
        "-node-key",
        &key,
        "-node-ca-cert",
        &garbage,
        "-node-verify-client",
    ]);
    assert!(out.contains("garbage.pem"), "{out}");
}

#[test]
fn bad_connections_fail_alone_and_the_node_keeps_serving() {
    let pki = Pki::new();
    let start = |cert: &str, key: &str| {
        let args = [
            "-http-cert".to_string(),
            pki.arg(cert),
            "-http-key".to_string(),
            pki.arg(key),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let temp = tempfile::tempdir().unwrap();
        let node = Node::spawn(&temp.path().join("data"), &args)
            .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
        (node, temp)
    };
    let (node, _temp) = start("node.pem", "node-key.pem");
    let good = client(&pki.path("ca.pem"), None);
    let url = format!("https://{}/status", node.http_addr);
    assert!(
        wait_until(Duration::from_secs(20), || good
            .get(&url)
            .send()
            .is_ok_and(|r| r.status() == 200)),
        "{}",
        node.log()
    );
    // Plain HTTP against the TLS port: that connection fails, nothing else.
    let plain = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer = plain
        .get(format!("http://{}/status", node.http_addr))
        .send();
    assert!(
        answer.as_ref().map_or(true, |r| r.status() != 200),
        "plaintext must not be served: {answer:?}"
    );
    // A client that trusts another CA refuses the node's certificate.
    let stranger = client(&pki.path("other-ca.pem"), None);
    let err = stranger.get(&url).send().expect_err("unknown issuer");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    // A connection that never speaks is closed by the node (handshake timeout), not kept.
    {
        use std::io::Read as _;
        let mut idle = std::net::TcpStream::connect(&node.http_addr).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 16];
        match idle.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection must be closed by the node: {other:?}"),
        }
    }
    // The node is fine.
    assert_eq!(good.get(&url).send().unwrap().status(), 200);
    // Untrusted SQL cannot load extensions (loading is off on every connection, and the gate
    // refuses the function).
    let answer = good
        .get(format!(
            "https://{}/db/query?q=SELECT%20load_extension('/nonexistent/x')",
            node.http_addr
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        answer.contains("load_extension() is not allowed"),
        "{answer}"
    );

    // A node serving an expired certificate: clients refuse it, with the reason.
    let (expired, _temp2) = start("expired.pem", "expired-key.pem");
    let err = good
        .get(format!("https://{}/status", expired.http_addr))
        .send()
        .expect_err("expired certificate");
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
    assert!(expired.is_running());
}

#[test]
fn the_shell_speaks_https_with_a_ca_and_basic_auth() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    std::fs::write(&auth, auth_file("")).unwrap();
    let args = vec![
        "-http-cert".to_string(),
        pki.arg("node.pem"),
        "-http-key".to_string(),
        pki.arg("node-key.pem"),
        "-auth".to_string(),
        auth.display().to_string(),
    ];
    let node = start_tls_node(client(&pki.path("ca.pem"), None), &args);
    node.send(
        Some("execute"),
        "POST",
        "/db/execute",
        br#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(42)"]"#.to_vec(),
    );
    let port = node.node.http_addr.rsplit(':').next().unwrap().to_string();
    let shell = |user: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_raftlite"))
            .args(["-s", "https", "-H", "127.0.0.1", "-p", &port, "-c"])
            .arg(pki.path("ca.pem"))
            .args(["-u", user])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn shell");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"SELECT x FROM t;\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    // The shell sends SQL to /db/request, which needs execute and query.
    let out = shell("rw:pw-rw");
    assert!(out.contains("42"), "{out}");
    let out = shell("query:pw-query");
    assert!(out.contains("unauthorized"), "{out}");
    let out = shell("rw:wrong");
    assert!(out.contains("unauthorized"), "{out}");
}

#[test]
fn node_tls_can_verify_a_fixed_server_name() {
    let pki = Pki::new();
    let (cert, key, ca) = (
        pki.arg("named.pem"),
        pki.arg("named-key.pem"),
        pki.arg("ca.pem"),
    );
    let tls: Vec<&str> = vec![
        "-node-cert",
        &cert,
        "-node-key",
        &key,
        "-node-ca-cert",
        &ca,
        "-node-verify-client",
    ];
    let named: Vec<&str> = [&tls[..], &["-node-verify-server-name", "db.internal"]].concat();
    let first = Node::start(&[FAST_RAFT, &named[..]].concat());
    // The certificate names db.internal, not 127.0.0.1: checking the address dialled fails.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let mut args = vec!["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"];
    args.extend_from_slice(&tls);
    args.extend(["-join", &first.raft_addr, "-join-attempts", "1", &data]);
    let (code, out) = run_binary(&args, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("certificate not valid for name"), "{out}");
    // With -node-verify-server-name the node joins, and both see each other over TLS.
    let second = Node::start(&[FAST_RAFT, &named[..], &["-join", &first.raft_addr]].concat());
    let ok = wait_until(Duration::from_secs(20), || {
        [&first, &second].iter().all(|n| {
            n.get("/nodes")
                .json()
                .as_object()
                .is_some_and(|o| o.len() == 2 && o.values().all(|v| v["reachable"] == true))
        })
    });
    assert!(ok, "{}\n{}", first.log(), second.log());
}

/// rqlite puts `WWW-Authenticate: Basic realm="rqlite"` on every answer when auth is on, and
/// clients see that unchanged. The web console marks its requests (`X-Raftlite-Console`) and
/// gets its 401s without the challenge, which would make a browser show its own login dialog
/// in front of the console's credentials form.
#[test]
fn console_requests_get_no_auth_challenge() {
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"[{"username": "*", "perms": ["ui", "ready", "status"]}]"#,
    )
    .unwrap();
    let node = Node::start(&["-auth", auth.to_str().unwrap()]);
    let client = reqwest::blocking::Client::new();
    let plain = client.get(node.url("/db/query?q=SELECT+1")).send().unwrap();
    assert_eq!(plain.status().as_u16(), 401);
    assert_eq!(
        plain.headers().get("www-authenticate").unwrap(),
        "Basic realm=\"rqlite\""
    );
    let console = client
        .get(node.url("/db/query?q=SELECT+1"))
        .header("X-Raftlite-Console", "1")
        .send()
        .unwrap();
    assert_eq!(console.status().as_u16(), 401);
    assert!(console.headers().get("www-authenticate").is_none());
    // An allowed console request is unchanged otherwise.
    let status = client
        .get(node.url("/status"))
        .header("X-Raftlite-Console", "1")
        .send()
        .unwrap();
    assert_eq!(status.status().as_u16(), 200);
    assert!(status.headers().get("x-rqlite-version").is_some());
}

/// The certificate a TLS server presents, as DER.
fn served_certificate(url: &str, ca: &Path, identity: (&Path, &Path)) -> Result<Vec<u8>, String> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut pem = std::fs::read(identity.0).unwrap();
    pem.extend(std::fs::read(identity.1).unwrap());
    let client = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let resp = client.get(url).send().map_err(|e| format!("{e:?}"))?;
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    Ok(info
        .peer_certificate()
        .expect("a server certificate")
        .to_vec())
}

fn pem_to_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let mut reader = &text[..];
    let first = rustls_pemfile::certs(&mut reader).next().unwrap().unwrap();
    first.to_vec()
}

/// `-http-verify-common-name` and `-node-verify-common-name` keep out certificates of the same
/// CA with another subject, and a renewed certificate and key take effect without a restart.
#[test]
fn common_names_are_checked_and_renewed_certificates_load_without_a_restart() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    // The node serves from files that will be replaced.
    let (serve_cert, serve_key) = (
        work.path().join("serve.pem"),
        work.path().join("serve-key.pem"),
    );
    std::fs::copy(pki.path("node.pem"), &serve_cert).unwrap();
    std::fs::copy(pki.path("node-key.pem"), &serve_key).unwrap();
    let (cert, key, ca) = (
        serve_cert.display().to_string(),
        serve_key.display().to_string(),
        pki.arg("ca.pem"),
    );
    let node = Node::spawn(
        &work.path().join("data"),
        &[
            "-http-cert",
            &cert,
            "-http-key",
            &key,
            "-http-ca-cert",
            &ca,
            "-http-verify-client",
            "-http-verify-common-name",
            "raftlite node",
        ],
    )
    .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
    let url = format!("https://{}/readyz", node.http_addr);
    let good = (pki.path("node.pem"), pki.path("node-key.pem"));
    let intruder = (pki.path("intruder.pem"), pki.path("intruder-key.pem"));
    let mut served = Err(String::new());
    let up = wait_until(Duration::from_secs(20), || {
        served = served_certificate(&url, &pki.path("ca.pem"), (&good.0, &good.1));
        served.is_ok()
    });
    assert!(
        up,
        "a client with the right Common Name gets in: {served:?}\n{}",
        node.log()
    );
    let served = served.unwrap();
    assert_eq!(served, pem_to_der(&pki.path("node.pem")));
    let refused = served_certificate(&url, &pki.path("ca.pem"), (&intruder.0, &intruder.1));
    assert!(
        refused.is_err(),
        "same CA, wrong Common Name: must be refused"
    );

    // Renewal: a half-written pair (new certificate, old key) is not used; once both are in
    // place, new connections get the new certificate.
    std::fs::copy(pki.path("renewed.pem"), &serve_cert).unwrap();
    // Connect until the node has looked at the changed files (it says so), and meanwhile it
    // must keep serving the old, working pair.
    let tried = wait_until(Duration::from_secs(10), || {
        assert_eq!(
            served_certificate(&url, &pki.path("ca.pem"), (&good.0, &good.1)).unwrap(),
            pem_to_der(&pki.path("node.pem")),
            "a certificate without its key must not replace the working pair"
        );
        node.log().contains("does not load")
    });
    assert!(tried, "{}", node.log());
    std::fs::copy(pki.path("renewed-key.pem"), &serve_key).unwrap();
    let renewed = pem_to_der(&pki.path("renewed.pem"));
    let reloaded = wait_until(Duration::from_secs(10), || {
        served_certificate(&url, &pki.path("ca.pem"), (&good.0, &good.1)).ok()
            == Some(renewed.clone())
    });
    assert!(
        reloaded,
        "the renewed certificate was not served:\n{}",
        node.log()
    );
    assert!(node.log().contains("reloaded"), "{}", node.log());

    // Node port: a node whose certificate has another Common Name cannot join.
    let ntls = |c: &str, k: &str| -> Vec<String> {
        [
            "-node-cert",
            c,
            "-node-key",
            k,
            "-node-ca-cert",
            &ca,
            "-node-verify-client",
            "-node-verify-common-name",
            "raftlite node",
        ]
        .map(String::from)
        .to_vec()
    };
    let first_args = ntls(&pki.arg("node.pem"), &pki.arg("node-key.pem"));
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let first = Node::start(&[FAST_RAFT, &first_args[..]].concat());
    let dir = work.path().join("intruder").display().to_string();
    let bad = ntls(&pki.arg("intruder.pem"), &pki.arg("intruder-key.pem"));
    let mut args: Vec<&str> = vec!["-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"];
    args.extend(bad.iter().map(String::as_str));
    args.extend(["-join", &first.raft_addr, "-join-attempts", "1", &dir]);
    let (code, out) = run_binary(&args, Duration::from_secs(30));
    assert_ne!(code, Some(0), "{out}");
    assert!(first.log().contains("wrong Common Name"), "{}", first.log());
}
