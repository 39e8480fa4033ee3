//! The shell's HTTP client: one node address plus alternatives, basic auth, a URL prefix, and
//! rqlite's failover and redirect rules.
//!
//! Owns: building URLs, following `301` answers itself (up to 21, keeping the method and the
//! body, as rqlite's shell does for leader redirects), and failing over to the next host on a
//! network error. The host that answered becomes the current one, so the prompt can show it.
//! Does not own: what a status code or body means (`session.rs`).
//!
//! Invariants: a request body is produced by a factory, so a retried or redirected upload
//! reopens its file instead of buffering it. Ordinary requests carry the `-t` timeout;
//! transfers (backup, dump, restore, boot) carry none, because a large file legitimately
//! takes longer than any fixed limit. Connecting is always bounded by `-t`.

use std::io;
use std::time::Duration;

use reqwest::blocking::{Body, Client, Response};
use reqwest::{Method, StatusCode};

use super::args::{join_host_port, ShellArgs};

/// rqlite's shell gives up after this many redirects on one host.
const MAX_REDIRECTS: usize = 21;

/// A request failure the caller may tell apart.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No host could be reached (the last one's reason).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        /// The connection was actively refused (nothing listens there).
        refused: bool,
    },
    /// Reading the local file for the request body failed.
    #[error("{0}")]
    Body(#[from] io::Error),
}

/// Whether a request is bounded by the `-t` timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The `-t/--http-timeout` value.
    Default,
    /// Unbounded: large uploads and downloads.
    Transfer,
}

/// A request body, rebuilt for every attempt.
pub type BodyFactory<'a> = &'a mut dyn FnMut() -> io::Result<Body>;

pub struct HttpClient {
    inner: Client,
    hosts: Vec<String>,
    current: usize,
    scheme: String,
    prefix: String,
    user: Option<(String, String)>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(args: &ShellArgs) -> anyhow::Result<HttpClient> {
        let mut hosts = vec![join_host_port(&args.host, args.port)];
        hosts.extend(args.alternatives.iter().cloned());
        let user = match &args.user {
            None => None,
            Some(creds) => match creds.split_once(':') {
                Some((u, p)) if !p.contains(':') => Some((u.to_string(), p.to_string())),
                _ => anyhow::bail!("invalid Basic Auth credential format"),
            },
        };
        let mut builder = Client::builder();
        // HTTPS options: a custom CA (-c), a client certificate (-d/-k), or no verification
        // (-i). Without any, reqwest's defaults (the bundled web PKI roots) apply.
        let identity = match (&args.client_cert, &args.client_key) {
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (None, None) => None,
            _ => anyhow::bail!("--client-cert and --client-key must be given together"),
        };
        if args.ca_cert.is_some() || identity.is_some() || args.insecure {
            let tls = crate::tls::client_config(
                &crate::tls::ClientTls {
                    ca: args.ca_cert.as_ref().map(Into::into),
                    identity,
                    insecure: args.insecure,
                    server_name: None,
                },
                "HTTPS",
            )?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let inner = builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(args.http_timeout)
            .timeout(None)
            .build()
            .map_err(|e| anyhow::anyhow!("create HTTP client: {e}"))?;
        Ok(HttpClient {
            inner,
            hosts,
            current: 0,
            scheme: args.scheme.clone(),
            prefix: args.prefix.clone(),
            user,
            timeout: args.http_timeout,
        })
    }

    /// The host requests go to now (`host:port`).
    pub fn current_host(&self) -> &str {
        &self.hosts[self.current]
    }

    /// The base URL of the current host, e.g. `http://127.0.0.1:4001`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.current_host())
    }

    pub fn get(&mut self, path: &str) -> Result<Response, ClientError> {
        self.send(
            Method::GET,
            path,
            None,
            &mut || Ok(Body::from("")),
            Timeout::Default,
        )
    }

    /// Sends `method` to `path` (relative to the prefix, with its query string), failing over
    /// across hosts and following redirects.
    pub fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: BodyFactory<'_>,
        timeout: Timeout,
    ) -> Result<Response, ClientError> {
        let mut last = None;
        for _ in 0..self.hosts.len() {
            let url = format!("{}{}{}", self.base_url(), self.prefix, path);
            match self.follow(&method, url, content_type, body, timeout) {
                Ok(resp) => return Ok(resp),
                Err(Attempt::Body(e)) => return Err(ClientError::Body(e)),
                Err(Attempt::Network(e)) => last = Some(e),
            }
            self.current = (self.current + 1) % self.hosts.len();
        }
        Err(last.unwrap_or_else(|| ClientError::Unreachable {
            url: self.base_url(),
            reason: "no host to try".into(),
            refused: false,
        }))
    }

    /// GET an absolute URL on no particular host: no failover (`.sysdump` visits every node).
    pub fn get_direct(&self, url: &str) -> Result<Response, ClientError> {
        let mut req = self.inner.get(url).timeout(self.timeout);
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, Some(p));
        }
        req.send().map_err(|e| unreachable_error(e, url))
    }

    fn follow(
        &self,
        method: &Method,
        mut url: String,
        content_type: Option<&str>,
        body: BodyFactory<'_>,
        timeout: Timeout,
    ) -> Result<Response, Attempt> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.inner.request(method.clone(), &url).body(body()?);
            if let Some((u, p)) = &self.user {
                req = req.basic_auth(u, Some(p));
            }
            if let Some(ct) = content_type {
                req = req.header(reqwest::header::CONTENT_TYPE, ct);
            }
            if timeout == Timeout::Default {
                req = req.timeout(self.timeout);
            }
            let resp = req
                .send()
                .map_err(|e| Attempt::Network(unreachable_error(e, &url)))?;
            if resp.status() != StatusCode::MOVED_PERMANENTLY {
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
            else {
                return Ok(resp);
            };
            url = next.to_string();
        }
        // Too many redirects: rqlite treats the host as unavailable and tries the next.
        Err(Attempt::Network(ClientError::Unreachable {
            url,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
            refused: false,
        }))
    }
}

enum Attempt {
    Network(ClientError),
    Body(io::Error),
}

impl From<io::Error> for Attempt {
    fn from(e: io::Error) -> Self {
        Attempt::Body(e)
    }
}

/// One line for a transport failure: the innermost cause says what happened.
fn unreachable_error(e: reqwest::Error, url: &str) -> ClientError {
    let refused = e.is_connect() && root_cause(&e).contains("refused");
    let reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_builder() {
        format!("invalid URL ({})", root_cause(&e))
    } else {
        root_cause(&e)
    };
    ClientError::Unreachable {
        url: url.to_string(),
        reason,
        refused,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
