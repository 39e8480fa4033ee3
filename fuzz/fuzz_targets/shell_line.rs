//! Fuzz target `shell_line`: arbitrary input through the shell's command parser, the way the
//! shell's loop feeds it: the bytes split into lines, each line either gathered as SQL by
//! `SqlBuffer` or parsed as a command by `parse_line`.
//!
//! Besides "never panics", it checks what the loop relies on: a line that does not start with
//! `.` (and is not `exit`/`quit`) is SQL and comes back unchanged apart from trimming; a
//! `.dump` file name is never empty and table names never hold a comma or are empty; the
//! buffer gives back statements whose concatenation is the input it was fed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlite::shell::parse::{parse_line, Command, SqlBuffer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut buf = SqlBuffer::default();
    let mut fed = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match parse_line(trimmed) {
            Ok(Command::Sql(sql)) => {
                assert!(!trimmed.starts_with('.'));
                assert_eq!(sql, trimmed);
            }
            Ok(Command::Dump(file, tables)) => {
                assert!(!file.is_empty());
                assert!(tables.iter().all(|t| !t.is_empty() && !t.contains(',')));
            }
            Ok(Command::Unknown(word)) => assert!(word.starts_with('.')),
            Ok(_) | Err(_) => {}
        }
        fed.push(trimmed.to_string());
        if let Some(stmt) = buf.push(trimmed) {
            out.push(stmt);
        }
    }
    if let Some(rest) = buf.take_rest() {
        out.push(rest);
    }
    let joined_in: String = fed.concat();
    let joined_out: String = out.concat().replace('\n', "");
    // Lines are joined with '\n' inside a statement; without the separators the text is the same.
    assert_eq!(joined_in.replace('\n', ""), joined_out);
});
