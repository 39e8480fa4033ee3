//! `-disco-mode etcd-kv`: the cluster's leader is published under one key of an etcd
//! cluster (`/<disco-key>/leader`, JSON `{"id","api_addr","addr"}`, as rqlite writes it), so a
//! new node asks etcd whom to join, and the first voter to find the key absent creates it (an
//! etcd transaction: only one can) and forms the cluster alone. The leader writes the key again
//! when it becomes leader and every [`REPORT_INTERVAL`] while it leads.
//!
//! Talks to etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/kv/put`,
//! `/v3/auth/authenticate`), which every etcd 3.4+ serves on its client port: no gRPC stack.
//! Endpoints are tried in turn; a request that no endpoint answers is an error the caller
//! retries. `-disco-config` holds etcd's client configuration as rqlite reads it
//! (`endpoints`, `username`, `password`, `dial-timeout` in nanoseconds).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Discovery;
use crate::store::Store;

/// How often a node without a cluster asks etcd again (rqlite's register interval).
pub const REGISTER_INTERVAL: Duration = Duration::from_secs(3);
/// How often the leader writes its key again while it leads (rqlite's report interval).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What the leader key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub api_addr: String,
    #[serde(default)]
    pub addr: String,
}

impl LeaderRecord {
    /// The record naming `node`.
    pub fn of(node: &crate::store::NodeInfo) -> LeaderRecord {
        LeaderRecord {
            id: node.id.clone(),
            api_addr: node.api_url(),
            addr: node.raft_addr.clone(),
        }
    }
}

/// etcd's client configuration, as rqlite's `-disco-config` for `etcd-kv` holds it (the
/// JSON of Go's `clientv3.Config`).
#[derive(Debug, Deserialize, Default)]
pub struct EtcdConfig {
    #[serde(default, alias = "Endpoints")]
    endpoints: Vec<String>,
    #[serde(default, alias = "Username")]
    username: Option<String>,
    #[serde(default, alias = "Password")]
    password: Option<String>,
    /// Go's `time.Duration` in JSON: nanoseconds.
    #[serde(default, rename = "dial-timeout", alias = "DialTimeout")]
    dial_timeout: Option<u64>,
    /// Everything else: `clientv3.Config`'s tuning keys are accepted and not used (a warning
    /// says so); any other key is refused, as a misspelt one would be silently ignored.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// `clientv3.Config`'s JSON keys that tune the gRPC client raftlite does not use.
const IGNORED_KEYS: &[&str] = &[
    "auto-sync-interval",
    "dial-keep-alive-time",
    "dial-keep-alive-timeout",
    "max-call-send-msg-size",
    "max-call-recv-msg-size",
    "reject-old-cluster",
    "permit-without-stream",
    "AutoSyncInterval",
    "DialKeepAliveTime",
    "DialKeepAliveTimeout",
    "MaxCallSendMsgSize",
    "MaxCallRecvMsgSize",
    "RejectOldCluster",
    "PermitWithoutStream",
];

/// A client of one etcd cluster's leader key.
#[derive(Debug)]
pub struct EtcdKv {
    endpoints: Vec<String>,
    credentials: Option<(String, String)>,
    leader_key: String,
    client: reqwest::Client,
    last_contact: parking_lot::Mutex<Option<SystemTime>>,
}

impl EtcdKv {
    pub fn new(key: &str, config: Option<&str>) -> anyhow::Result<EtcdKv> {
        let c: EtcdConfig = match config {
            Some(t) => serde_json::from_str(t).context("read the etcd -disco-config")?,
            None => EtcdConfig::default(),
        };
        for key in c.other.keys() {
            if IGNORED_KEYS.contains(&key.as_str()) {
                tracing::warn!("-disco-config: etcd's {key:?} tunes a gRPC client; raftlite uses etcd's JSON gateway and ignores it");
            } else {
                bail!("read the etcd -disco-config: unknown field `{key}` (raftlite reads endpoints, username, password, dial-timeout)");
            }
        }
        let mut endpoints: Vec<String> = c
            .endpoints
            .iter()
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            endpoints.push("http://localhost:2379".into());
        }
        for e in &endpoints {
            let url = reqwest::Url::parse(e).with_context(|| format!("etcd endpoint {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!("etcd endpoint {e}: the scheme must be http or https");
            }
        }
        let credentials = match (c.username, c.password) {
            (Some(u), p) if !u.is_empty() => Some((u, p.unwrap_or_default())),
            (_, Some(p)) if !p.is_empty() => {
                bail!("the etcd configuration has a password but no username")
            }
            _ => None,
        };
        let dial = c
            .dial_timeout
            .filter(|&n| n > 0)
            .map_or(Duration::from_secs(5), Duration::from_nanos);
        let client = reqwest::Client::builder()
            .connect_timeout(dial)
            .timeout(dial + Duration::from_secs(10))
            .build()?;
        Ok(EtcdKv {
            endpoints,
            credentials,
            leader_key: format!("/{key}/leader"),
            client,
            last_contact: Default::default(),
        })
    }

