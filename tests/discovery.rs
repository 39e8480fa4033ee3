//! `-disco-mode dns` and `dns-srv` against a real DNS server: dnsmasq, in a network namespace
//! the test creates, is the namespace's resolver (`ip netns exec` puts
//! `/etc/netns/NS/resolv.conf` in place of `/etc/resolv.conf`), and the nodes run in that
//! namespace on addresses of their own (`DNS` A records carry addresses, not ports: three
//! nodes need three addresses with the same port). The test reaches them over a veth link.
//!
//! Needs root (namespaces), `ip` and `dnsmasq`: without them the tests say they were skipped,
//! and fail under `CI=true`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{prerequisite_missing, wait_until, Node, BIN};
use serde_json::Value;

/// A network namespace with a veth link to this one, its own DNS server, and a wrapper that
/// runs `raftlited` inside it. Torn down on drop (nodes must be dropped first).
struct DnsNet {
    ns: String,
    host_link: String,
    /// The /24 both ends share: the test is `.1`, nodes use `.2` and up.
    prefix: String,
    etc_dir: PathBuf,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

fn run(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl DnsNet {
    /// The namespace, or `None` (after [`prerequisite_missing`]) when this machine cannot make
    /// one. `records` are extra dnsmasq options (SRV records); A records come from
    /// [`DnsNet::set_hosts`].
    fn start(records: &[String]) -> Option<DnsNet> {
        if !have("ip") || !have("dnsmasq") {
            prerequisite_missing("the discovery tests need `ip` (iproute2) and `dnsmasq`");
            return None;
        }
        sweep_stale_namespaces();
        // Unique per process and per instance (the plain `cargo test` fallback runs several
        // tests in one process); interface names stay within Linux's 15 bytes.
        static INSTANCE: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{NS_PREFIX}{pid}-{n}");
        let host_link = format!("rlh{}", (pid % 1_000_000) * 10 + n % 10);
        let ns_link = format!("rln{}", (pid % 1_000_000) * 10 + n % 10);
        // 198.18.0.0/15 is set aside for network tests (RFC 2544): no real route to shadow.
        let slot = (pid.wrapping_mul(31).wrapping_add(n)) % 512;
        let prefix = format!("198.{}.{}", 18 + slot / 256, slot % 256);
        let etc_dir = PathBuf::from(format!("/etc/netns/{ns}"));
        let dir = tempfile::tempdir().expect("temp dir");
        if let Err(e) = run(&["ip", "netns", "add", &ns]) {
            prerequisite_missing(&format!("cannot make a network namespace: {e}"));
            return None;
        }
        // From here on the namespace is this instance's: dropping `net` removes it.
        let mut net = DnsNet {
            ns: ns.clone(),
            host_link: host_link.clone(),
            prefix: prefix.clone(),
            etc_dir: etc_dir.clone(),
            dnsmasq: None,
            dir,
        };
        let host_cidr = format!("{prefix}.1/24");
        let setup = [
            vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
            vec![
                "ip", "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link, "netns",
                &ns,
            ],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host_link],
            vec!["ip", "link", "set", &host_link, "up"],
            vec!["ip", "-n", &ns, "link", "set", &ns_link, "up"],
        ];
        for cmd in &setup {
            run(cmd).unwrap_or_else(|e| panic!("set up the test network: {e}"));
        }
        for host in 2..=6 {
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{prefix}.{host}/24"),
                "dev",
                &ns_link,
            ])
            .expect("address in the namespace");
        }
        std::fs::create_dir_all(&etc_dir).expect("/etc/netns dir");
        std::fs::write(etc_dir.join("resolv.conf"), "nameserver 127.0.0.1\n").expect("resolv.conf");
        let hosts_dir = net.dir.path().join("hosts.d");
        std::fs::create_dir_all(&hosts_dir).unwrap();
        let log = std::fs::File::create(net.dir.path().join("dnsmasq.log")).unwrap();
        let mut args: Vec<String> = [
            "netns",
            "exec",
            &ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--port=53",
            "--log-queries",
            "--log-facility=-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--hostsdir={}", hosts_dir.display()));
        args.push(format!(
            "--pid-file={}",
            net.dir.path().join("dnsmasq.pid").display()
        ));
        args.extend(records.iter().cloned());
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        net.dnsmasq = Some(child);
        std::fs::write(
            net.dir.path().join("raftlited-in-ns"),
            format!("#!/bin/sh\nexec ip netns exec {ns} {BIN} \"$@\"\n"),
        )
        .unwrap();
        run(&[
            "chmod",
            "+x",
            net.dir.path().join("raftlited-in-ns").to_str().unwrap(),
        ])
        .unwrap();
        // dnsmasq answers once it listens: wait for its log line.
        let ready = wait_until(Duration::from_secs(10), || {
            net.dnsmasq_log().contains("started")
        });
        assert!(ready, "dnsmasq did not start:\n{}", net.dnsmasq_log());
        Some(net)
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// Replaces the A records of `name` with these hosts (dnsmasq rereads the directory).
    fn set_hosts(&self, name: &str, hosts: &[u8]) {
        let text: String = hosts
            .iter()
            .map(|h| format!("{} {name}\n", self.addr(*h)))
            .collect();
        let dir = self.dir.path().join("hosts.d");
        let tmp = self.dir.path().join("hosts.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    /// Starts `raftlited` in the namespace with its HTTP API on `host:http_port` and Raft on
    /// `host:raft_port`.
    fn start_node(
        &self,
        data: &Path,
        host: u8,
        http_port: u16,
        raft_port: u16,
        args: &[&str],
    ) -> Node {
        let http = format!("{}:{http_port}", self.addr(host));
        let raft = format!("{}:{raft_port}", self.addr(host));
        let mut all = vec!["-http-addr", &http, "-raft-addr", &raft];
        all.extend_from_slice(args);
        Node::spawn_program(&self.dir.path().join("raftlited-in-ns"), data, &all, &[])
            .unwrap_or_else(|log| panic!("node did not start:\n{log}\n{}", self.dnsmasq_log()))
    }
}

impl Drop for DnsNet {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_namespace(&self.ns);
        let _ = run(&["ip", "link", "del", &self.host_link]);
        let _ = std::fs::remove_dir_all(&self.etc_dir);
    }
}

