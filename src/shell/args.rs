//! The shell's command line, as rqlite's shell takes it (`-H/--host`, `-p/--port`, …) and the
//! `RQLITE_HOST` environment variable.
//!
//! Owns: turning `argv` (+ env) into [`ShellArgs`]. Accepted forms: `-H x`, `-H=x`, `--host x`,
//! `--host=x`; boolean flags take no value. Errors are one line, for the caller to print.

use std::time::Duration;

use crate::flags::parse_go_duration;

/// Everything the command line sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellArgs {
    pub host: String,
    pub port: u16,
    pub scheme: String,
    /// URL prefix before API paths; always starts and ends with `/`.
    pub prefix: String,
    /// `host:port` pairs to fail over to, in order.
    pub alternatives: Vec<String>,
    pub insecure: bool,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// `user:password` for HTTP basic auth.
    pub user: Option<String>,
    pub http_timeout: Duration,
    pub version: bool,
    pub help: bool,
    /// `--exit-status`: exit 1 when the node cannot be reached, or (input not from a
    /// terminal) when any command failed. Off, the shell exits 0 as rqlite's does.
    pub exit_status: bool,
}

impl Default for ShellArgs {
    fn default() -> Self {
        ShellArgs {
            host: "127.0.0.1".into(),
            port: 4001,
            scheme: "http".into(),
            prefix: "/".into(),
            alternatives: Vec::new(),
            insecure: false,
            exit_status: false,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            user: None,
            http_timeout: Duration::from_secs(30),
            version: false,
            help: false,
        }
    }
}

pub const USAGE: &str = "\
Usage: raftlite [options]
       raftlite dump DB_FILE [TABLE...]   (offline: SQL text dump of a local SQLite file)

Options:
  -h, --help                 display help information
  -a, --alternatives         comma separated list of 'host:port' pairs to use as fallback
  -s, --scheme[=http]        protocol scheme (http or https)
  -H, --host[=127.0.0.1]     raftlited host address
  -p, --port[=4001]          raftlited host port
  -P, --prefix[=/]           raftlited HTTP URL prefix
  -i, --insecure[=false]     do not verify raftlited HTTPS certificate
  -c, --ca-cert              path to trusted X.509 root CA certificate
  -d, --client-cert          path to client X.509 certificate for mutual TLS
  -k, --client-key           path to client X.509 key for mutual TLS
  -u, --user                 set basic auth credentials in form username:password
  -v, --version              display CLI version
  -t, --http-timeout[=30s]   set timeout on HTTP requests
      --exit-status[=false]  exit 1 if the node cannot be reached or, reading a pipe or a
                             file, if any command failed (rqlite's shell always exits 0)

Environment:
  RQLITE_HOST=[scheme://]host[:port]   used when none of -H, -p, -s is given
";

/// Parses `args` (without the program name). `env_host` is `RQLITE_HOST`, if set.
pub fn parse_args(args: &[String], env_host: Option<&str>) -> Result<ShellArgs, String> {
    let mut out = ShellArgs::default();
    let mut addr_flag_set = false;
    let mut i = 0;
    while i < args.len() {
        let raw = &args[i];
        i += 1;
        let (name, inline) = match raw.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (raw.as_str(), None),
        };
        let long = match name {
            "-h" | "--help" => "help",
            "-v" | "--version" => "version",
            "-i" | "--insecure" => "insecure",
            "--exit-status" => "exit-status",
            "-H" | "--host" => "host",
            "-p" | "--port" => "port",
            "-s" | "--scheme" => "scheme",
            "-P" | "--prefix" => "prefix",
            "-a" | "--alternatives" => "alternatives",
            "-c" | "--ca-cert" => "ca-cert",
            "-d" | "--client-cert" => "client-cert",
            "-k" | "--client-key" => "client-key",
            "-u" | "--user" => "user",
            "-t" | "--http-timeout" => "http-timeout",
            _ => return Err(format!("unknown argument: {raw} (see --help)")),
        };
        if matches!(long, "help" | "version" | "insecure" | "exit-status") {
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("invalid value for --{long}: {v}")),
            };
            match long {
                "help" => out.help = on,
                "version" => out.version = on,
                "exit-status" => out.exit_status = on,
                _ => out.insecure = on,
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("missing value for --{long}"))?;
                i += 1;
                v.clone()
            }
        };
        match long {
            "host" => {
                out.host = value;
                addr_flag_set = true;
            }
            "port" => {
                out.port = parse_port(&value)?;
                addr_flag_set = true;
            }
            "scheme" => {
                out.scheme = value;
                addr_flag_set = true;
            }
            "prefix" => out.prefix = value,
            "alternatives" => {
                out.alternatives = value
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "ca-cert" => out.ca_cert = Some(value),
            "client-cert" => out.client_cert = Some(value),
            "client-key" => out.client_key = Some(value),
            "user" => out.user = Some(value),
            _ => {
                out.http_timeout = parse_go_duration(&value)
                    .map_err(|_| format!("invalid value for --http-timeout: {value}"))?
            }
        }
    }
    if !addr_flag_set {
        if let Some(env) = env_host.filter(|e| !e.is_empty()) {
            apply_host_env(&mut out, env)?;
        }
    }
    if out.scheme != "http" && out.scheme != "https" {
        return Err(format!(
            "invalid scheme '{}': use 'http' or 'https'",
            out.scheme
        ));
    }
    if !out.prefix.starts_with('/') {
        out.prefix.insert(0, '/');
    }
    if !out.prefix.ends_with('/') {
        out.prefix.push('/');
    }
    Ok(out)
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.parse()
        .map_err(|_| format!("invalid port '{v}': use a number from 0 to 65535"))
}