    pub fn leader_key(&self) -> &str {
        &self.leader_key
    }

    /// The leader the key names, if it is set.
    pub async fn get_leader(&self) -> anyhow::Result<Option<LeaderRecord>> {
        let answer = self
            .call("/v3/kv/range", json!({"key": b64(&self.leader_key)}))
            .await?;
        let Some(kv) = answer["kvs"].as_array().and_then(|kvs| kvs.first()) else {
            return Ok(None);
        };
        // proto3 JSON leaves out an empty value: the key exists, but holds no record.
        let value = kv["value"].as_str().unwrap_or_default();
        let record: LeaderRecord = serde_json::from_slice(&unb64(value)?)
            .with_context(|| format!("etcd key {} is not a leader record", self.leader_key))?;
        // The address is put in a URL to join through: nothing but a host and a port.
        if !is_host_port(&record.addr) {
            bail!(
                "etcd key {} names {:?}, which is not a host:port Raft address",
                self.leader_key,
                record.addr
            );
        }
        Ok(Some(record))
    }

    /// Writes `record` only if the key does not exist; whether this call wrote it.
    pub async fn initialize_leader(&self, record: &LeaderRecord) -> anyhow::Result<bool> {
        let key = b64(&self.leader_key);
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": key, "target": "VERSION", "result": "EQUAL", "version": "0"}],
                    "success": [{"request_put": {"key": key, "value": b64(&serde_json::to_string(record)?)}}],
                }),
            )
            .await?;
        // proto3 JSON leaves out a false `succeeded`.
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Writes `record` whatever the key held.
    pub async fn set_leader(&self, record: &LeaderRecord) -> anyhow::Result<()> {
        self.call(
            "/v3/kv/put",
            json!({"key": b64(&self.leader_key), "value": b64(&serde_json::to_string(record)?)}),
        )
        .await
        .map(|_| ())
    }

    /// `/status` `disco`, with rqlite's fields (intervals in nanoseconds, as Go prints them).
    pub fn status(&self) -> Value {
        let mut doc = json!({
            "mode": "etcd-kv",
            "key": self.leader_key,
            "endpoints": self.endpoints,
            "register_interval": REGISTER_INTERVAL.as_nanos() as u64,
            "report_interval": REPORT_INTERVAL.as_nanos() as u64,
        });
        if let Some(t) = *self.last_contact.lock() {
            doc["last_contact"] = crate::http::json::rfc3339_from_system_time(t).into();
        }
        doc
    }

    /// POSTs `body` to `path` on each endpoint in turn until one answers.
    async fn call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let mut last = anyhow!("no etcd endpoint");
        for endpoint in &self.endpoints {
            match self.call_one(endpoint, path, &body).await {
                Ok(v) => {
                    *self.last_contact.lock() = Some(SystemTime::now());
                    return Ok(v);
                }
                Err(e) => last = e.context(format!("etcd at {endpoint}")),
            }
        }
        Err(last)
    }

    async fn call_one(&self, endpoint: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut request = self.client.post(format!("{endpoint}{path}"));
        if let Some((user, password)) = &self.credentials {
            let token = self
                .post(
                    self.client.post(format!("{endpoint}/v3/auth/authenticate")),
                    &json!({"name": user, "password": password}),
                )
                .await
                .context("authenticate")?;
            let token = token["token"]
                .as_str()
                .ok_or_else(|| anyhow!("etcd gave no token"))?
                .to_string();
            request = request.header("Authorization", token);
        }
        self.post(request, body).await
    }

    async fn post(&self, request: reqwest::RequestBuilder, body: &Value) -> anyhow::Result<Value> {
        let answer = request
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = answer.status();
        // etcd's answers here are one small key; a larger one is not etcd's.
        let bytes = crate::cluster::protocol::read_capped(answer, 1 << 20).await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            // The gateway's errors: {"error": "...", "message": "...", "code": N}.
            let why = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{status}: {why}");
        }
        serde_json::from_str(&text).context("etcd's answer is not JSON")
    }
}

