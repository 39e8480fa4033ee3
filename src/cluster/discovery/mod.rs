//! Where a forming node finds its peers when `-disco-mode` says to ask a service (rqlite's
//! modes). `etcd-kv` ([`etcd`]) publishes the leader under a key. `dns` and `dns-srv` give the
//! Raft addresses to join or announce itself to ([`AddressLookup`]), looked up again on every
//! round of the start-up loop ([`super::membership`]), so peers that appear in DNS later (pods
//! scheduled one by one) are found:
//!
//! - `dns`: every address (A and AAAA, through the system resolver, `/etc/hosts` included)
//!   of `name`, each with `port` (default: the port of this node's `-raft-addr`).
//! - `dns-srv`: the SRV records of `_<service>._tcp.<name>`, each target's addresses with the
//!   record's port. SRV lookups read the system's resolver configuration (`/etc/resolv.conf`)
//!   afresh each time, and nothing is cached between rounds: a record that changed is seen on
//!   the next round.
//!
//! `-disco-config` is the JSON configuration itself or the path of a file holding it, with
//! `$VAR` and `${VAR}` replaced from the environment (undefined ones by nothing), as rqlite
//! reads it. Unknown keys are refused: a misspelt `name` would otherwise look up the default.
//!
//! Invariant: a lookup never returns an empty list as a success; `/status` `disco` shows the
//! last lookup's addresses, its error and when DNS last answered.

pub mod etcd;

use std::time::SystemTime;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::{json, Value};

/// The most addresses a lookup gives (and SRV records it resolves).
const MAX_ADDRESSES: usize = 64;

/// How this node finds its cluster (`-disco-mode`).
#[derive(Debug)]
pub enum Discovery {
    /// `dns`, `dns-srv`: addresses to join or announce to.
    Lookup(AddressLookup),
    /// `etcd-kv`: the leader's record in etcd.
    EtcdKv(etcd::EtcdKv),
}

impl Discovery {
    /// The mode `-disco-mode`, `-disco-key` and `-disco-config` describe; `raft_port` is the
    /// port a `dns` lookup's addresses get when the configuration names none. `Ok(None)` for
    /// modes raftlite does not implement (the configuration refuses those before a node
    /// starts).
    pub fn from_flags(
        mode: &str,
        key: &str,
        config: Option<&str>,
        raft_port: u16,
    ) -> anyhow::Result<Option<Discovery>> {
        let text = config.map(read_config).transpose()?;
        let text = text.as_deref().filter(|t| !t.trim().is_empty());
        Ok(match mode {
            "etcd-kv" => Some(Discovery::EtcdKv(etcd::EtcdKv::new(key, text)?)),
            _ => AddressLookup::from_config(mode, text, raft_port)?.map(Discovery::Lookup),
        })
    }

    /// `/status` `disco`.
    pub fn status(&self) -> Value {
        match self {
            Discovery::Lookup(l) => l.status(),
            Discovery::EtcdKv(kv) => kv.status(),
        }
    }
}

/// The DNS modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `dns`: the addresses of `name`, each with `port`.
    Dns { name: String, port: u16 },
    /// `dns-srv`: the targets and ports of `_<service>._tcp.<name>`.
    DnsSrv { name: String, service: String },
}

/// A DNS source and what its last lookup found.
#[derive(Debug)]
pub struct AddressLookup {
    source: Source,
    last: parking_lot::Mutex<LastLookup>,
}

