//! The goals the bench measures against, and how each one's figure and verdict are read from
//! a run's report: the rows of `docs/benchmarks.md`'s current-figures table.
//!
//! Each scenario states its goals in prose (`GOALS` in `scenarios/*`); this module holds the
//! same goals as checks, one per figure: a goal with several parts (P2's two dump paths and
//! their memory, P5's p99 and stalls, P7's restart, loads and memory) has a line per part,
//! because the latest run that measured one part is not always the latest that measured the
//! other. A goal reads its rows by case name, exactly as the scenario writes it; the quick
//! run in CI (`scripts/bench-quick.sh`, `report --complete`) fails when a name drifts.
//!
//! Verdicts are taken on the unrounded figure, and a figure is shown with as many decimals
//! as it takes to stay on its side of the bound: a miss is never rounded into a pass
//! ([`beside`]).

use crate::record::{RowRecord, ScenarioRecord};

/// One checkable goal.
pub struct Goal {
    /// The issue's number for it (`P1`…`P9`), shared by its parts; `log` and `shell` for the
    /// two goals without one.
    pub id: &'static str,
    /// What is checked, with its bound, as a reader would check it by hand.
    pub target: &'static str,
    /// The scenario whose rows hold the figure.
    pub scenario: &'static str,
    /// The figure and verdict from that scenario's rows; None when the run did not measure it.
    pub read: fn(&ScenarioRecord) -> Option<Reading>,
}

/// A goal's figure in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The figure, with what it was compared with (`0.87× (4.50 s vs 5.19 s)`).
    pub figure: String,
    pub met: bool,
}

/// Case names, as the scenarios write them.
mod case {
    /// `curl -o` alone. Its ratio is to `sqlite3 .backup` under eatmydata since issue #26, to
    /// plain (synced) `sqlite3 .backup` in the reports before.
    pub const BACKUP: &str = "raftlite GET /db/backup";
    /// `curl -o` then fsync of the file, against plain `sqlite3 .backup` (issue #26).
    pub const BACKUP_SYNCED: &str = "raftlite GET /db/backup + fsync";
    pub const BACKUP_16: &str = "raftlite GET /db/backup > /dev/null, 16 clients";
    pub const CONDITIONAL_BACKUP: &str = "raftlite GET /db/backup If-None-Match (304)";
    pub const THROUGH_FOLLOWER: &str = "3 nodes: GET /db/backup through a follower";
    pub const WRITES_DURING_BACKUP: &str = "3 nodes: paced writes during the backup";
    pub const WRITES_IDLE: &str = "3 nodes: paced writes, no backup";
    pub const DUMP_CLI: &str = "raftlite dump DB";
    pub const DUMP_HTTP: &str = "raftlite GET /db/backup?fmt=sql";
    pub const BATCHED_C1: &str = "raftlite 3 nodes, 1000 stmts/request, c=1";
    pub const BATCHED_C4: &str = "raftlite 3 nodes, 1000 stmts/request, c=4";
    pub const SINGLE_C64: &str = "raftlite 3 nodes, 1 stmt/request, c=64";
    pub const ARCHIVE_SINGLE: &str = "archiving on: 1 stmt/request, c=64";
    pub const ARCHIVE_BATCHED: &str = "archiving on: 1000 stmts/request, c=1";
    pub const CDC_SINGLE: &str = "change data capture on: 1 stmt/request, c=64";
    pub const CDC_BATCHED: &str = "change data capture on: 1000 stmts/request, c=1";
    /// Both restart rows start so; the one with a ratio is the data set's.
    pub const RESTART_PREFIX: &str = "raftlited restart to /readyz";
    pub const LOAD_BINARY: &str = "raftlite 3 nodes: POST /db/load (binary) until all serve it";
    pub const LOAD_SQL: &str = "raftlite 3 nodes: POST /db/load (SQL) until all serve it";
    pub const GROUP_COMMIT: &str = "engine append_then x64 threads";
    pub const ENGINE_BATCHES: [&str; 3] = [
        "engine append, batch 1",
        "engine append, batch 16",
        "engine append, batch 256",
    ];
    pub const SHELL_BACKUP: &str = "raftlite shell .backup";
    pub const AUTH_UNDER_ATTACK: &str = "authenticated reads, 50 wrong passwords/s";
    /// The body's size is part of the case name (60 MB, 7 MB in quick runs): matched by ending.
    pub const BODY_INTEGERS: &str = ": one statement, integer parameters";
    pub const BODY_TEXT: &str = ": text parameters, 60 KB each";
}

