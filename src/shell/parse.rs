//! The shell's input grammar: one line of input becomes a [`Command`], and SQL lines gather in
//! a [`SqlBuffer`] until they form complete statements.
//!
//! Owns: recognising dot-commands (case-insensitive, as rqlite's shell), their arguments and
//! the argument errors with rqlite's wording. Does not own: running anything (`session.rs`).
//!
//! Invariants: parsing never fails with a panic, whatever the bytes (fuzz target
//! `shell_line`); an unknown dot-command is [`Command::Unknown`], never SQL; a line that is not
//! a dot-command (nor `exit`/`quit`) is SQL.
//!
//! This module builds without the `server` feature, so the fuzz target can reach it.

use std::fmt;

/// A parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// SQL text, sent as one request.
    Sql(String),
    Backup(String),
    /// `.dump FILE [T1,T2…]`: the file and the table subset (empty = all).
    Dump(String, Vec<String>),
    Restore(String),
    Boot(String),
    Sysdump(String),
    Read(String),
    /// `.output [FILE|stdout]`: `None` means stdout.
    Output(Option<String>),
    Tables,
    Schema,
    Indexes,
    Nodes {
        all: bool,
    },
    Leader,
    /// `.status [KEY]`, `.expvar [KEY]`: an optional top-level key filter.
    Status(Option<String>),
    Expvar(Option<String>),
    Extensions,
    Ready,
    Remove(String),
    Reap,
    Snapshot(u64),
    Stepdown(Option<String>),
    Consistency(Option<Consistency>),
    Mode(Option<Mode>),
    Toggle(Setting, Option<bool>),
    Show,
    Help,
    Exit,
    /// A dot-command this shell does not know.
    Unknown(String),
}

/// The on/off settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Timer,
    Changes,
    ForceWrites,
    BlobArray,
}

/// Read consistency for `.tables`, `.schema` and `.indexes` (rqlite sends it only there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    None,
    #[default]
    Weak,
    Linearizable,
    Strong,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::None => "none",
            Consistency::Weak => "weak",
            Consistency::Linearizable => "linearizable",
            Consistency::Strong => "strong",
        }
    }
}

/// How query results print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Column,
    Csv,
    Json,
    Line,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Column => "column",
            Mode::Csv => "csv",
            Mode::Json => "json",
            Mode::Line => "line",
        }
    }
}

/// A line that names a known command with bad arguments. The text is rqlite's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// Parses one trimmed, non-empty input line. SQL is returned whole; the caller decides
/// whether it is complete (see [`SqlBuffer`]).
pub fn parse_line(line: &str) -> Result<Command, ArgError> {
    let line = line.trim();
    let (word, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let arg = (!rest.is_empty()).then(|| rest.to_string());
    let need = |msg: &str| arg.clone().ok_or_else(|| ArgError(msg.to_string()));
    let upper = word.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "EXIT" | "QUIT" | ".EXIT" | ".QUIT" => Command::Exit,
        _ if !word.starts_with('.') => Command::Sql(line.to_string()),
        ".BACKUP" => Command::Backup(need("please specify an output file for the backup")?),
        ".RESTORE" => Command::Restore(need("please specify an input file to restore from")?),
        ".BOOT" => Command::Boot(need("please specify an input file to boot with")?),
        ".SYSDUMP" => Command::Sysdump(need("please specify an output file for the sysdump")?),
        ".READ" => Command::Read(need("please specify an input file to read from")?),
        ".DUMP" => {
            let arg = need("please specify an output file for the SQL text")?;
            let (file, tables) = parse_dump_args(&arg);
            Command::Dump(file, tables)
        }
        ".OUTPUT" => Command::Output(arg.filter(|a| a != "stdout")),
        ".TABLES" => Command::Tables,
        ".SCHEMA" => Command::Schema,
        ".INDEXES" => Command::Indexes,
        ".NODES" => Command::Nodes { all: arg.is_some() },
        ".LEADER" => Command::Leader,
        ".STATUS" => Command::Status(first_word(rest)),
        ".EXPVAR" => Command::Expvar(first_word(rest)),
        ".EXTENSIONS" => Command::Extensions,
        ".READY" => Command::Ready,
        ".REMOVE" => Command::Remove(need("please specify a node ID to remove")?),
        ".REAP" => Command::Reap,
        ".SNAPSHOT" => Command::Snapshot(match arg {
            None => 0,
            Some(n) => n
                .parse()
                .map_err(|_| ArgError(format!("invalid trailing logs value: {n}")))?,
        }),
        ".STEPDOWN" => Command::Stepdown(arg),
        ".CONSISTENCY" => Command::Consistency(arg.map(|a| parse_consistency(&a)).transpose()?),
        ".MODE" => Command::Mode(arg.map(|a| parse_mode(&a)).transpose()?),
        ".TIMER" => Command::Toggle(Setting::Timer, arg.map(|a| parse_toggle(&a)).transpose()?),
        ".CHANGES" => Command::Toggle(Setting::Changes, arg.map(|a| parse_toggle(&a)).transpose()?),
        ".FORCEWRITES" => Command::Toggle(
            Setting::ForceWrites,
            arg.map(|a| parse_toggle(&a)).transpose()?,
        ),
        ".BLOBARRAY" => Command::Toggle(
            Setting::BlobArray,
            arg.map(|a| parse_toggle(&a)).transpose()?,
        ),
        ".SHOW" => Command::Show,
        ".HELP" => Command::Help,
        _ => Command::Unknown(word.to_string()),
    })
}

