//! Embeds the git commit the workspace was built from, so every JSON report says which code
//! it measured (`RAFTLITE_BENCH_COMMIT`: the full hash, `-dirty` appended when a file that
//! goes into the binaries differs from that commit; empty outside a git checkout).
//!
//! `cargo build --release --workspace` builds `raftlited`, `raftlite` and this harness from
//! the same tree in one go, so the harness's commit is the measured binaries' commit. A
//! `raftlited` built separately from another tree is not detected: build them together.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into the measured binaries, relative to the workspace root: a change here
/// makes the build "dirty" and reruns this script.
const SOURCES: &[&str] = &["src", "ffi", "bench/src", "Cargo.toml", "Cargo.lock"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest
        .parent()
        .map_or_else(|| manifest.clone(), Path::to_path_buf);
    println!("cargo:rerun-if-changed=build.rs");
    for s in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(s).display());
    }
    // The commit moves when HEAD, the branch it names or the index change.
    let mut git_files = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
    if let Some(branch) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
        git_files.push(branch);
    }
    for f in git_files {
        if let Some(p) = git(&root, &["rev-parse", "--git-path", &f]) {
            let p = root.join(p);
            // A path that does not exist would make cargo rerun this script on every build.
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    let commit = match git(&root, &["rev-parse", "HEAD"]) {
        Some(hash) => {
            let mut status = vec!["status", "--porcelain", "--untracked-files=normal", "--"];
            status.extend(SOURCES);
            match git(&root, &status) {
                Some(changes) if !changes.is_empty() => format!("{hash}-dirty"),
                _ => hash,
            }
        }
        None => String::new(),
    };
    println!("cargo:rustc-env=RAFTLITE_BENCH_COMMIT={commit}");
}

/// `git ARGS` in `dir`, its trimmed stdout; None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