/// Every goal, in the table's order.
pub const GOALS: &[Goal] = &[
    Goal {
        id: "P1",
        target: "`GET /db/backup` to a file, synced (`curl -o` + fsync) ≤ 0.5× the time of \
                 `sqlite3 .backup` (which syncs); the unsynced pair (`curl -o` against \
                 `sqlite3 .backup` under eatmydata) beside it",
        scenario: "backup",
        read: p1,
    },
    Goal {
        id: "P2",
        target: "`raftlite dump DB` ≤ 0.5× the time of `sqlite3 .dump`",
        scenario: "dump",
        read: |s| time_ratio(s, case::DUMP_CLI, Bound::AtMost(0.5)),
    },
    Goal {
        id: "P2",
        target: "`GET /db/backup?fmt=sql` ≤ 0.3× the time of `sqlite3 .dump`",
        scenario: "dump",
        read: |s| time_ratio(s, case::DUMP_HTTP, Bound::AtMost(0.3)),
    },
    Goal {
        id: "P2",
        target: "`raftlite dump DB`: RSS growth ≤ 64 MiB",
        scenario: "dump",
        read: |s| rss_growth(s, case::DUMP_CLI, Bound::AtMost(64.0)),
    },
    Goal {
        id: "P2",
        target: "`GET /db/backup?fmt=sql`: raftlited's `RssAnon` growth ≤ 64 MiB",
        scenario: "dump",
        read: |s| server_memory(s, case::DUMP_HTTP, Bound::AtMost(64.0)),
    },
    Goal {
        id: "P3",
        target: "raftlited's anonymous memory (`RssAnon`) growth during a backup ≤ 64 MiB \
                 (`RssFile`, page cache of the mapped database, apart)",
        scenario: "backup",
        read: |s| server_memory(s, case::BACKUP, Bound::AtMost(64.0)),
    },
    Goal {
        id: "P4",
        target: "a backup through a follower ≥ 0.9× the throughput of one from the leader",
        scenario: "backup",
        read: |s| throughput_ratio(s, case::THROUGH_FOLLOWER, Bound::AtLeast(0.9)),
    },
    Goal {
        id: "P5",
        target: "writers' p99 during a backup ≤ max(2× their idle p99, idle p99 + 20 ms)",
        scenario: "backup",
        read: writers_p99,
    },
    Goal {
        id: "P5",
        target: "no write over 100 ms during a backup",
        scenario: "backup",
        read: write_stalls,
    },
    Goal {
        id: "P6",
        target: "≥ 100,000 statements/s in 1000-statement requests (3 nodes, 1 client)",
        scenario: "writes",
        read: batched_writes,
    },
    Goal {
        id: "P7",
        target: "restart of a node holding the data set ≤ 1.25× the time with 1 MiB \
                 (\"equal within noise\": one run varies by ±25%)",
        scenario: "restore",
        read: restart,
    },
    Goal {
        id: "P7",
        target: "binary `POST /db/load` into 3 nodes ≤ 1.5× the time of `sqlite3 .restore`",
        scenario: "restore",
        read: |s| time_ratio(s, case::LOAD_BINARY, Bound::AtMost(1.5)),
    },
    Goal {
        id: "P7",
        target: "SQL `POST /db/load` into a blank 3-node cluster ≤ 0.5× the time of \
                 `sqlite3 NEW < dump`",
        scenario: "restore",
        read: |s| time_ratio(s, case::LOAD_SQL, Bound::AtMost(0.5)),
    },
    Goal {
        id: "P7",
        target: "binary load: `RssAnon` growth ≤ 64 MiB on every node",
        scenario: "restore",
        read: |s| server_memory(s, case::LOAD_BINARY, Bound::AtMost(64.0)),
    },
    Goal {
        id: "P7",
        target: "SQL load: `RssAnon` growth ≤ 64 MiB on every node",
        scenario: "restore",
        read: |s| server_memory(s, case::LOAD_SQL, Bound::AtMost(64.0)),
    },
    Goal {
        id: "P8",
        target: "16 concurrent backups ≥ 4× the aggregate throughput of one",
        scenario: "backup",
        read: concurrent_backups,
    },
    Goal {
        id: "P10",
        target: "a conditional `GET /db/backup` of unchanged content (304) ≤ 2× the median \
                 latency of `GET /status` on the same node",
        scenario: "backup",
        read: |s| {
            let (row, v) = ratio_of(s, case::CONDITIONAL_BACKUP, "time")?;
            let bound = Bound::AtMost(2.0);
            let detail = match (
                row.latency_ms.as_ref().and_then(|l| l.p50),
                s.reference_of(row)
                    .and_then(|r| r.latency_ms.as_ref())
                    .and_then(|l| l.p50),
            ) {
                (Some(a), Some(b)) => format!(" (median {a:.3} ms vs {b:.3} ms)"),
                _ => String::new(),
            };
            Some(Reading {
                figure: format!("{}×{detail}", bound.show(v, 2)),
                met: bound.met(v),
            })
        },
    },
    Goal {
        id: "P9",
        target: "≥ 10,000 writes/s at concurrency 64 (single-statement requests, 3 nodes)",
        scenario: "writes",
        read: |s| {
            let rate = s.row(case::SINGLE_C64)?.stmts_per_s?;
            let bound = Bound::AtLeast(10_000.0);
            Some(Reading {
                figure: format!("{} writes/s", bound.show_count(rate)),
                met: bound.met(rate),
            })
        },
    },
    Goal {
        id: "A1",
        target: "P9's case with continuous archiving on ≥ 0.9× the throughput with it off \
                 (archiving costs at most a tenth; alternating rounds)",
        scenario: "archive",
        read: |s| throughput_ratio(s, case::ARCHIVE_SINGLE, Bound::AtLeast(0.9)),
    },
    Goal {
        id: "A1",
        target: "P6's case with continuous archiving on ≥ 0.9× the throughput with it off \
                 (archiving costs at most a tenth; alternating rounds)",
        scenario: "archive",
        read: |s| throughput_ratio(s, case::ARCHIVE_BATCHED, Bound::AtLeast(0.9)),
    },
    Goal {
        id: "C1",
        target: "P9's case with change data capture on (every node queues, the leader sends) \
                 ≥ 0.8× the throughput with it off (alternating rounds)",
        scenario: "cdc",
        read: |s| throughput_ratio(s, case::CDC_SINGLE, Bound::AtLeast(0.8)),
    },
    Goal {
        id: "C1",
        target: "P6's case with change data capture on (every node queues, the leader sends) \
                 ≥ 0.8× the throughput with it off (alternating rounds)",
        scenario: "cdc",
        read: |s| throughput_ratio(s, case::CDC_BATCHED, Bound::AtLeast(0.8)),
    },
    Goal {
        id: "A2",
        target: "recovery point under steady writes (c=64): no applied entry waits more than \
                 2 s to be archived (`max_delay` 1 s + one shipping)",
        scenario: "archive",
        read: |s| {
            let row = s.row(crate::scenarios::archive::RPO_CASE)?;
            let max_ms = number_before(&row.note, " ms,")?;
            let bound = Bound::AtMost(2000.0);
            Some(Reading {
                figure: format!("max {} ms ({})", bound.show(max_ms, 0), row.note),
                met: bound.met(max_ms),
            })
        },
    },
    Goal {
        id: "A3",
        target: "point-in-time restore of the data set + 100,000 archived entries ≤ 10× the \
                 time of `cp` of the result (+ fsync)",
        scenario: "archive",
        read: |s| {
            time_ratio(
                s,
                crate::scenarios::archive::RESTORE_CASE,
                Bound::AtMost(10.0),
            )
        },
    },
    Goal {
        id: "log",
        target: "the log engine syncs once per batch, not per entry: 64 single-entry \
                 proposers share fsyncs (> 1 entry per counted fsync)",
        scenario: "log-append",
        read: log_group_commit,
    },
    Goal {
        id: "shell",
        target: "the `raftlite` shell's `.backup` streams: peak RSS < 32 MiB for a 1 GiB database",
        scenario: "shell-backup-memory",
        read: shell_backup_memory,
    },
    Goal {
        id: "trust",
        target: "authenticated reads while 50 wrong passwords/s arrive: p99 ≤ 2× their p99 \
                 without them",
        scenario: "trust",
        read: |s| {
            let (_, v) = ratio_of(s, case::AUTH_UNDER_ATTACK, "time")?;
            let bound = Bound::AtMost(2.0);
            Some(Reading {
                figure: format!("{}× the quiet p99", bound.show(v, 2)),
                met: bound.met(v),
            })
        },
    },
    Goal {
        id: "trust",
        target: "a 60 MB `/db/execute` of 30 million integer parameters (refused): peak RSS \
                 growth ≤ 4× `-max-body-size`",
        scenario: "trust",
        read: |s| body_memory(s, case::BODY_INTEGERS),
    },
    Goal {
        id: "trust",
        target: "a 60 MB `/db/execute` of 60 KB text parameters (applied): peak RSS growth ≤ \
                 4× `-max-body-size`",
        scenario: "trust",
        read: |s| body_memory(s, case::BODY_TEXT),
    },
];

