//! `raftlite`: the command-line shell. Thin: commands live in `raftlite::shell`.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("dump") => raftlite::shell::offline::run_dump(&args[2..]),
        _ => {
            eprintln!("raftlite: the interactive shell is not built yet; try `raftlite dump DB_FILE [TABLE...]`");
            2
        }
    };
    std::process::exit(code);
}