const NS_PREFIX: &str = "rl-disco-";

/// Kills what still runs in `ns`, then deletes it (its end of the veth link goes with it).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = run(&["kill", "-9", pid]);
        }
    }
    let _ = run(&["ip", "netns", "del", ns]);
}

/// Removes the namespaces (and their /etc/netns files) of test processes that are gone: a
/// killed run cannot clean up after itself.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
    }
}

fn status(node: &Node) -> Value {
    node.get("/status").json()
}

fn raft_state(node: &Node) -> String {
    status(node)["store"]["raft"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The members `/nodes` lists (a voter and non-voter alike), with whether each votes.
fn members(node: &Node) -> Vec<(String, bool)> {
    let doc = node.get("/nodes?nonvoters").json();
    let mut out: Vec<(String, bool)> = doc
        .as_object()
        .map(|m| {
            m.values()
                .map(|n| {
                    (
                        n["addr"].as_str().unwrap_or("").to_string(),
                        n["voter"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn logs(nodes: &[&Node], net: &DnsNet) -> String {
    let mut s: String = nodes
        .iter()
        .map(|n| n.log())
        .collect::<Vec<_>>()
        .join("\n----\n");
    s.push_str("\n---- dnsmasq\n");
    s.push_str(&net.dnsmasq_log());
    s
}

/// Voters find each other by a name's A records, looked up again until they do: nothing forms
/// while the name does not resolve or gives fewer than `-bootstrap-expect` nodes, the cluster
/// forms once the third node is there, and a fourth node started later joins the running
/// cluster instead of forming another.
#[test]
fn nodes_find_each_other_through_a_names_a_records() {
    let Some(net) = DnsNet::start(&[]) else {
        return;
    };
    let name = "raftlite.test";
    let data = tempfile::tempdir().unwrap();
    let disco = format!(r#"{{"name":"{name}"}}"#);
    let args = [
        "-disco-mode",
        "dns",
        "-disco-config",
        &disco,
        "-bootstrap-expect",
        "3",
    ];
    let start = |h: u8| net.start_node(&data.path().join(format!("n{h}")), h, 4001, 4002, &args);
    let mut nodes = vec![start(2), start(3)];

    // No record yet: every lookup fails, and /status says so.
    let seen_error = wait_until(Duration::from_secs(15), || {
        status(&nodes[0])["disco"]["last_error"].is_string()
    });
    assert!(
        seen_error,
        "{}",
        logs(&nodes.iter().collect::<Vec<_>>(), &net)
    );
    let disco_status = status(&nodes[0])["disco"].clone();
    assert_eq!(disco_status["mode"], "dns", "{disco_status}");
    assert_eq!(disco_status["name"], name);
    assert_eq!(disco_status["port"], 4002);

    // The records appear: the two find each other, but two is not -bootstrap-expect.
    net.set_hosts(name, &[2, 3]);
    let pair = serde_json::json!([
        format!("{}:4002", net.addr(2)),
        format!("{}:4002", net.addr(3))
    ]);
    let two = wait_until(Duration::from_secs(15), || {
        nodes
            .iter()
            .all(|n| status(n)["disco"]["last_addresses"] == pair)
    });
    assert!(
        two,
        "{}\n{}",
        status(&nodes[0]),
        logs(&nodes.iter().collect::<Vec<_>>(), &net)
    );
    std::thread::sleep(Duration::from_secs(3));
    for n in &nodes {
        assert_eq!(
            n.get("/readyz").status,
            503,
            "nothing may form with two of three"
        );
        assert!(status(n)["disco"].get("last_error").is_none());
    }

    // The third node: one cluster of three.
    net.set_hosts(name, &[2, 3, 4]);
    nodes.push(start(4));
    let all: Vec<&Node> = nodes.iter().collect();
    let formed = wait_until(Duration::from_secs(30), || {
        nodes.iter().filter(|n| raft_state(n) == "Leader").count() == 1
            && nodes.iter().all(|n| members(n).len() == 3)
    });
    assert!(formed, "{}", logs(&all, &net));
    let expected: Vec<(String, bool)> = (2..=4)
        .map(|h| (format!("{}:4002", net.addr(h)), true))
        .collect();
    assert_eq!(members(&nodes[0]), expected);
    let leader = nodes.iter().find(|n| raft_state(n) == "Leader").unwrap();
    assert!(
        leader
            .execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(42)"]"#)
            .contains(r#""rows_affected":1"#),
        "{}",
        logs(&all, &net)
    );

    // A member answers an announcement with no nodes, so an announcer whose join failed for
    // a moment (an election) joins later instead of forming a cluster with the members.
    let stranger = serde_json::json!({
        "id": "stranger", "api_addr": "198.51.100.1:4001", "raft_addr": "198.51.100.1:4002",
        "https": false, "voter": true,
    });
    let answer = reqwest::blocking::Client::new()
        .post(format!("http://{}:4002/cluster/notify", net.addr(3)))
        .header("Content-Type", "application/json")
        .body(stranger.to_string())
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().unwrap(), "[]");

    // A fourth node, started beside the running cluster: it joins it (four voters), though
    // more than -bootstrap-expect nodes answer its announcements.
    net.set_hosts(name, &[2, 3, 4, 5]);
    let fourth = start(5);
    let joined = wait_until(Duration::from_secs(30), || members(leader).len() == 4);
    assert!(joined, "{}", logs(&[leader, &fourth], &net));
    let read = wait_until(Duration::from_secs(10), || {
        fourth.query_at("SELECT x FROM t", "none").contains("42")
    });
    assert!(read, "{}", fourth.log());
    assert_eq!(raft_state(&fourth), "Follower");
    assert!(!fourth.log().contains("bootstrapped"), "{}", fourth.log());

    // A member restarted with its data does not look anything up: it is back as it was.
    let follower = nodes
        .iter()
        .position(|n| raft_state(n) == "Follower")
        .unwrap();
    let host = [2, 3, 4][follower];
    let mut old = nodes.remove(follower);
    old.stop();
    drop(old);
    let back = start(host);
    let again = wait_until(Duration::from_secs(30), || {
        back.query_at("SELECT x FROM t", "none").contains("42") && members(&back).len() == 4
    });
    assert!(again, "{}", back.log());
    assert!(
        back.log().contains("restarting as a member"),
        "{}",
        back.log()
    );
    assert!(!back.log().contains("resolved addresses"), "{}", back.log());
    drop(back);
    drop(fourth);
    drop(nodes);
}

/// SRV records name the targets and the ports: three nodes on one address with three Raft
/// ports form a cluster, and a non-voter (not in DNS) joins through the records.
#[test]
fn nodes_find_each_other_through_srv_records() {
    let mut records = Vec::new();
    for (i, port) in [5002, 5012, 5022].iter().enumerate() {
        records.push(format!(
            "--srv-host=_raftlite._tcp.db.test,n{i}.db.test,{port}"
        ));
    }
    let Some(net) = DnsNet::start(&records) else {
        return;
    };
    for i in 0..3 {
        net.set_hosts(&format!("n{i}.db.test"), &[2]);
    }
    let data = tempfile::tempdir().unwrap();
    let disco = r#"{"name":"db.test","service":"raftlite"}"#;
    let args = [
        "-disco-mode",
        "dns-srv",
        "-disco-config",
        disco,
        "-bootstrap-expect",
        "3",
    ];
    let nodes: Vec<Node> = [(5001, 5002), (5011, 5012), (5021, 5022)]
        .iter()
        .enumerate()
        .map(|(i, (http, raft))| {
            net.start_node(&data.path().join(format!("n{i}")), 2, *http, *raft, &args)
        })
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let formed = wait_until(Duration::from_secs(30), || {
        nodes.iter().filter(|n| raft_state(n) == "Leader").count() == 1
            && nodes.iter().all(|n| members(n).len() == 3)
    });
    assert!(formed, "{}", logs(&all, &net));
    let disco_status = status(&nodes[1])["disco"].clone();
    assert_eq!(disco_status["mode"], "dns-srv", "{disco_status}");
    assert_eq!(disco_status["dns_name"], "_raftlite._tcp.db.test.");
    let want: Vec<String> = [5002, 5012, 5022]
        .iter()
        .map(|p| format!("{}:{p}", net.addr(2)))
        .collect();
    assert_eq!(disco_status["last_addresses"], serde_json::json!(want));

    // A read replica needs no -bootstrap-expect: it only joins.
    let replica = net.start_node(
        &data.path().join("replica"),
        3,
        5031,
        5032,
        &[
            "-disco-mode",
            "dns-srv",
            "-disco-config",
            disco,
            "-raft-non-voter",
        ],
    );
    let joined = wait_until(Duration::from_secs(30), || {
        members(&nodes[0]).contains(&(format!("{}:5032", net.addr(3)), false))
    });
    assert!(joined, "{}", logs(&[&nodes[0], &replica], &net));
    drop(replica);
    drop(nodes);
}

/// A discovery configuration that cannot be read stops the start, with the reason.
#[test]
fn a_bad_discovery_configuration_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = common::run_binary(
        &[
            "-disco-mode",
            "dns",
            "-disco-config",
            r#"{"nmae":"typo"}"#,
            "-bootstrap-expect",
            "3",
            "-raft-addr",
            "127.0.0.1:0",
            "-http-addr",
            "127.0.0.1:0",
            dir.path().join("d").to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unknown field `nmae`"), "{out}");
    let (code, out) = common::run_binary(
        &[
            "-disco-mode",
            "consul-kv",
            "-raft-addr",
            "127.0.0.1:0",
            dir.path().join("d").to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("-disco-mode consul-kv is not supported yet"),
        "{out}"
    );
}

/// A single-member etcd on free loopback ports, stopped on drop.
struct Etcd {
    child: Child,
    client_url: String,
    _dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Etcd {
    fn start() -> Option<Etcd> {
        if !have("etcd") {
            prerequisite_missing("the etcd-kv test needs etcd (Debian's etcd-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "rl", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("rl={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let etcd = Etcd {
            child,
            client_url,
            _dir: dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let healthy = wait_until(Duration::from_secs(30), || {
            etcd.http
                .get(format!("{}/health", etcd.client_url))
                .send()
                .and_then(|r| r.text())
                .is_ok_and(|t| t.contains("true"))
        });
        assert!(healthy, "etcd did not start:\n{}", etcd.log());
        Some(etcd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// The value at `key` (through etcd's JSON gateway), if any.
    fn get(&self, key: &str) -> Option<Value> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let answer: Value = self
            .http
            .post(format!("{}/v3/kv/range", self.client_url))
            .body(serde_json::json!({"key": b64.encode(key)}).to_string())
            .send()
            .and_then(|r| r.json())
            .expect("etcd range");
        let value = answer["kvs"][0]["value"].as_str()?;
        Some(serde_json::from_slice(&b64.decode(value).unwrap()).expect("a JSON record"))
    }
}

impl Etcd {
    /// Writes `value` at `key`, or deletes the key (`None`).
    fn set(&self, key: &str, value: Option<&str>) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (path, body) = match value {
            Some(v) => (
                "/v3/kv/put",
                serde_json::json!({"key": b64.encode(key), "value": b64.encode(v)}),
            ),
            None => (
                "/v3/kv/deleterange",
                serde_json::json!({"key": b64.encode(key)}),
            ),
        };
        let status = self
            .http
            .post(format!("{}{path}", self.client_url))
            .body(body.to_string())
            .send()
            .expect("etcd write")
            .status();
        assert!(status.is_success(), "{path}: {status}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `-disco-mode etcd-kv`: three voters started at once form one cluster (one of them wins
/// etcd's create-if-absent and forms it, the others join it), the leader's record is in
/// `/<disco-key>/leader` as rqlite writes it, a read replica joins, and after the leader is
/// killed its successor records itself and a node started then joins through it.
#[test]
fn a_cluster_forms_and_grows_through_etcd() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let disco = format!(r#"{{"endpoints":["{}"]}}"#, etcd.client_url);
    let args = [
        "-disco-mode",
        "etcd-kv",
        "-disco-key",
        "rltest",
        "-disco-config",
        &disco,
    ];
    let spawn = |name: &str, extra: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(extra);
        Node::spawn(&data.path().join(name), &all).unwrap_or_else(|log| panic!("{log}"))
    };
    let mut nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| spawn(n, &[])).collect();
    let formed = wait_until(Duration::from_secs(60), || {
        nodes.iter().filter(|n| raft_state(n) == "Leader").count() == 1
            && nodes.iter().all(|n| members(n).len() == 3)
    });
    assert!(formed, "{}\n{}", common::logs_of(&nodes), etcd.log());
    let leader = nodes
        .iter()
        .position(|n| raft_state(n) == "Leader")
        .unwrap();
    let record = etcd.get("/rltest/leader").expect("the leader's record");
    assert_eq!(record["addr"], nodes[leader].raft_addr.as_str(), "{record}");
    assert_eq!(record["id"], nodes[leader].raft_addr.as_str(), "{record}");
    assert_eq!(
        record["api_addr"],
        format!("http://{}", nodes[leader].http_addr),
        "{record}"
    );
    let bootstrapped = nodes
        .iter()
        .filter(|n| n.log().contains("bootstrapped a single-node cluster"))
        .count();
    assert_eq!(bootstrapped, 1, "exactly one node forms the cluster");
    let disco_status = status(&nodes[(leader + 1) % 3])["disco"].clone();
    assert_eq!(disco_status["mode"], "etcd-kv", "{disco_status}");
    assert_eq!(disco_status["key"], "/rltest/leader");
    assert!(nodes[leader]
        .execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(7)"]"#)
        .contains(r#""rows_affected":1"#));

    let replica = spawn("replica", &["-raft-non-voter"]);
    let joined = wait_until(Duration::from_secs(30), || {
        members(&nodes[leader]).contains(&(replica.raft_addr.clone(), false))
    });
    assert!(joined, "{}", replica.log());

    // The leader dies: its successor records itself within seconds.
    let old = nodes.remove(leader);
    let old_addr = old.raft_addr.clone();
    drop(old);
    let successor = wait_until(Duration::from_secs(30), || {
        nodes.iter().any(|n| raft_state(n) == "Leader")
            && etcd
                .get("/rltest/leader")
                .is_some_and(|r| r["addr"] != old_addr.as_str())
    });
    assert!(
        successor,
        "{}",
        etcd.get("/rltest/leader").unwrap_or_default()
    );
    let new_leader = nodes.iter().find(|n| raft_state(n) == "Leader").unwrap();
    assert_eq!(
        etcd.get("/rltest/leader").unwrap()["addr"],
        new_leader.raft_addr.as_str()
    );
    let late = spawn("late", &[]);
    let joined = wait_until(Duration::from_secs(30), || {
        members(new_leader).contains(&(late.raft_addr.clone(), true))
    });
    assert!(joined, "{}", late.log());
    let read = wait_until(Duration::from_secs(10), || {
        late.query_at("SELECT x FROM t", "none").contains('7')
    });
    assert!(read, "{}", late.log());
}

/// `etcd-kv`: a key that names a node which has no state (its data is gone) is not taken as
/// leave to form a cluster (a live cluster's leader may not have recorded itself yet): the node
/// waits, and forms one once the key is deleted. A key that holds no record is an error the
/// node waits on too.
#[test]
fn an_etcd_key_naming_a_node_without_state_is_waited_on() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let raft = format!("127.0.0.1:{}", free_port());
    let key = "/stale/leader";
    etcd.set(key, Some(""));
    let disco = format!(r#"{{"endpoints":["{}"]}}"#, etcd.client_url);
    let args = [
        "-disco-mode",
        "etcd-kv",
        "-disco-key",
        "stale",
        "-disco-config",
        &disco,
        "-raft-addr",
        &raft,
    ];
    let node = Node::spawn(&data.path().join("n"), &args).unwrap_or_else(|log| panic!("{log}"));
    let complained = wait_until(Duration::from_secs(15), || {
        node.log().contains("is not a leader record")
    });
    assert!(complained, "{}", node.log());
    let record = serde_json::json!({"id": raft, "api_addr": "http://127.0.0.1:1", "addr": raft});
    etcd.set(key, Some(&record.to_string()));
    let waiting = wait_until(Duration::from_secs(15), || {
        node.log().contains("names this node, which has no state")
    });
    assert!(waiting, "{}", node.log());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        node.get("/readyz").status,
        503,
        "it must not form a cluster"
    );
    assert!(!node.log().contains("bootstrapped"), "{}", node.log());

    etcd.set(key, None);
    let formed = wait_until(Duration::from_secs(20), || {
        node.get("/readyz").status == 200
    });
    assert!(formed, "{}", node.log());
    let record = etcd.get(key).expect("its record");
    assert_eq!(record["addr"], raft.as_str());
    assert_eq!(record["api_addr"], format!("http://{}", node.http_addr));
}