fn first_word(rest: &str) -> Option<String> {
    rest.split_whitespace().next().map(str::to_string)
}

/// `.dump FILE [T1,T2 …]`: the file is the first word; the rest, joined, is a comma list.
pub fn parse_dump_args(arg: &str) -> (String, Vec<String>) {
    let mut words = arg.split_whitespace();
    let file = words.next().unwrap_or(arg).to_string();
    let rest: Vec<&str> = words.collect();
    let tables = rest
        .join(" ")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    (file, tables)
}

fn parse_toggle(a: &str) -> Result<bool, ArgError> {
    match a {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ArgError(format!(
            "invalid option '{a}'. Use 'on' or 'off' (default)"
        ))),
    }
}

fn parse_consistency(a: &str) -> Result<Consistency, ArgError> {
    match a {
        "none" => Ok(Consistency::None),
        "weak" => Ok(Consistency::Weak),
        "linearizable" => Ok(Consistency::Linearizable),
        "strong" => Ok(Consistency::Strong),
        _ => Err(ArgError(format!(
            "invalid consistency '{a}'. Use 'none', 'weak', 'linearizable', or 'strong'"
        ))),
    }
}

fn parse_mode(a: &str) -> Result<Mode, ArgError> {
    match a {
        "column" => Ok(Mode::Column),
        "csv" => Ok(Mode::Csv),
        "json" => Ok(Mode::Json),
        "line" => Ok(Mode::Line),
        _ => Err(ArgError(format!(
            "invalid mode '{a}'. Use 'column', 'csv', 'json', or 'line'"
        ))),
    }
}

/// Gathers SQL lines until they end in a complete statement (`sqlite3_complete`: a `;` outside
/// quotes, comments and trigger bodies), so one statement may span several lines.
#[derive(Debug, Default)]
pub struct SqlBuffer {
    text: String,
}

impl SqlBuffer {
    /// True when no partial statement is pending (the prompt is the primary one).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Adds a line. Returns the whole statement text once it is complete.
    pub fn push(&mut self, line: &str) -> Option<String> {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        if raftlite_ffi::complete(&self.text) {
            Some(std::mem::take(&mut self.text))
        } else {
            None
        }
    }

    /// At end of input: whatever is pending, sent as it is (rqlite sends every line).
    pub fn take_rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.text);
        (!rest.trim().is_empty()).then_some(rest)
    }
}