/// `RQLITE_HOST=[scheme://]host[:port]`.
fn apply_host_env(out: &mut ShellArgs, env: &str) -> Result<(), String> {
    let rest = match env.split_once("://") {
        Some((scheme, rest)) => {
            out.scheme = scheme.to_string();
            rest
        }
        None => env,
    };
    let bad = || format!("invalid RQLITE_HOST '{env}': use [scheme://]host[:port]");
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        }
    };
    if !host.is_empty() {
        out.host = host.to_string();
    }
    if let Some(p) = port {
        out.port = parse_port(p).map_err(|_| bad())?;
    }
    Ok(())
}

/// `host:port`, with an IPv6 host bracketed (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str], env: Option<&str>) -> Result<ShellArgs, String> {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        parse_args(&args, env)
    }

    #[test]
    fn short_long_and_inline_forms() {
        let a = parse(
            &[
                "-H",
                "h",
                "--port=4011",
                "-P",
                "api",
                "-u",
                "u:p",
                "-t",
                "2s",
                "-i",
            ],
            None,
        )
        .unwrap();
        assert_eq!(a.host, "h");
        assert_eq!(a.port, 4011);
        assert_eq!(a.prefix, "/api/");
        assert_eq!(a.user.as_deref(), Some("u:p"));
        assert_eq!(a.http_timeout, Duration::from_secs(2));
        assert!(a.insecure);
        assert!(!a.exit_status, "rqlite's exit status unless asked");
        assert!(parse(&["--exit-status"], None).unwrap().exit_status);
        assert!(!parse(&["--exit-status=false"], None).unwrap().exit_status);
        let a = parse(&["--alternatives", "a:1, ,b:2,"], None).unwrap();
        assert_eq!(a.alternatives, vec!["a:1", "b:2"]);
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        assert!(parse(&["--bogus"], None).unwrap_err().contains("--bogus"));
        assert!(parse(&["-p", "x"], None)
            .unwrap_err()
            .contains("invalid port"));
        assert!(parse(&["-p"], None).unwrap_err().contains("missing value"));
        assert!(parse(&["-s", "ftp"], None).unwrap_err().contains("scheme"));
    }

    #[test]
    fn rqlite_host_env_applies_only_without_address_flags() {
        let a = parse(&[], Some("https://db.example:4444")).unwrap();
        assert_eq!(
            (a.scheme.as_str(), a.host.as_str(), a.port),
            ("https", "db.example", 4444)
        );
        let a = parse(&[], Some("[::1]:5")).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 5));
        let a = parse(&["-p", "9"], Some("other:5")).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 9));
        assert!(parse(&[], Some("h:notaport")).is_err());
    }

    #[test]
    fn join_host_port_brackets_ipv6() {
        assert_eq!(join_host_port("::1", 4001), "[::1]:4001");
        assert_eq!(join_host_port("127.0.0.1", 4001), "127.0.0.1:4001");
    }
}
