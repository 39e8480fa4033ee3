//! `raftlite`: the command-line shell. Thin: commands live in `raftlite::shell`.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("dump") => raftlite::shell::offline::run_dump(&args[2..]),
        Some("verify") => raftlite::shell::verify::run(&args[2..]),
        Some("restore") => raftlite::shell::restore::run(&args[2..]),
        _ => raftlite::shell::repl::run(&args[1..]),
    };
    std::process::exit(code);
}
