//! Deterministic data sets: a SQLite database of a requested size, the same bytes for the
//! same (size, seed, generator version).
//!
//! The database is written through `raftlite-ffi` (the bundled SQLite) with a SplitMix64
//! generator, which is defined here so that no dependency upgrade can change the data. It
//! holds what real users store and what the dumper and backup must get right:
//!
//! - `users`: INTEGER PRIMARY KEY, short and long TEXT (with newlines, both quote kinds,
//!   non-ASCII), INTEGER, REAL (negative, tiny, large, integral), BLOB, NULLs; two indexes.
//! - `events`: `AUTOINCREMENT` (so `sqlite_sequence` exists), a foreign-key-shaped column,
//!   JSON-ish TEXT payloads, REAL amounts, BLOBs up to 1 KiB; a composite index.
//! - `kv`: a `WITHOUT ROWID` table with TEXT keys and BLOB values.
//! - `sqlite_stat1`, from a final `ANALYZE`.
//!
//! Rows go in by rounds of one transaction each; after every round the file size
//! (`page_count × page_size`) is checked, and generation stops at the first round that
//! reaches the target. So the file is at least the requested size and at most one round
//! (about 1.5 MB) larger. The file is built under a temporary name and renamed into the
//! cache when complete, so an interrupted run never leaves a half-built data set behind.

use std::path::{Path, PathBuf};

use raftlite_ffi::{Connection, OpenFlags};

/// Bump when the generated content changes, so cached files are not reused.
const GENERATOR_VERSION: u32 = 1;

const USERS_PER_ROUND: u64 = 1_000;
const EVENTS_PER_ROUND: u64 = 3_000;
const KV_PER_ROUND: u64 = 200;

/// SplitMix64: tiny, fast, and fixed forever (unlike a library RNG's default algorithm).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn f64_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generated data set in the cache.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub path: PathBuf,
    pub bytes: u64,
    pub rows: u64,
}

/// Returns the cached data set for (size, seed), generating it first if needed.
pub fn data_set(work_dir: &Path, size: u64, seed: u64) -> Result<DataSet, String> {
    let dir = work_dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join(format!("gen{GENERATOR_VERSION}-{size}-seed{seed}.sqlite"));
    if !path.exists() {
        let tmp = dir.join(format!(
            "gen{GENERATOR_VERSION}-{size}-seed{seed}.sqlite.partial"
        ));
        let _ = std::fs::remove_file(&tmp);
        generate(&tmp, size, seed).map_err(|e| format!("generate {}: {e}", path.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("rename into cache: {e}"))?;
    }
    let bytes = std::fs::metadata(&path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .len();
    let conn = Connection::open(&path, OpenFlags::READ_ONLY).map_err(|e| e.to_string())?;
    let rows = ["users", "events", "kv"]
        .iter()
        .map(|t| {
            conn.query_i64(&format!("SELECT count(*) FROM {t}"))
                .map(|n| n.unwrap_or(0) as u64)
        })
        .sum::<Result<u64, _>>()
        .map_err(|e| e.to_string())?;
    Ok(DataSet { path, bytes, rows })
}

/// An empty database with the same schema: the baseline input for memory measurements.
pub fn empty_with_schema(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE)
        .map_err(|e| e.to_string())?;
    conn.execute_batch(SCHEMA).map_err(|e| e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    age INTEGER,
    score REAL,
    bio TEXT,
    avatar BLOB,
    created TEXT
);
CREATE INDEX users_email ON users(email);
CREATE INDEX users_age ON users(age, score);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT,
    amount REAL,
    data BLOB
);
CREATE INDEX events_user_kind ON events(user_id, kind);
CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
";

fn generate(path: &Path, size: u64, seed: u64) -> Result<(), String> {
    let err = |e: raftlite_ffi::Error| e.to_string();
    let conn = Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE).map_err(err)?;
    // Speed only: the file is renamed into the cache after a clean finish, never used half-built.
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA page_size=4096;")
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    let mut rng = SplitMix64::new(seed);
    let mut users = conn
        .prepare("INSERT INTO users VALUES(?,?,?,?,?,?,?,?)")
        .map_err(err)?;
    let mut events = conn
        .prepare("INSERT INTO events(user_id, kind, payload, amount, data) VALUES(?,?,?,?,?)")
        .map_err(err)?;
    let mut kv = conn
        .prepare("INSERT OR REPLACE INTO kv VALUES(?,?)")
        .map_err(err)?;
    let mut user_id = 0u64;
    loop {
        conn.execute_batch("BEGIN").map_err(err)?;
        for _ in 0..USERS_PER_ROUND {
            user_id += 1;
            users.bind_i64(1, user_id as i64).map_err(err)?;
            users.bind_text(2, &name(&mut rng)).map_err(err)?;
            bind_opt_text(
                &mut users,
                3,
                (!rng.chance(10)).then(|| email(&mut rng, user_id)),
            )?;
            if rng.chance(5) {
                users.bind_null(4).map_err(err)?;
            } else {
                users.bind_i64(4, rng.below(100) as i64).map_err(err)?;
            }
            users.bind_f64(5, real(&mut rng)).map_err(err)?;
            bind_opt_text(
                &mut users,
                6,
                (!rng.chance(20)).then(|| text(&mut rng, 400)),
            )?;
            if rng.chance(30) {
                users.bind_null(7).map_err(err)?;
            } else {
                users.bind_blob(7, &blob(&mut rng, 256)).map_err(err)?;
            }
            users.bind_text(8, &timestamp(&mut rng)).map_err(err)?;
            users.step().map_err(err)?;
            users.reset().map_err(err)?;
        }
        for _ in 0..EVENTS_PER_ROUND {
            events
                .bind_i64(1, 1 + rng.below(user_id) as i64)
                .map_err(err)?;
            let kind = [
                "login",
                "purchase",
                "refund",
                "view",
                "o'clock",
                "\"quoted\"",
            ][rng.below(6) as usize];
            events.bind_text(2, kind).map_err(err)?;
            bind_opt_text(&mut events, 3, (!rng.chance(10)).then(|| payload(&mut rng)))?;
            events.bind_f64(4, real(&mut rng)).map_err(err)?;
            if rng.chance(60) {
                events.bind_null(5).map_err(err)?;
            } else {
                events.bind_blob(5, &blob(&mut rng, 1024)).map_err(err)?;
            }
            events.step().map_err(err)?;
            events.reset().map_err(err)?;
        }
        for _ in 0..KV_PER_ROUND {
            kv.bind_text(1, &format!("key/{:016x}", rng.next_u64()))
                .map_err(err)?;
            kv.bind_blob(2, &blob(&mut rng, 512)).map_err(err)?;
            kv.step().map_err(err)?;
            kv.reset().map_err(err)?;
        }
        conn.execute_batch("COMMIT").map_err(err)?;
        let pages = conn
            .query_i64("PRAGMA page_count")
            .map_err(err)?
            .unwrap_or(0);
        if pages as u64 * 4096 >= size {
            break;
        }
    }
    drop((users, events, kv));
    conn.execute_batch("ANALYZE; PRAGMA journal_mode=DELETE;")
        .map_err(err)?;
    Ok(())
}