/// A request's peak RSS growth as a multiple of the body limit, as the scenario's note gives
/// it (`= 2.69x the 64 MiB body limit`: the limit is smaller in quick runs).
fn body_memory(s: &ScenarioRecord, case_ending: &str) -> Option<Reading> {
    let row = s
        .rows
        .iter()
        .find(|r| r.case.starts_with("POST /db/execute ") && r.case.ends_with(case_ending))?;
    let multiple = number_before(&row.note, "x the ")?;
    let bound = Bound::AtMost(4.0);
    Some(Reading {
        figure: format!(
            "{}× the body limit ({:.1} MiB)",
            bound.show(multiple, 2),
            row.rss_growth_mib?
        ),
        met: bound.met(multiple),
    })
}

/// A goal's bound on its figure.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
    Above(f64),
}

impl Bound {
    pub fn met(self, v: f64) -> bool {
        match self {
            Bound::AtMost(b) => v <= b,
            Bound::AtLeast(b) => v >= b,
            Bound::Below(b) => v < b,
            Bound::Above(b) => v > b,
        }
    }

    fn limit(self) -> f64 {
        match self {
            Bound::AtMost(b) | Bound::AtLeast(b) | Bound::Below(b) | Bound::Above(b) => b,
        }
    }

    /// `v` with at least `decimals` decimals, on the same side of the bound as `v` itself.
    pub fn show(self, v: f64, decimals: usize) -> String {
        beside(v, self.limit(), decimals)
    }