#[derive(Debug, Default)]
struct LastLookup {
    addresses: Vec<String>,
    error: Option<String>,
    contact: Option<SystemTime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsConfig {
    name: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSrvConfig {
    name: Option<String>,
    service: Option<String>,
}

impl AddressLookup {
    fn from_config(
        mode: &str,
        text: Option<&str>,
        raft_port: u16,
    ) -> anyhow::Result<Option<AddressLookup>> {
        let source = match mode {
            "dns" => {
                let c: DnsConfig = match text {
                    Some(t) => serde_json::from_str(t).context("read the DNS -disco-config")?,
                    None => DnsConfig {
                        name: None,
                        port: None,
                    },
                };
                Source::Dns {
                    name: c.name.filter(|n| !n.is_empty()).unwrap_or("rqlite".into()),
                    port: c.port.filter(|&p| p != 0).unwrap_or(raft_port),
                }
            }
            "dns-srv" => {
                let c: DnsSrvConfig = match text {
                    Some(t) => serde_json::from_str(t).context("read the DNS SRV -disco-config")?,
                    None => DnsSrvConfig {
                        name: None,
                        service: None,
                    },
                };
                Source::DnsSrv {
                    name: c.name.filter(|n| !n.is_empty()).unwrap_or("rqlite".into()),
                    service: c
                        .service
                        .filter(|s| !s.is_empty())
                        .unwrap_or("rqlite".into()),
                }
            }
            _ => return Ok(None),
        };
        if let Source::Dns { port: 0, .. } = source {
            bail!("-disco-mode dns needs a port: give one in -disco-config ({{\"port\": N}}) or a fixed -raft-addr port");
        }
        Ok(Some(AddressLookup::new(source)))
    }

    pub fn new(source: Source) -> AddressLookup {
        AddressLookup {
            source,
            last: Default::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The Raft addresses DNS gives now, sorted. An answer without addresses is an error.
    pub async fn lookup(&self) -> anyhow::Result<Vec<String>> {
        let found = match &self.source {
            Source::Dns { name, port } => addresses_of(name, *port).await,
            Source::DnsSrv { name, service } => srv_addresses(name, service).await,
        };
        let mut last = self.last.lock();
        match found {
            Ok(mut addresses) => {
                addresses.sort();
                addresses.dedup();
                // A hostile or broken answer must not make each round call thousands of
                // addresses; a cluster larger than this is found through its members.
                addresses.truncate(MAX_ADDRESSES);
                last.contact = Some(SystemTime::now());
                last.error = None;
                if addresses != last.addresses {
                    tracing::info!(?addresses, "discovery: resolved addresses");
                    last.addresses.clone_from(&addresses);
                }
                Ok(addresses)
            }
            Err(e) => {
                last.error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// `/status` `disco`: rqlite's fields for the mode, and the last lookup.
    pub fn status(&self) -> Value {
        let mut doc = match &self.source {
            Source::Dns { name, port } => json!({"mode": "dns", "name": name, "port": port}),
            Source::DnsSrv { name, service } => json!({
                "mode": "dns-srv",
                "name": name,
                "service": service,
                "dns_name": srv_name(name, service),
            }),
        };
        let last = self.last.lock();
        if let Some(e) = &last.error {
            doc["last_error"] = e.clone().into();
        }
        if let Some(t) = last.contact {
            doc["last_contact"] = crate::http::json::rfc3339_from_system_time(t).into();
        }
        if !last.addresses.is_empty() {
            doc["last_addresses"] = json!(last.addresses);
        }
        doc
    }
}

/// `-disco-config`: a readable file's contents, else the text itself; environment variables
/// expanded either way.
fn read_config(value: &str) -> anyhow::Result<String> {
    let text = match std::fs::read_to_string(value) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => value.to_string(),
        // A path that exists but cannot be read is the operator's mistake, not JSON.
        Err(e) if std::path::Path::new(value).exists() => {
            return Err(e).with_context(|| format!("read -disco-config file {value}"))
        }
        Err(_) => value.to_string(),
    };
    Ok(expand_env(&text, |k| std::env::var(k).ok()))
}

/// `$VAR` and `${VAR}` replaced by `var(VAR)` (nothing when unset), exactly as Go's
/// `os.ExpandEnv` (rqlite's): `$1`, `$$`, `$*`… name one character; a `$` followed by nothing
/// that starts a name is kept; malformed `${` and `${}` are dropped.
fn expand_env(text: &str, var: impl Fn(&str) -> Option<String>) -> String {
    fn special(c: u8) -> bool {
        matches!(
            c,
            b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
        )
    }
    fn alphanumeric(c: u8) -> bool {
        c == b'_' || c.is_ascii_alphanumeric()
    }
    /// The name after a `$` and how many bytes it takes (Go's `getShellName`).
    fn name(s: &[u8]) -> (&[u8], usize) {
        if s[0] == b'{' {
            if s.len() > 2 && special(s[1]) && s[2] == b'}' {
                return (&s[1..2], 3);
            }
            return match s.iter().skip(1).position(|&c| c == b'}') {
                Some(0) => (&[], 2),
                Some(i) => (&s[1..i + 1], i + 2),
                None => (&[], 1),
            };
        }
        if special(s[0]) {
            return (&s[..1], 1);
        }
        let n = s.iter().take_while(|&&c| alphanumeric(c)).count();
        (&s[..n], n)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.extend_from_slice(&bytes[i..j]);
            let (n, width) = name(&bytes[j + 1..]);
            if n.is_empty() && width == 0 {
                out.push(b'$');
            } else if !n.is_empty() {
                let n = String::from_utf8_lossy(n);
                out.extend_from_slice(var(&n).unwrap_or_default().as_bytes());
            }
            j += width;
            i = j + 1;
        }
        j += 1;
    }
    out.extend_from_slice(&bytes[i.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

fn srv_name(name: &str, service: &str) -> String {
    format!("_{service}._tcp.{}.", name.trim_end_matches('.'))
}

/// Every address of `host` through the system resolver, each with `port`.
async fn addresses_of(host: &str, port: u16) -> anyhow::Result<Vec<String>> {
    let found: Vec<String> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("look up {host}"))?
        .map(|a| a.to_string())
        .collect();
    if found.is_empty() {
        bail!("{host} has no addresses");
    }
    Ok(found)
}

async fn srv_addresses(name: &str, service: &str) -> anyhow::Result<Vec<String>> {
    let query = srv_name(name, service);
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .context("read the system's resolver configuration")?
        .build();
    let records = resolver
        .srv_lookup(query.as_str())
        .await
        .with_context(|| format!("look up SRV {query}"))?;
    let mut found = Vec::new();
    for record in records.iter().take(MAX_ADDRESSES) {
        let target = record.target().to_utf8();
        found.extend(addresses_of(&target, record.port()).await?);
    }
    if found.is_empty() {
        bail!("{query} has no SRV records");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(k: &str) -> Option<String> {
        match k {
            "NAME" => Some("db.example".into()),
            "P" => Some("4002".into()),
            _ => None,
        }
    }

    #[test]
    fn environment_variables_are_expanded_as_go_does() {
        assert_eq!(
            expand_env(r#"{"name":"$NAME","port":${P}}"#, vars),
            r#"{"name":"db.example","port":4002}"#
        );
        assert_eq!(expand_env("a$UNSET-b", vars), "a-b");
        // Go: digits and specials are one-character names; a lone `$` stays.
        assert_eq!(expand_env("cost $5 and $", vars), "cost  and $");
        assert_eq!(expand_env("$12", vars), "2");
        assert_eq!(expand_env("a $ b", vars), "a $ b");
        assert_eq!(expand_env("x$$y", vars), "xy");
        // Go drops malformed `${` and `${}`.
        assert_eq!(expand_env("${unclosed", vars), "unclosed");
        assert_eq!(expand_env("a${}b", vars), "ab");
        assert_eq!(expand_env("${P}${NAME}", vars), "4002db.example");
        assert_eq!(expand_env("no vars", vars), "no vars");
        assert_eq!(expand_env("é$NAME€", vars), "édb.example€");
    }

    /// The DNS source the flags give.
    fn source(mode: &str, config: Option<&str>, port: u16) -> Source {
        match Discovery::from_flags(mode, "rqlite", config, port) {
            Ok(Some(Discovery::Lookup(l))) => l.source().clone(),
            other => panic!("not a DNS source: {other:?}"),
        }
    }

    #[test]
    fn configurations_have_rqlites_defaults() {
        assert_eq!(
            source("dns", None, 4002),
            Source::Dns {
                name: "rqlite".into(),
                port: 4002
            }
        );
        assert_eq!(
            source("dns", Some(r#"{"name":"db.svc","port":7000}"#), 4002),
            Source::Dns {
                name: "db.svc".into(),
                port: 7000
            }
        );
        assert_eq!(
            source("dns-srv", Some(r#"{"name":"db.svc"}"#), 4002),
            Source::DnsSrv {
                name: "db.svc".into(),
                service: "rqlite".into()
            }
        );
        let srv = AddressLookup::new(source("dns-srv", Some(r#"{"name":"db.svc"}"#), 4002));
        assert_eq!(srv.status()["dns_name"], "_rqlite._tcp.db.svc.");
        match Discovery::from_flags("etcd-kv", "mine", None, 4002) {
            Ok(Some(Discovery::EtcdKv(kv))) => assert_eq!(kv.leader_key(), "/mine/leader"),
            other => panic!("{other:?}"),
        }
        assert!(Discovery::from_flags("consul-kv", "rqlite", None, 4002)
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let err = |mode, cfg: &str, port| {
            format!(
                "{:#}",
                Discovery::from_flags(mode, "rqlite", Some(cfg), port).unwrap_err()
            )
        };
        assert!(err("dns", r#"{"nmae":"x"}"#, 4002).contains("unknown field `nmae`"));
        assert!(err("dns", "{not json", 4002).contains("DNS -disco-config"));
        assert!(err("dns", r#"{"port":70000}"#, 4002).contains("-disco-config"));
        assert!(err("dns", r#"{"name":"x"}"#, 0).contains("needs a port"));
        assert!(err("dns-srv", r#"{"service":7}"#, 4002).contains("SRV -disco-config"));
        assert!(err("etcd-kv", r#"{"endpoints":"e:1"}"#, 4002).contains("etcd -disco-config"));
    }

    #[test]
    fn the_configuration_may_be_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disco.json");
        std::fs::write(&path, r#"{"name":"from.file","port":5000}"#).unwrap();
        assert_eq!(
            source("dns", path.to_str(), 4002),
            Source::Dns {
                name: "from.file".into(),
                port: 5000
            }
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_shown_in_status() {
        let d = AddressLookup::new(Source::Dns {
            name: "no-such-host.invalid".into(),
            port: 4002,
        });
        assert!(d.lookup().await.is_err());
        assert!(d.status()["last_error"].is_string(), "{}", d.status());
        let d = AddressLookup::new(Source::Dns {
            name: "localhost".into(),
            port: 4002,
        });
        let found = d.lookup().await.unwrap();
        assert!(found.contains(&"127.0.0.1:4002".to_string()), "{found:?}");
        assert_eq!(d.status()["last_addresses"], json!(found));
        assert!(d.status()["last_contact"].is_string());
    }
}