/// The `.help` text: rqlite's command list, sorted, one command a line.
pub const HELP: &[&str] = &[
    ".backup FILE                                  Write database backup to FILE",
    ".blobarray [on|off]                           Show setting, or set BLOB data display as byte arrays",
    ".boot FILE                                    Boot the node using a SQLite file read from FILE",
    ".changes [on|off]                             Show setting, or set display of last insert ID after writes",
    ".consistency [none|weak|linearizable|strong]  Show or set read consistency level",
    ".dump FILE [TABLE,TABLE...]                   Dump the database in SQL text to FILE, optionally limited to TABLEs",
    ".exit                                         Exit this program",
    ".expvar                                       Show expvar (Go runtime) information for connected node",
    ".extensions                                   Show loaded SQLite extensions",
    ".forcewrites [on|off]                         Show setting, or set all statements to be executed via /db/execute",
    ".help                                         Show this message",
    ".indexes                                      Show names of all indexes",
    ".leader                                       Show the current cluster leader",
    ".mode [column|csv|json|line]                  Show or set output mode for query results",
    ".nodes [all]                                  Show connection status of voting nodes. 'all' to show all nodes",
    ".output FILE                                  Send output to FILE, or stdout if FILE is omitted",
    ".quit                                         Exit this program",
    ".read FILE                                    Read and execute SQL statements from FILE",
    ".ready                                        Show ready status for connected node",
    ".reap                                         Request a snapshot reap on connected node",
    ".remove NODEID                                Remove node NODEID from the cluster",
    ".restore FILE                                 Load using SQLite file or SQL dump contained in FILE",
    ".schema                                       Show CREATE statements for all tables",
    ".show                                         Show the current values for various settings",
    ".snapshot [TRAILINGLOGS]                      Request a Raft snapshot and log truncation on connected node",
    ".status                                       Show status and diagnostic information for connected node",
    ".stepdown [NODEID]                            Instruct the leader to stepdown, optionally specifying new Leader node",
    ".sysdump FILE                                 Dump system diagnostics to FILE",
    ".tables                                       List names of tables",
    ".timer [on|off]                               Show setting, or set query timings on or off",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_commands_are_case_insensitive_and_take_arguments() {
        assert_eq!(
            parse_line(".BACKUP x.db"),
            Ok(Command::Backup("x.db".into()))
        );
        assert_eq!(parse_line(".tables"), Ok(Command::Tables));
        assert_eq!(parse_line("quit"), Ok(Command::Exit));
        assert_eq!(parse_line(".Exit"), Ok(Command::Exit));
        assert_eq!(
            parse_line(".dump f.sql a, b ,c"),
            Ok(Command::Dump(
                "f.sql".into(),
                vec!["a".into(), "b".into(), "c".into()]
            ))
        );
        assert_eq!(parse_line(".nodes all"), Ok(Command::Nodes { all: true }));
        assert_eq!(parse_line(".output stdout"), Ok(Command::Output(None)));
        assert_eq!(parse_line(".snapshot 5"), Ok(Command::Snapshot(5)));
        assert_eq!(
            parse_line(".status store"),
            Ok(Command::Status(Some("store".into())))
        );
        assert_eq!(
            parse_line(".frobnicate"),
            Ok(Command::Unknown(".frobnicate".into()))
        );
        assert_eq!(parse_line("SELECT 1"), Ok(Command::Sql("SELECT 1".into())));
    }

    #[test]
    fn argument_errors_use_rqlites_wording() {
        let err = |l: &str| parse_line(l).unwrap_err().0;
        assert_eq!(
            err(".backup"),
            "please specify an output file for the backup"
        );
        assert_eq!(
            err(".dump  "),
            "please specify an output file for the SQL text"
        );
        assert_eq!(
            err(".timer maybe"),
            "invalid option 'maybe'. Use 'on' or 'off' (default)"
        );
        assert_eq!(
            err(".consistency eventual"),
            "invalid consistency 'eventual'. Use 'none', 'weak', 'linearizable', or 'strong'"
        );
        assert_eq!(err(".snapshot -1"), "invalid trailing logs value: -1");
    }

    #[test]
    fn sql_buffer_waits_for_a_complete_statement() {
        let mut b = SqlBuffer::default();
        assert_eq!(b.push("SELECT"), None);
        assert!(!b.is_empty());
        assert_eq!(b.push("  'a;b'"), None);
        assert_eq!(b.push("  ;"), Some("SELECT\n  'a;b'\n  ;".into()));
        assert!(b.is_empty());
        assert_eq!(b.push("SELECT 2"), None);
        assert_eq!(b.take_rest(), Some("SELECT 2".into()));
        assert_eq!(b.take_rest(), None);
    }

    #[test]
    fn help_is_sorted() {
        let mut sorted = HELP.to_vec();
        sorted.sort();
        assert_eq!(sorted, HELP);
    }
}