    /// A count or rate: no decimals unless the bound needs them, thousands separated.
    pub fn show_count(self, v: f64) -> String {
        thousands(&self.show(v, 0))
    }
}

/// `v` rounded to `decimals` decimals, or to more when the rounded number would sit on the
/// other side of `limit` than `v` does (0.5049 against 0.5 shows as `0.505`, not `0.50`).
pub fn beside(v: f64, limit: f64, decimals: usize) -> String {
    let side = |x: f64| x.partial_cmp(&limit);
    for d in decimals..=decimals + 6 {
        let s = format!("{v:.d$}");
        if s.parse::<f64>().ok().and_then(side) == side(v) {
            return s;
        }
    }
    // Rust prints the shortest text that reads back as exactly `v`.
    format!("{v}")
}

/// `1234567.5` → `1,234,567.5`.
fn thousands(number: &str) -> String {
    let (int, frac) = number
        .split_once('.')
        .map_or((number, None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A duration for a figure: milliseconds under a second, else seconds with two decimals.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// ` (A vs B)`: the row's time and its reference's, when both are recorded.
fn times_compared(s: &ScenarioRecord, row: &RowRecord) -> String {
    match (row.wall_s, s.reference_of(row).and_then(|r| r.wall_s)) {
        (Some(a), Some(b)) => format!(" ({} vs {})", duration(a), duration(b)),
        _ => String::new(),
    }
}

/// The ratio of `case`'s row when it is of the kind `of` (a time ratio read as a throughput
/// ratio would invert the verdict).
fn ratio_of<'a>(s: &'a ScenarioRecord, case: &str, of: &str) -> Option<(&'a RowRecord, f64)> {
    let row = s.row(case)?;
    let ratio = row.ratio.as_ref().filter(|r| r.of == of)?;
    Some((row, ratio.value))
}

fn time_ratio(s: &ScenarioRecord, case: &str, bound: Bound) -> Option<Reading> {
    let (row, v) = ratio_of(s, case, "time")?;
    Some(Reading {
        figure: format!("{}×{}", bound.show(v, 2), times_compared(s, row)),
        met: bound.met(v),
    })
}

fn throughput_ratio(s: &ScenarioRecord, case: &str, bound: Bound) -> Option<Reading> {
    let (row, v) = ratio_of(s, case, "throughput")?;
    Some(Reading {
        figure: format!("{}×{}", bound.show(v, 2), times_compared(s, row)),
        met: bound.met(v),
    })
}

fn rss_growth(s: &ScenarioRecord, case: &str, bound: Bound) -> Option<Reading> {
    let v = s.row(case)?.rss_growth_mib?;
    Some(Reading {
        figure: format!("{} MiB", bound.show(v, 1)),
        met: bound.met(v),
    })
}

/// P1 (issue #26): the synced pair decides; the unsynced pair and any flag of the run are
/// shown beside it. A report from before issue #26 has only the unsynced download against
/// the synced reference: its figure is shown, marked as of the old, unequal method.
fn p1(s: &ScenarioRecord) -> Option<Reading> {
    let bound = Bound::AtMost(0.5);
    let Some((row, v)) = ratio_of(s, case::BACKUP_SYNCED, "time") else {
        let (row, v) = ratio_of(s, case::BACKUP, "time")?;
        return Some(Reading {
            figure: format!(
                "{}×{} (before issue #26: curl unsynced against the synced `sqlite3 .backup`)",
                bound.show(v, 2),
                times_compared(s, row)
            ),
            met: bound.met(v),
        });
    };
    let mut figure = format!("{}× synced{}", bound.show(v, 2), times_compared(s, row));
    if let Some((unsynced, u)) = ratio_of(s, case::BACKUP, "time") {
        figure.push_str(&format!(
            "; unsynced {u:.2}×{}",
            times_compared(s, unsynced)
        ));
    }
    for flag in s.flags.iter().filter(|f| f.starts_with("P1: ")) {
        figure.push_str(&format!("; FLAGGED: {}", &flag["P1: ".len()..]));
    }
    Some(Reading {
        figure,
        met: bound.met(v),
    })
}

/// A server's memory growth: the sampled `RssAnon` (with `RssFile` beside it) where the run
/// recorded it, else the VmHWM-over-VmRSS growth of the reports before issue #26, marked so.
fn server_memory(s: &ScenarioRecord, case: &str, bound: Bound) -> Option<Reading> {
    let row = s.row(case)?;
    if let Some(anon) = row.rss_anon_growth_mib {
        let file = row
            .rss_file_growth_mib
            .map(|f| format!(" (`RssFile` +{f:.1} MiB)"))
            .unwrap_or_default();
        return Some(Reading {
            figure: format!("{} MiB `RssAnon`{file}", bound.show(anon, 1)),
            met: bound.met(anon),
        });
    }
    let v = row.rss_growth_mib?;
    Some(Reading {
        figure: format!(
            "{} MiB (VmHWM over VmRSS, file pages included: recorded before `RssAnon`)",
            bound.show(v, 1)
        ),
        met: bound.met(v),
    })
}

/// P5: the writers' p99 during the backup against the bound their idle p99 sets.
fn writers_p99(s: &ScenarioRecord) -> Option<Reading> {
    let p99 = |case: &str| s.row(case)?.latency_ms.as_ref()?.p99;
    let (busy, idle) = (p99(case::WRITES_DURING_BACKUP)?, p99(case::WRITES_IDLE)?);
    let bound = Bound::AtMost((2.0 * idle).max(idle + 20.0));
    Some(Reading {
        figure: format!(
            "p99 {} ms during the backup, {idle:.1} ms without (bound {:.1} ms)",
            bound.show(busy, 1),
            bound.limit()
        ),
        met: bound.met(busy),
    })
}

/// P5: writes over 100 ms during the backup. The slowest write decides; the count is the
/// scenario's note (`N writes over 100 ms`).
fn write_stalls(s: &ScenarioRecord) -> Option<Reading> {
    let row = s.row(case::WRITES_DURING_BACKUP)?;
    let slowest = row.latency_ms.as_ref().and_then(|l| l.max);
    let count = number_before(&row.note, " writes over 100 ms");
    let bound = Bound::AtMost(100.0);
    let (figure, met) = match (count, slowest) {
        (Some(n), Some(max)) => (
            format!("{n} writes over 100 ms (slowest {} ms)", bound.show(max, 1)),
            bound.met(max),
        ),
        (None, Some(max)) => (
            format!("slowest write {} ms", bound.show(max, 1)),
            bound.met(max),
        ),
        (Some(n), None) => (format!("{n} writes over 100 ms"), n == 0.0),
        (None, None) => return None,
    };
    Some(Reading { figure, met })
}

/// P6: the 1-client batched rate; the 4-client one beside it when measured.
fn batched_writes(s: &ScenarioRecord) -> Option<Reading> {
    let rate = s.row(case::BATCHED_C1)?.stmts_per_s?;
    let bound = Bound::AtLeast(100_000.0);
    let mut figure = format!("{} statements/s", bound.show_count(rate));
    if let Some(four) = s.row(case::BATCHED_C4).and_then(|r| r.stmts_per_s) {
        figure.push_str(&format!(
            " (4 clients: {}/s)",
            thousands(&format!("{four:.0}"))
        ));
    }
    Some(Reading {
        figure,
        met: bound.met(rate),
    })
}

/// P7: the data set's restart time against the 1 MiB one's (the row carrying the ratio).
fn restart(s: &ScenarioRecord) -> Option<Reading> {
    let row = s.rows.iter().find(|r| {
        r.case.starts_with(case::RESTART_PREFIX) && r.ratio.as_ref().is_some_and(|q| q.of == "time")
    })?;
    time_ratio(s, &row.case, Bound::AtMost(1.25))
}

/// P8: aggregate throughput of 16 concurrent downloads over one alone.
fn concurrent_backups(s: &ScenarioRecord) -> Option<Reading> {
    let (row, v) = ratio_of(s, case::BACKUP_16, "throughput")?;
    let bound = Bound::AtLeast(4.0);
    let detail = match (row.wall_s, s.reference_of(row).and_then(|r| r.wall_s)) {
        (Some(all), Some(one)) => format!(" (16 in {}, one in {})", duration(all), duration(one)),
        _ => String::new(),
    };
    Some(Reading {
        figure: format!("{}×{detail}", bound.show(v, 2)),
        met: bound.met(v),
    })
}

/// The log engine: entries per counted fsync with 64 single-entry proposers, and the append
/// rate at each batch size beside it.
fn log_group_commit(s: &ScenarioRecord) -> Option<Reading> {
    let row = s.row(case::GROUP_COMMIT)?;
    let entries = row.statements? as f64;
    let fsyncs = number_before(&row.note, " fsyncs, counted")?;
    let per_fsync = entries / fsyncs.max(1.0);
    let bound = Bound::Above(1.0);
    let mut figure = format!(
        "{} entries per fsync ({entries} entries, {fsyncs} fsyncs)",
        bound.show(per_fsync, 1)
    );
    let rates: Option<Vec<String>> = case::ENGINE_BATCHES
        .iter()
        .map(|c| Some(thousands(&format!("{:.0}", s.row(c)?.stmts_per_s?))))
        .collect();
    if let Some(rates) = rates {
        figure.push_str(&format!(
            "; batches of 1 / 16 / 256: {} entries/s",
            rates.join(" / ")
        ));
    }
    Some(Reading {
        figure,
        met: bound.met(per_fsync),
    })
}

fn shell_backup_memory(s: &ScenarioRecord) -> Option<Reading> {
    let row = s.row(case::SHELL_BACKUP)?;
    let peak = row.peak_rss_mib?;
    let bound = Bound::Below(32.0);
    let mut figure = format!("{} MiB peak", bound.show(peak, 1));
    if let Some(g) = row.rss_growth_mib {
        figure.push_str(&format!(" ({g:.1} MiB over the shell at rest)"));
    }
    Some(Reading {
        figure,
        met: bound.met(peak),
    })
}

/// The number just before `suffix` in `text`: `4` in `...; 4 writes over 100 ms`.
fn number_before(text: &str, suffix: &str) -> Option<f64> {
    let head = &text[..text.find(suffix)?];
    head.rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LatencyRecord, RatioRecord};

    fn row(case: &str) -> RowRecord {
        RowRecord {
            case: case.into(),
            ..Default::default()
        }
    }

    fn timed_ratio(case: &str, wall: f64, value: f64, of: &str, reference: &str) -> RowRecord {
        RowRecord {
            wall_s: Some(wall),
            ratio: Some(RatioRecord {
                value,
                of: of.into(),
                reference: reference.into(),
            }),
            ..row(case)
        }
    }

    fn scenario(name: &str, rows: Vec<RowRecord>) -> ScenarioRecord {
        ScenarioRecord {
            name: name.into(),
            rows,
            ..Default::default()
        }
    }

    fn goal(id: &str, target_has: &str) -> &'static Goal {
        GOALS
            .iter()
            .find(|g| g.id == id && g.target.contains(target_has))
            .unwrap()
    }

    #[test]
    fn a_miss_is_never_rounded_into_a_pass() {
        assert_eq!(beside(0.5049, 0.5, 2), "0.505");
        assert_eq!(beside(0.5001, 0.5, 2), "0.5001");
        assert_eq!(
            beside(0.4996, 0.5, 2),
            "0.4996",
            "nor a pass into the bound"
        );
        assert_eq!(beside(0.87, 0.5, 2), "0.87");
        assert_eq!(beside(0.5, 0.5, 2), "0.50");
        assert_eq!(beside(99_999.6, 100_000.0, 0), "99999.6");
        assert_eq!(Bound::AtLeast(100_000.0).show_count(99_999.6), "99,999.6");
        assert_eq!(Bound::AtLeast(100_000.0).show_count(69_116.2), "69,116");
        assert_eq!(beside(0.5 + 1e-12, 0.5, 2), format!("{}", 0.5 + 1e-12));
    }

    #[test]
    fn p1_is_judged_on_the_synced_pair_with_the_unsynced_one_and_flags_beside() {
        let p1 = goal("P1", "sqlite3 .backup");
        let with = |synced: f64, flags: Vec<String>| ScenarioRecord {
            flags,
            ..scenario(
                "backup",
                vec![
                    timed_ratio(case::BACKUP_SYNCED, 1.2, synced, "time", "sqlite3 .backup"),
                    timed_ratio(
                        case::BACKUP,
                        1.0,
                        0.8,
                        "time",
                        "sqlite3 .backup under eatmydata",
                    ),
                    RowRecord {
                        wall_s: Some(2.4),
                        ..row("sqlite3 .backup")
                    },
                    RowRecord {
                        wall_s: Some(1.25),
                        ..row("sqlite3 .backup under eatmydata")
                    },
                ],
            )
        };
        let met = (p1.read)(&with(0.5, vec![])).unwrap();
        assert_eq!(
            met,
            Reading {
                figure: "0.50× synced (1.20 s vs 2.40 s); unsynced 0.80× (1.00 s vs 1.25 s)".into(),
                met: true
            }
        );
        let missed = (p1.read)(&with(0.5004, vec![])).unwrap();
        assert!(!missed.met, "the unsynced 0.80× does not decide either way");
        assert!(
            missed.figure.starts_with("0.5004× synced"),
            "{}",
            missed.figure
        );
        // Only the data set's own flags (`P1: `), not the second size's.
        let flagged = (p1.read)(&with(
            0.3,
            vec![
                "P1: sqlite3 .backup ran at 90 MB/s, 0.20x dd".into(),
                "P1 [256 MiB]: 2 case(s) started before the machine was quiet".into(),
            ],
        ))
        .unwrap();
        assert!(flagged.met);
        assert!(
            flagged
                .figure
                .ends_with("; FLAGGED: sqlite3 .backup ran at 90 MB/s, 0.20x dd"),
            "{}",
            flagged.figure
        );
    }

    #[test]
    fn p1_of_a_report_before_the_fair_method_is_marked() {
        let p1 = goal("P1", "sqlite3 .backup");
        let old = scenario(
            "backup",
            vec![
                timed_ratio(case::BACKUP, 4.5, 0.867, "time", "sqlite3 .backup"),
                RowRecord {
                    wall_s: Some(5.19),
                    ..row("sqlite3 .backup")
                },
            ],
        );
        let r = (p1.read)(&old).unwrap();
        assert_eq!(
            r.figure,
            "0.87× (4.50 s vs 5.19 s) (before issue #26: curl unsynced against the synced \
             `sqlite3 .backup`)"
        );
        assert!(!r.met, "judged against the new 0.5× bound");
    }

    #[test]
    fn server_memory_reads_rss_anon_and_falls_back_to_old_reports() {
        let p3 = goal("P3", "RssAnon");
        let new = scenario(
            "backup",
            vec![RowRecord {
                rss_anon_growth_mib: Some(64.04),
                rss_file_growth_mib: Some(900.0),
                rss_growth_mib: Some(950.0),
                ..row(case::BACKUP)
            }],
        );
        assert_eq!(
            (p3.read)(&new).unwrap(),
            Reading {
                figure: "64.04 MiB `RssAnon` (`RssFile` +900.0 MiB)".into(),
                met: false
            }
        );
        let old = scenario(
            "backup",
            vec![RowRecord {
                rss_growth_mib: Some(6.9),
                ..row(case::BACKUP)
            }],
        );
        let r = (p3.read)(&old).unwrap();
        assert!(r.met);
        assert!(
            r.figure.starts_with("6.9 MiB (VmHWM over VmRSS"),
            "{}",
            r.figure
        );
    }

    #[test]
    fn issue_26_targets() {
        let bound_of = |id: &str, has: &str, case: &str, v: f64| {
            let g = goal(id, has);
            let s = scenario(g.scenario, vec![timed_ratio(case, 1.0, v, "time", "ref")]);
            (g.read)(&s).unwrap().met
        };
        assert!(bound_of("P2", "fmt=sql` ≤", case::DUMP_HTTP, 0.3));
        assert!(!bound_of("P2", "fmt=sql` ≤", case::DUMP_HTTP, 0.31));
        assert!(bound_of("P7", "binary `POST", case::LOAD_BINARY, 1.5));
        assert!(!bound_of("P7", "binary `POST", case::LOAD_BINARY, 1.51));
        assert!(bound_of("P7", "SQL `POST", case::LOAD_SQL, 0.5));
        assert!(!bound_of("P7", "SQL `POST", case::LOAD_SQL, 0.51));
        assert!(bound_of("P1", "sqlite3 .backup", case::BACKUP_SYNCED, 0.5));
        assert!(!bound_of(
            "P1",
            "sqlite3 .backup",
            case::BACKUP_SYNCED,
            0.51
        ));
    }

    #[test]
    fn a_ratio_of_the_wrong_kind_is_no_figure() {
        let p4 = goal("P4", "follower");
        let s = scenario(
            "backup",
            vec![timed_ratio(case::THROUGH_FOLLOWER, 7.0, 0.95, "time", "x")],
        );
        assert_eq!((p4.read)(&s), None);
    }

    #[test]
    fn a_missing_row_or_field_is_no_figure() {
        let empty = scenario("backup", vec![row(case::BACKUP)]);
        for g in GOALS {
            assert_eq!((g.read)(&empty), None, "{} {}", g.id, g.target);
        }
    }

    #[test]
    fn p5_bound_follows_the_idle_p99_and_the_slowest_write_decides_stalls() {
        let latency = |p99: f64, max: Option<f64>| LatencyRecord {
            p99: Some(p99),
            max,
            ..Default::default()
        };
        let s = |busy_p99: f64, max: f64, note: &str| {
            scenario(
                "backup",
                vec![
                    RowRecord {
                        latency_ms: Some(latency(busy_p99, Some(max))),
                        note: note.into(),
                        ..row(case::WRITES_DURING_BACKUP)
                    },
                    RowRecord {
                        latency_ms: Some(latency(26.7, None)),
                        ..row(case::WRITES_IDLE)
                    },
                ],
            )
        };
        let p99 = goal("P5", "p99");
        let stalls = goal("P5", "100 ms");
        // Bound max(2 × 26.7, 26.7 + 20) = 53.4 ms.
        let ok = s(
            26.8,
            86.9,
            "P5: p99 26.8 ms, goal <= 53.4 ms; 0 writes over 100 ms",
        );
        assert_eq!(
            (p99.read)(&ok).unwrap(),
            Reading {
                figure: "p99 26.8 ms during the backup, 26.7 ms without (bound 53.4 ms)".into(),
                met: true
            }
        );
        assert_eq!(
            (stalls.read)(&ok).unwrap(),
            Reading {
                figure: "0 writes over 100 ms (slowest 86.9 ms)".into(),
                met: true
            }
        );
        let bad = s(
            53.41,
            403.0,
            "P5: p99 53.4 ms, goal <= 53.4 ms; 4 writes over 100 ms",
        );
        let r = (p99.read)(&bad).unwrap();
        assert!(!r.met);
        assert!(r.figure.starts_with("p99 53.41 ms"), "{}", r.figure);
        assert_eq!(
            (stalls.read)(&bad).unwrap(),
            Reading {
                figure: "4 writes over 100 ms (slowest 403.0 ms)".into(),
                met: false
            }
        );
        // A fast idle run: the 20 ms slack is the larger bound, max(2 × 5, 5 + 20) = 25 ms.
        let mut fast_idle = s(24.0, 30.0, "");
        fast_idle.rows[1].latency_ms = Some(latency(5.0, None));
        let r = (p99.read)(&fast_idle).unwrap();
        assert!(r.met, "{}", r.figure);
        assert!(r.figure.ends_with("(bound 25.0 ms)"), "{}", r.figure);
    }

    #[test]
    fn rates_memory_and_fsyncs() {
        let writes = scenario(
            "writes",
            vec![
                RowRecord {
                    stmts_per_s: Some(69_116.4),
                    ..row(case::BATCHED_C1)
                },
                RowRecord {
                    stmts_per_s: Some(97_719.0),
                    ..row(case::BATCHED_C4)
                },
                RowRecord {
                    stmts_per_s: Some(10_000.0),
                    ..row(case::SINGLE_C64)
                },
            ],
        );
        let p6 = (goal("P6", "statements/s").read)(&writes).unwrap();
        assert_eq!(
            p6,
            Reading {
                figure: "69,116 statements/s (4 clients: 97,719/s)".into(),
                met: false
            }
        );
        let p9 = (goal("P9", "writes/s").read)(&writes).unwrap();
        assert_eq!((p9.figure.as_str(), p9.met), ("10,000 writes/s", true));

        let shell = |peak: f64| {
            scenario(
                "shell-backup-memory",
                vec![RowRecord {
                    peak_rss_mib: Some(peak),
                    rss_growth_mib: Some(1.7),
                    ..row(case::SHELL_BACKUP)
                }],
            )
        };
        let g = goal("shell", ".backup");
        assert_eq!(
            (g.read)(&shell(6.4)).unwrap().figure,
            "6.4 MiB peak (1.7 MiB over the shell at rest)"
        );
        let at_bound = (g.read)(&shell(32.0)).unwrap();
        assert!(!at_bound.met, "< 32 MiB is strict");
        assert_eq!(
            at_bound.figure,
            "32.0 MiB peak (1.7 MiB over the shell at rest)"
        );

        let mut rows = vec![RowRecord {
            statements: Some(32_165),
            note: "64 proposers, batch 1, 32165 entries; 39.6 entries/fsync (812 fsyncs, \
                   counted); latency per entry"
                .into(),
            ..row(case::GROUP_COMMIT)
        }];
        for (c, rate) in case::ENGINE_BATCHES.iter().zip([285.3, 3318.0, 50929.0]) {
            rows.push(RowRecord {
                stmts_per_s: Some(rate),
                ..row(c)
            });
        }
        let log = (goal("log", "fsync").read)(&scenario("log-append", rows)).unwrap();
        assert_eq!(
            log,
            Reading {
                figure: "39.6 entries per fsync (32165 entries, 812 fsyncs); batches of 1 / 16 \
                         / 256: 285 / 3,318 / 50,929 entries/s"
                    .into(),
                met: true
            }
        );
        let per_entry = scenario(
            "log-append",
            vec![RowRecord {
                statements: Some(500),
                note: "500 entries; 1.0 entries/fsync (500 fsyncs, counted)".into(),
                ..row(case::GROUP_COMMIT)
            }],
        );
        assert!(!(goal("log", "fsync").read)(&per_entry).unwrap().met);
    }

    #[test]
    fn restart_reads_the_row_with_the_ratio() {
        // The 1 MB row first: the reading must find the data set's row by its ratio, not by
        // its place.
        let s = scenario(
            "restore",
            vec![
                RowRecord {
                    wall_s: Some(0.0116),
                    ..row("raftlited restart to /readyz, 1 MB database (median of 3)")
                },
                timed_ratio(
                    "raftlited restart to /readyz, 1074 MB database (median of 3)",
                    0.0129,
                    1.11,
                    "time",
                    "raftlited restart to /readyz, 1 MB database (median of 3)",
                ),
            ],
        );
        let r = (goal("P7", "restart").read)(&s).unwrap();
        assert_eq!(
            r,
            Reading {
                figure: "1.11× (12.9 ms vs 11.6 ms)".into(),
                met: true
            }
        );
    }
}
