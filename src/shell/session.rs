//! One shell session: the settings (`.timer`, `.mode`, `.consistency`…), where results go
//! (`.output`), and what each command does against the node.
//!
//! Owns: the mapping from a [`Command`] to HTTP calls and to rqlite's messages. Results of SQL
//! and of `.tables`/`.schema`/`.indexes` go to the output (stdout or the `.output` file);
//! everything else, `ERR!` lines included, goes to stdout, as in rqlite's shell.
//!
//! Invariants: a command returns `Err` with one line of text for the caller to print as
//! `ERR! …`; a per-statement SQL error prints `Error: …` and marks the session as failed.
//! Nothing here exits the process or panics on what the server sends.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use reqwest::blocking::Body;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::client::{HttpClient, Timeout};
use super::output::{write_table, write_tree, Table};
use super::parse::{parse_line, Command, Consistency, Mode, Setting, SqlBuffer, HELP};
use super::transfer::{download, status_error, write_small_file, Compression, Upload};
use crate::db::STATE_TABLE;

/// Settings changed by dot-commands.
#[derive(Debug, Default)]
pub struct Settings {
    pub timer: bool,
    pub changes: bool,
    pub force_writes: bool,
    pub blob_array: bool,
    pub consistency: Consistency,
    pub mode: Mode,
}

/// What the caller does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

pub struct Session {
    pub client: HttpClient,
    pub settings: Settings,
    output: Option<(String, File)>,
    /// Set when any command failed (an `ERR!` or an `Error:` line); the exit status reads it.
    pub failed: bool,
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn url_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    // rqlite's presence flags (`timings`, `blob_array`) carry an empty value: `timings=`.
    s.finish()
}

impl Session {
    pub fn new(client: HttpClient) -> Session {
        Session {
            client,
            settings: Settings::default(),
            output: None,
            failed: false,
        }
    }

    /// The prompt: the host requests go to now (it changes after a failover).
    pub fn prompt(&self) -> String {
        format!("{}> ", self.client.current_host())
    }

    /// Runs one parsed line and prints what it produced; errors print as `ERR! …`.
    pub fn run_line(&mut self, line: &str) -> Flow {
        let result = parse_line(line)
            .map_err(anyhow::Error::from)
            .and_then(|cmd| self.run(cmd));
        match result {
            Ok(flow) => flow,
            Err(e) => {
                self.fail(&e);
                Flow::Continue
            }
        }
    }

    /// Runs SQL text that is already known to be SQL (a gathered statement).
    pub fn run_sql(&mut self, sql: &str) -> Flow {
        match self.run(Command::Sql(sql.to_string())) {
            Ok(flow) => flow,
            Err(e) => {
                self.fail(&e);
                Flow::Continue
            }
        }
    }