fn bind_opt_text(
    st: &mut raftlite_ffi::Statement<'_>,
    i: i32,
    v: Option<String>,
) -> Result<(), String> {
    match v {
        Some(t) => st.bind_text(i, &t),
        None => st.bind_null(i),
    }
    .map_err(|e| e.to_string())
}

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "it's",
    "\"quoted\"",
    "naïve",
    "日本語",
    "emoji🙂",
    "tab\there",
    "back\\slash",
    "100%",
];

fn name(rng: &mut SplitMix64) -> String {
    format!(
        "{} {}",
        WORDS[rng.below(20) as usize],
        WORDS[rng.below(WORDS.len() as u64) as usize]
    )
}

fn email(rng: &mut SplitMix64, id: u64) -> String {
    format!("user{id}.{}@example.com", rng.below(1000))
}

/// Text of 0..max bytes-ish: words, sometimes newlines (`\n` and `\r\n`) and quotes.
fn text(rng: &mut SplitMix64, max: u64) -> String {
    let target = rng.below(max) as usize;
    let mut s = String::with_capacity(target + 16);
    while s.len() < target {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push(match rng.below(20) {
            0 => '\n',
            1 => '\'',
            2 => '\r',
            _ => ' ',
        });
    }
    s
}

fn payload(rng: &mut SplitMix64) -> String {
    format!(
        "{{\"session\":\"{:08x}\",\"items\":{},\"note\":\"{}\"}}",
        rng.next_u64() as u32,
        rng.below(50),
        text(rng, 120).replace(['"', '\\', '\n', '\r', '\t'], " ")
    )
}

/// Mostly ordinary values, with the edges that formatting code gets wrong.
fn real(rng: &mut SplitMix64) -> f64 {
    match rng.below(20) {
        0 => 0.0,
        1 => -0.5,
        2 => 1e-7 * rng.f64_unit(),
        3 => 1e300 * rng.f64_unit(),
        4 => rng.below(1_000_000) as f64,
        5 => f64::MIN_POSITIVE,
        _ => (rng.f64_unit() - 0.3) * 10_000.0,
    }
}

fn blob(rng: &mut SplitMix64, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1) as usize;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

fn timestamp(rng: &mut SplitMix64) -> String {
    let secs = 1_500_000_000 + rng.below(300_000_000) as i64;
    crate::report::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_fixed() {
        // The first outputs for seed 1234567, from the reference implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn same_seed_same_bytes() {
        let dir = std::env::temp_dir().join(format!("raftlite-bench-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = data_set(&dir.join("a"), 100_000, 9).unwrap();
        let b = data_set(&dir.join("b"), 100_000, 9).unwrap();
        assert!(a.bytes >= 100_000);
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
