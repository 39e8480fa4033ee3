//! The shell's main loop: connect, print the banner, read lines, run them, say `bye~`.
//!
//! Owns: the difference between a terminal and a pipe. On a terminal, rustyline edits lines
//! and keeps history in `~/.raftlite_history` across sessions; the prompt is `HOST:PORT> `
//! (`   ...> ` while a statement spans lines). From a pipe, lines are read plainly with no
//! prompt, and the exit status tells whether every command succeeded.
//!
//! Exit status: 0, as rqlite's shell, whatever failed (scripts written for it rely on that),
//! but 2 for a bad command line. With `--exit-status`: 1 when the node could not be reached
//! at start, or (input not from a terminal) when any command failed, for scripts that need
//! to know.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use super::args::{join_host_port, parse_args, ShellArgs, USAGE};
use super::client::{ClientError, HttpClient};
use super::parse::SqlBuffer;
use super::session::{Flow, Session};

/// Runs the shell with `args` (without the program name); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let env_host = std::env::var("RQLITE_HOST").ok();
    let args = match parse_args(args, env_host.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raftlite: {e}");
            return 2;
        }
    };
    if args.help {
        print!("{USAGE}");
        return 0;
    }
    if args.version {
        println!(
            "Version {}, commit {}, built on {}",
            crate::VERSION,
            option_env!("RAFTLITE_COMMIT").unwrap_or("unknown"),
            option_env!("RAFTLITE_BUILDTIME").unwrap_or("unknown")
        );
        return 0;
    }
    let failed = match connect(&args) {
        Ok(session) => repl(session),
        Err(msg) => {
            println!("ERR! {msg}");
            true
        }
    };
    i32::from(failed && args.exit_status)
}

/// Builds the client and reads the node's version from `/status`, as rqlite does.
fn connect(args: &ShellArgs) -> Result<Session, String> {
    let mut client = HttpClient::new(args).map_err(|e| e.to_string())?;
    let url = format!(
        "{}://{}",
        args.scheme,
        join_host_port(&args.host, args.port)
    );
    let resp = client.get("status").map_err(|e| match e {
        ClientError::Unreachable { refused: true, .. } => {
            format!("Unable to connect to rqlited at {url} - is it running?")
        }
        e => e.to_string(),
    })?;
    let version = resp
        .headers()
        .get("X-RQLITE-VERSION")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    println!("Welcome to the rqlite CLI.");
    println!("Enter \".help\" for usage hints.");
    println!(
        "Connected to {} running version {version}",
        client.base_url()
    );
    Ok(Session::new(client))
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".raftlite_history"))
}

/// A line source: rustyline on a terminal, plain reads otherwise.
enum Input {
    Terminal(Box<Editor<(), FileHistory>>),
    Pipe(io::StdinLock<'static>),
}

enum Read {
    Line(String),
    /// Ctrl-C: drop a partial statement, or leave when there is none.
    Interrupted,
    Eof,
}

impl Input {
    fn open() -> Input {
        if io::stdin().is_terminal() {
            let config = Config::builder().auto_add_history(false).build();
            if let Ok(mut ed) = Editor::<(), FileHistory>::with_config(config) {
                if let Some(p) = history_path() {
                    let _ = ed.load_history(&p);
                }
                return Input::Terminal(Box::new(ed));
            }
        }
        Input::Pipe(io::stdin().lock())
    }

    fn read(&mut self, prompt: &str) -> Read {
        match self {
            Input::Terminal(ed) => match ed.readline(prompt) {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = ed.add_history_entry(l.trim());
                    }
                    Read::Line(l)
                }
                Err(ReadlineError::Interrupted) => Read::Interrupted,
                Err(_) => Read::Eof,
            },
            Input::Pipe(stdin) => {
                let mut buf = Vec::new();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => Read::Eof,
                    Ok(_) => Read::Line(String::from_utf8_lossy(&buf).into_owned()),
                }
            }
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Input::Terminal(_))
    }

    fn save_history(&mut self) {
        if let (Input::Terminal(ed), Some(p)) = (self, history_path()) {
            let _ = ed.save_history(&p);
        }
    }
}

/// The loop; returns whether a command failed that the exit status should tell.
fn repl(mut session: Session) -> bool {
    let mut input = Input::open();
    let mut pending = SqlBuffer::default();
    loop {
        let prompt = if pending.is_empty() {
            session.prompt()
        } else {
            "   ...> ".to_string()
        };
        let line = match input.read(&prompt) {
            Read::Line(l) => l,
            Read::Interrupted if !pending.is_empty() => {
                pending = SqlBuffer::default();
                continue;
            }
            Read::Interrupted | Read::Eof => break,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // A line that continues a statement is SQL, whatever it starts with.
        let flow = if !pending.is_empty() {
            match pending.push(line) {
                Some(stmt) => session.run_sql(&stmt),
                None => Flow::Continue,
            }
        } else if line.starts_with('.') || is_exit_word(line) {
            session.run_line(line)
        } else {
            match pending.push(line) {
                Some(stmt) => session.run_sql(&stmt),
                None => Flow::Continue,
            }
        };
        let _ = io::stdout().flush();
        if flow == Flow::Exit {
            break;
        }
    }
    if let Some(rest) = pending.take_rest() {
        session.run_sql(&rest);
    }
    input.save_history();
    println!("bye~");
    // Interactive errors were seen by whoever typed the commands.
    session.failed && !input.is_terminal()
}

fn is_exit_word(line: &str) -> bool {
    matches!(line.to_ascii_lowercase().as_str(), "exit" | "quit")
}