    /// Prints an error as rqlite does and remembers the failure.
    pub fn fail(&mut self, e: &anyhow::Error) {
        self.failed = true;
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "ERR! {}", one_line(e));
        let _ = stdout.flush();
    }

    fn out(&mut self) -> Box<dyn Write + '_> {
        match &mut self.output {
            Some((_, f)) => Box::new(f),
            None => Box::new(io::stdout().lock()),
        }
    }

    fn say(&mut self, text: &str) {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// Runs one command.
    pub fn run(&mut self, cmd: Command) -> anyhow::Result<Flow> {
        match cmd {
            Command::Exit => return Ok(Flow::Exit),
            Command::Sql(sql) => self.sql(&sql)?,
            // rqlite's queries, minus raftlited's internal `_raftlite_state` table (which no
            // backup or dump contains either).
            Command::Tables => self.meta_query(
                &format!(r#"SELECT name FROM sqlite_master WHERE type="table" AND tbl_name != '{STATE_TABLE}' ORDER BY name ASC"#),
            )?,
            Command::Indexes => self.meta_query(
                &format!(r#"SELECT sql FROM sqlite_master WHERE type="index" AND tbl_name != '{STATE_TABLE}'"#),
            )?,
            Command::Schema => self.meta_query(
                &format!("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name != '{STATE_TABLE}' ORDER BY rowid ASC"),
            )?,
            Command::Backup(file) => {
                download(&mut self.client, "db/backup", Path::new(&file))?;
                self.say("backup file written successfully");
            }
            Command::Dump(file, tables) => {
                let mut pairs = vec![("fmt", "sql".to_string())];
                if !tables.is_empty() {
                    pairs.push(("tables", tables.join(",")));
                }
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let path = format!("db/backup?{}", url_encode(&pairs));
                download(&mut self.client, &path, Path::new(&file))?;
                self.say("SQL text file written successfully");
            }
            Command::Restore(file) => self.restore(&file)?,
            Command::Boot(file) => self.boot(&file)?,
            Command::Status(key) => self.json_tree("status", key)?,
            Command::Expvar(key) => self.json_tree("debug/vars", key)?,
            Command::Nodes { all } => {
                self.json_tree(if all { "nodes?nonvoters" } else { "nodes" }, None)?
            }
            Command::Leader => self.leader()?,
            Command::Extensions => self.extensions()?,
            Command::Ready => {
                let resp = self.client.get("readyz")?;
                let ok = resp.status() == StatusCode::OK;
                self.say(if ok { "ready" } else { "not ready" });
            }
            Command::Remove(id) => {
                let body = serde_json::json!({ "id": id }).to_string();
                let resp = self.client.send(
                    Method::DELETE,
                    "remove",
                    Some("application/json"),
                    &mut || Ok(Body::from(body.clone())),
                    Timeout::Default,
                )?;
                expect_ok(resp, &[StatusCode::OK])?;
            }
            Command::Reap => {
                let resp = self.post_empty("reap", None)?;
                let resp = expect_ok(resp, &[StatusCode::OK])?;
                let v: Value = serde_json::from_reader(resp)
                    .map_err(|e| anyhow!("failed to decode response: {e}"))?;
                let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
                let text = format!(
                    "snapshots reaped: {}, WALs checkpointed: {}",
                    n("snapshots_reaped"),
                    n("wals_checkpointed")
                );
                self.say(&text);
            }
            Command::Snapshot(n) => {
                let resp = self.post_empty(&format!("snapshot?trailing_logs={n}"), None)?;
                expect_ok(resp, &[StatusCode::OK, StatusCode::NO_CONTENT])?;
            }
            Command::Stepdown(id) => {
                let body = id.map(|id| serde_json::json!({ "id": id }).to_string());
                let resp = self.post_empty("leader?wait=true", body)?;
                expect_ok(resp, &[StatusCode::OK])?;
            }
            Command::Sysdump(file) => self.sysdump(&file)?,
            Command::Read(file) => self.read_file(&file)?,
            Command::Output(None) => self.output = None,
            Command::Output(Some(file)) => {
                let f = File::create(&file).with_context(|| format!("cannot write {file}"))?;
                self.output = Some((file, f));
            }
            Command::Consistency(None) => {
                let c = self.settings.consistency.as_str();
                self.say(c)
            }
            Command::Consistency(Some(c)) => self.settings.consistency = c,
            Command::Mode(None) => {
                let m = self.settings.mode.as_str();
                self.say(m)
            }
            Command::Mode(Some(m)) => self.settings.mode = m,
            Command::Toggle(setting, value) => {
                let s = &mut self.settings;
                let flag = match setting {
                    Setting::Timer => &mut s.timer,
                    Setting::Changes => &mut s.changes,
                    Setting::ForceWrites => &mut s.force_writes,
                    Setting::BlobArray => &mut s.blob_array,
                };
                match value {
                    Some(v) => *flag = v,
                    None => {
                        let text = on_off(*flag);
                        self.say(text)
                    }
                }
            }
            Command::Show => {
                let s = &self.settings;
                let output = self.output.as_ref().map_or("stdout", |(n, _)| n.as_str());
                let text = format!(
                    "  blobarray: {}\n  changes: {}\n  consistency: {}\n  forcewrites: {}\n  mode: {}\n  output: {}\n  timer: {}",
                    on_off(s.blob_array),
                    on_off(s.changes),
                    s.consistency.as_str(),
                    on_off(s.force_writes),
                    s.mode.as_str(),
                    output,
                    on_off(s.timer)
                );
                self.say(&text);
            }
            Command::Help => self.say(&HELP.join("\n")),
            Command::Unknown(word) => {
                bail!("unknown command '{word}'. Enter \".help\" for usage hints")
            }
        }
        Ok(Flow::Continue)
    }

    fn post_empty(
        &mut self,
        path: &str,
        json: Option<String>,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let ct = json.as_ref().map(|_| "application/json");
        let body = json.unwrap_or_default();
        Ok(self.client.send(
            Method::POST,
            path,
            ct,
            &mut || Ok(Body::from(body.clone())),
            Timeout::Default,
        )?)
    }

    /// A GET whose answer must be 200 and JSON.
    fn get_json(&mut self, path: &str) -> anyhow::Result<Value> {
        let resp = self.client.get(path)?;
        let resp = expect_ok(resp, &[StatusCode::OK])?;
        let text = resp.text().context("read response")?;
        serde_json::from_str(&text).map_err(|e| anyhow!("unexpected response from server: {e}"))
    }

    /// SQL text: `/db/request` (or `/db/execute` with `.forcewrites on`).
    fn sql(&mut self, sql: &str) -> anyhow::Result<()> {
        let endpoint = if self.settings.force_writes {
            "db/execute"
        } else {
            "db/request"
        };
        let path = if self.settings.timer {
            format!("{endpoint}?timings")
        } else {
            endpoint.to_string()
        };
        let body = Value::Array(vec![Value::String(sql.to_string())]).to_string();
        let resp = self.client.send(
            Method::POST,
            &path,
            Some("application/json"),
            &mut || Ok(Body::from(body.clone())),
            Timeout::Default,
        )?;
        let v = response_json(resp)?;
        let results = results_of(&v)?;
        for r in results {
            self.print_result(r, false)?;
        }
        Ok(())
    }

    /// Prints one entry of `results`: a table, `N row(s) affected`, or `Error: …`.
    fn print_result(&mut self, r: &Value, meta: bool) -> anyhow::Result<()> {
        let timer = self.settings.timer;
        let time = r.get("time").and_then(Value::as_f64).unwrap_or(0.0);
        if let Some(err) = r.get("error").and_then(Value::as_str) {
            if meta {
                bail!("{err}");
            }
            self.failed = true;
            writeln!(self.out(), "Error: {err}")?;
            return Ok(());
        }
        let is_query = meta
            || ["columns", "types", "values"]
                .iter()
                .any(|k| r.get(k).is_some());
        let mode = self.settings.mode;
        let changes = self.settings.changes;
        let mut out = self.out();
        if is_query {
            let columns = r
                .get("columns")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .map(|v| v.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let empty = Vec::new();
            let values = r.get("values").and_then(Value::as_array).unwrap_or(&empty);
            write_table(&mut out, &Table { columns, values }, mode)?;
            if timer {
                writeln!(out, "Run Time: {time:.6} seconds")?;
            }
        } else {
            let n = r.get("rows_affected").and_then(Value::as_i64).unwrap_or(0);
            let word = if n > 1 { "rows" } else { "row" };
            if timer {
                writeln!(out, "{n} {word} affected ({time:.6} sec)")?;
            } else {
                writeln!(out, "{n} {word} affected")?;
            }
            if changes {
                let id = r.get("last_insert_id").and_then(Value::as_i64).unwrap_or(0);
                writeln!(out, "last insert ID: {id}")?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// `.tables`, `.schema`, `.indexes`: a GET query at the chosen consistency level.
    fn meta_query(&mut self, q: &str) -> anyhow::Result<()> {
        let mut pairs = vec![("level", self.settings.consistency.as_str()), ("q", q)];
        if self.settings.timer {
            pairs.push(("timings", ""));
        }
        if self.settings.blob_array {
            pairs.push(("blob_array", ""));
        }
        let resp = self
            .client
            .get(&format!("db/query?{}", url_encode(&pairs)))?;
        let v = response_json(resp)?;
        match results_of(&v)? {
            [one] => self.print_result(one, true),
            other => bail!("unexpected results length: {}", other.len()),
        }
    }

    fn json_tree(&mut self, path: &str, key: Option<String>) -> anyhow::Result<()> {
        let v = self.get_json(path)?;
        let Value::Object(mut m) = v else {
            bail!("unexpected response from server: not a JSON object");
        };
        if let Some(k) = key {
            let picked = m.remove(&k).unwrap_or(Value::Null);
            m = Map::from_iter([(k, picked)]);
        }
        let mut stdout = io::stdout().lock();
        write_tree(&mut stdout, 0, &m)?;
        Ok(())
    }

    fn leader(&mut self) -> anyhow::Result<()> {
        let v = self.get_json("nodes")?;
        let nodes = v
            .as_object()
            .ok_or_else(|| anyhow!("unexpected response from server"))?;
        let (id, node) = nodes
            .iter()
            .find(|(_, n)| n.get("leader").and_then(Value::as_bool) == Some(true))
            .ok_or_else(|| anyhow!("no leader found"))?;
        let m = Map::from_iter([(id.clone(), node.clone())]);
        write_tree(&mut io::stdout().lock(), 0, &m)?;
        Ok(())
    }

    fn extensions(&mut self) -> anyhow::Result<()> {
        let resp = self.client.get("status?key=extensions")?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let resp = expect_ok(resp, &[StatusCode::OK])?;
        let v: Value = serde_json::from_reader(resp)
            .map_err(|e| anyhow!("unexpected response from server: {e}"))?;
        if let Some(names) = v.get("names").and_then(Value::as_array) {
            for n in names {
                self.say(n.as_str().unwrap_or_default());
            }
        }
        Ok(())
    }

    /// `.restore FILE`: a SQLite file or SQL text, streamed to `/db/load`.
    fn restore(&mut self, file: &str) -> anyhow::Result<()> {
        let status = self.get_json("status")?;
        if status.get("store").is_none() {
            bail!("unexpected server response: store status not found");
        }
        let up = Upload::open(file)?;
        let (content_type, suffix): (&str, Vec<u8>) = if up.is_sqlite {
            ("application/octet-stream", Vec::new())
        } else {
            // rqlite's shell restores the node's foreign-key setting after the dump's
            // `PRAGMA foreign_keys=OFF`. The newline keeps a file without one from gluing the
            // pragma onto its last line.
            let fk = status.pointer("/store/sqlite3/fk_constraints") == Some(&"enabled".into());
            let pragma: &[u8] = if fk {
                b"\nPRAGMA foreign_keys=ON;"
            } else {
                b"\nPRAGMA foreign_keys=OFF;"
            };
            let suffix = match up.compression {
                None => pragma.to_vec(),
                // A second frame: the server reads concatenated zstd frames as one stream.
                Some(Compression::Zstd) => zstd::encode_all(pragma, 3)?,
                // The server takes one gzip member and nothing after it: no pragma.
                Some(Compression::Gzip) => Vec::new(),
            };
            ("text/plain", suffix)
        };
        let resp = up.post(&mut self.client, "db/load", content_type, &suffix)?;
        if resp.status() != StatusCode::OK {
            return Err(status_error("server responded with:", resp));
        }
        let v = response_json(resp)?;
        if !up.is_sqlite {
            let results = results_of(&v)?;
            let first = results
                .first()
                .ok_or_else(|| anyhow!("unexpected results length: 0"))?;
            if let Some(err) = first.get("error").and_then(Value::as_str) {
                self.failed = true;
                self.say(&format!("Error: {err}"));
                return Ok(());
            }
            let n = |k: &str| first.get(k).and_then(Value::as_i64).unwrap_or(0);
            let text = format!(
                "last inserted ID: {}\nrows affected: {}",
                n("last_insert_id"),
                n("rows_affected")
            );
            self.say(&text);
        }
        self.say("Database restored successfully.");
        Ok(())
    }

    /// `.boot FILE`: a SQLite file streamed to `/boot`.
    fn boot(&mut self, file: &str) -> anyhow::Result<()> {
        self.get_json("status")?;
        let up = Upload::open(file)?;
        if !up.is_sqlite {
            bail!("{file} is not a valid SQLite file");
        }
        let resp = up.post(&mut self.client, "boot", "application/octet-stream", &[])?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            bail!("unauthorized");
        }
        if status != StatusCode::OK {
            let body = resp.text().unwrap_or_default();
            let body = body.trim();
            if body.is_empty() {
                bail!("boot failed, status code: {status}");
            }
            bail!("boot failed, status code: {status}, {body}");
        }
        self.say("Node booted successfully.");
        Ok(())
    }

    /// `.sysdump FILE`: status, nodes, readiness and expvar of every node, in one file.
    fn sysdump(&mut self, file: &str) -> anyhow::Result<()> {
        let nodes = self.get_json("nodes")?;
        let nodes = nodes.as_object().cloned().unwrap_or_default();
        let mut text = Vec::new();
        for node in nodes.values() {
            let Some(api) = node.get("api_addr").and_then(Value::as_str) else {
                continue;
            };
            for path in ["status?pretty", "nodes?pretty", "readyz", "debug/vars"] {
                let url = format!("{}/{path}", api.trim_end_matches('/'));
                writeln!(text, "\n=========================================")?;
                writeln!(text, "URL: {url}")?;
                match self.client.get_direct(&url) {
                    Err(e) => writeln!(text, "Status: {e}\n")?,
                    Ok(resp) => {
                        writeln!(text, "Status: {}\n", resp.status())?;
                        if resp.status() == StatusCode::OK {
                            let body = resp.bytes().unwrap_or_default();
                            text.extend_from_slice(&body);
                        }
                    }
                }
            }
        }
        write_small_file(file, &text)
    }

    /// `.read FILE`: the file's SQL, statement by statement (lines starting `--` skipped).
    fn read_file(&mut self, file: &str) -> anyhow::Result<()> {
        let f = File::open(file).with_context(|| format!("cannot read {file}"))?;
        let mut buf = SqlBuffer::default();
        for line in BufReader::new(f).lines() {
            let line = line.with_context(|| format!("cannot read {file}"))?;
            let line = line.trim();
            if line.is_empty() || (buf.is_empty() && line.starts_with("--")) {
                continue;
            }
            if let Some(stmt) = buf.push(line) {
                if let Err(e) = self.sql(&stmt) {
                    self.fail(&e);
                }
            }
        }
        if let Some(stmt) = buf.take_rest() {
            self.sql(&stmt)?;
        }
        Ok(())
    }
}

/// Non-200 answers become an error line (`unauthorized` for 401, as rqlite).
fn expect_ok(
    resp: reqwest::blocking::Response,
    ok: &[StatusCode],
) -> anyhow::Result<reqwest::blocking::Response> {
    if ok.contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(status_error("server responded with", resp))
    }
}

/// The JSON body of a 200 answer to execute/query/request/load; a top-level `error` is an error.
fn response_json(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let resp = expect_ok(resp, &[StatusCode::OK])?;
    let text = resp.text().context("read response")?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("unexpected response from server: {e}"))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("{err}");
    }
    Ok(v)
}

fn results_of(v: &Value) -> anyhow::Result<&[Value]> {
    v.get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| anyhow!("unexpected response from server: no results"))
}

/// An error and its causes on one line (`a: b: c`), with line breaks flattened.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace(['\n', '\r'], " ")
}