/// While this node leads, keeps its record in the leader key: written within a second of
/// becoming leader, and again every [`REPORT_INTERVAL`] (a failed write is tried again the next
/// second). Ends when the store stops. `discovery` that is not `etcd-kv` returns at once.
pub async fn report_leadership(store: Arc<Store>, discovery: Arc<Discovery>) {
    let Discovery::EtcdKv(kv) = &*discovery else {
        return;
    };
    let me = LeaderRecord::of(store.node());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if store.is_stopping() {
            return;
        }
        if !store.is_leader() {
            reported = None;
            continue;
        }
        if reported.is_some_and(|t| t.elapsed() < REPORT_INTERVAL) {
            continue;
        }
        match kv.set_leader(&me).await {
            Ok(()) => {
                if reported.is_none() {
                    tracing::info!("discovery: recorded this node as the leader in etcd");
                }
                reported = Some(tokio::time::Instant::now());
            }
            Err(e) => tracing::warn!("discovery: could not record the leader in etcd: {e:#}"),
        }
    }
}

/// `host:port` with a non-empty host and a numeric port, nothing else (`[v6]:port` too).
fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && port.parse::<u16>().is_ok()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("etcd value is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_and_port_is_an_address() {
        for good in [
            "10.0.0.1:4002",
            "db-1.svc:4002",
            "[::1]:4002",
            "localhost:1",
        ] {
            assert!(is_host_port(good), "{good}");
        }
        for bad in [
            "",
            "host",
            ":4002",
            "host:port",
            "host:99999",
            "host:4001/db/execute?",
            "user@host:4002",
            "host:4002#x",
            "a b:4002",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn the_configuration_reads_as_rqlites() {
        let kv = EtcdKv::new(
            "rqlite",
            Some(r#"{"endpoints":["10.0.0.1:2379","https://e2:2379/"],"dial-timeout":2000000000}"#),
        )
        .unwrap();
        assert_eq!(kv.endpoints, ["http://10.0.0.1:2379", "https://e2:2379"]);
        assert_eq!(kv.leader_key(), "/rqlite/leader");
        let kv = EtcdKv::new(
            "k",
            Some(r#"{"Endpoints":["e:1"],"Username":"u","Password":"p"}"#),
        )
        .unwrap();
        assert_eq!(kv.credentials, Some(("u".into(), "p".into())));
        let kv = EtcdKv::new("k", None).unwrap();
        assert_eq!(kv.endpoints, ["http://localhost:2379"]);
        let err = |cfg| format!("{:#}", EtcdKv::new("k", Some(cfg)).unwrap_err());
        assert!(err(r#"{"endpoint":["e:1"]}"#).contains("unknown field `endpoint`"));
        // rqlite's own example configuration: tuning keys are accepted.
        EtcdKv::new(
            "k",
            Some(r#"{"endpoints":["e:1"],"auto-sync-interval":0,"dial-keep-alive-timeout":5,"reject-old-cluster":false}"#),
        )
        .unwrap();
        assert!(err(r#"{"endpoints":["ftp://e:1"]}"#).contains("scheme"));
        assert!(err(r#"{"password":"p"}"#).contains("no username"));
    }
}
