//! Measuring: latency percentiles, memory from `/proc`, timed runs of external tools, and
//! alternating rounds of a pair of cases.
//!
//! Memory as `docs/benchmarks.md` defines it ("Measurements"): peak RSS (`VmHWM`) minus the idle
//! baseline of the same process. `VmHWM` only grows, so a server's baseline is its `VmRSS`
//! read at idle just before a scenario, and its peak is `VmHWM` read after it. A command-line
//! tool has no idle moment, so its baseline is its own peak on an empty input of the same
//! shape (see [`ToolRun`]); its peak comes from `/usr/bin/time -f %M` when that exists (exact),
//! else from polling `VmHWM` in `/proc` every few milliseconds (a close lower bound).
//!
//! A server's memory is also split the way issue #26 states its bound: anonymous memory
//! (`RssAnon`, what the process itself allocated) apart from mapped file pages (`RssFile`,
//! page cache of a mapped database that the kernel can drop). Neither has a high-water mark,
//! so [`MemorySampler`] polls them during an operation and keeps each one's largest value.
//!
//! Fair timing (issue #26, `docs/benchmarks.md` "Fairness"): [`wait_quiet`] waits until the
//! kernel has next to nothing dirty or under writeback (`/proc/vmstat`) before timed rounds,
//! and [`dd_reference`] times a plain `dd conv=fsync` write of the data set's size before and
//! after the rounds, so a run during which the disk changed speed is flagged ([`speed_flag`]).
//! (The reference tool is held to its own usual speed: `scenarios::backup::p1`.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency percentiles in milliseconds (nearest rank on the sorted samples).
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// None when there are no samples.
    pub fn of(samples: &mut [Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1e3
        };
        Some(Percentiles {
            samples: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

pub fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One finished run of an external command.
#[derive(Debug, Clone)]
pub struct ToolRun {
    pub wall: Duration,
    /// Peak RSS in KiB, if it could be measured.
    pub peak_rss_kib: Option<u64>,
}

/// How long any single external command may run before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `program args`, with stdout to `stdout_to` (or discarded) and stdin from `stdin_from`
/// (or empty), and returns its wall time and peak RSS. A non-zero exit is an error carrying
/// the command's stderr.
pub fn run_tool(
    program: &Path,
    args: &[&str],
    stdin_from: Option<&Path>,
    stdout_to: Option<&Path>,
) -> Result<ToolRun, String> {
    let time_bin = Path::new("/usr/bin/time");
    let rss_file = tempfile_path("rss");
    let mut cmd = if time_bin.exists() {
        let mut c = Command::new(time_bin);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stderr(Stdio::piped());
    cmd.stdin(match stdin_from {
        Some(p) => Stdio::from(open(p, false)?),
        None => Stdio::null(),
    });
    cmd.stdout(match stdout_to {
        Some(p) => Stdio::from(open(p, true)?),
        None => Stdio::null(),
    });
    let shown = format!("{} {}", program.display(), args.join(" "));
    settle();
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("run {shown}: {e}"))?;
    // Drain stderr on a thread so a chatty tool cannot block on a full pipe.
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let mut polled_peak = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait {shown}: {e}"))? {
            break status;
        }
        if started.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{shown}: still running after {TOOL_TIMEOUT:?}; killed"
            ));
        }
        if let Some(kib) = proc_status_kib(child.id(), "VmHWM") {
            polled_peak = polled_peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = started.elapsed();
    let stderr = err_reader.join().unwrap_or_default();
    let timed = std::fs::read_to_string(&rss_file).ok();
    let _ = std::fs::remove_file(&rss_file);
    if !status.success() {
        return Err(format!("{shown}: {status}: {}", stderr.trim()));
    }
    // With /usr/bin/time, the polled pid is `time` itself; its report is the tool's peak.
    let peak_rss_kib = match timed {
        Some(t) => t.lines().last().and_then(|l| l.trim().parse().ok()),
        None => (polled_peak > 0).then_some(polled_peak),
    };
    Ok(ToolRun { wall, peak_rss_kib })
}

fn open(p: &Path, write: bool) -> Result<std::fs::File, String> {
    let r = if write {
        std::fs::File::create(p)
    } else {
        std::fs::File::open(p)
    };
    r.map_err(|e| format!("open {}: {e}", p.display()))
}

fn tempfile_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "raftlite-bench-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Flushes dirty pages (`sync`) before a timed case, so no case pays for the writeback of the
/// gigabytes an earlier one wrote. Best effort: a failure only makes the figures noisier.
pub fn settle() {
    let _ = Command::new("sync").status();
}

/// Runs the pair of cases `a` and `b` for `rounds` rounds, back to back, alternating which
/// goes first: a then b in the first round, b then a in the second, and so on. On a noisy
/// machine a single run of a case moves by tens of percent, and the second of two back-to-back
/// runs is not in the same position as the first (caches, writeback, the other load), so
/// neither side gets the same position every time. Returns each side's results in round
/// order (the two sides may return different types); the first error stops the rounds.
pub fn alternate<A, B>(
    rounds: usize,
    mut a: impl FnMut() -> Result<A, String>,
    mut b: impl FnMut() -> Result<B, String>,
) -> Result<(Vec<A>, Vec<B>), String> {
    if rounds == 0 {
        return Err("alternate: at least one round is needed".into());
    }
    let (mut from_a, mut from_b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        if round % 2 == 0 {
            from_a.push(a()?);
            from_b.push(b()?);
        } else {
            from_b.push(b()?);
            from_a.push(a()?);
        }
    }
    Ok((from_a, from_b))
}

/// The order of `cases` cases in each of `rounds` rounds: case indices, rotated by one each
/// round (0 1 2, then 1 2 0, then 2 0 1, ...), so that over as many rounds as cases every case
/// takes every position once and none always runs first, or right after the same other one.
pub fn rotated(rounds: usize, cases: usize) -> Vec<Vec<usize>> {
    (0..rounds)
        .map(|r| (0..cases).map(|i| (r + i) % cases).collect())
        .collect()
}

/// The median item by `key`: the middle one of an odd count, the lower middle one of an even
/// count (always a measured item, never an average of two). None for no items. A NaN key
/// sorts after every number.
pub fn median_by<T>(items: &[T], key: impl Fn(&T) -> f64) -> Option<&T> {
    let mut order: Vec<&T> = items.iter().collect();
    order.sort_by(|x, y| key(x).total_cmp(&key(y)));
    let middle = order.len().checked_sub(1)? / 2;
    Some(order[middle])
}

/// Reads a file once so every timed run starts from the same (warm) page cache.
pub fn warm_page_cache(path: &Path) -> Result<(), String> {
    let mut f = open(path, false)?;
    std::io::copy(&mut f, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| format!("read {}: {e}", path.display()))
}

/// A process's resident memory by kind, in KiB (`/proc/PID/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resident {
    /// `RssAnon`: heap, stacks, anonymous maps; what a memory bound is about.
    pub anon_kib: u64,
    /// `RssFile`: resident pages of mapped files (a mapped database is page cache).
    pub file_kib: u64,
}

impl Resident {
    pub fn of(pid: u32) -> Option<Resident> {
        Some(Resident {
            anon_kib: proc_status_kib(pid, "RssAnon")?,
            file_kib: proc_status_kib(pid, "RssFile")?,
        })
    }
}

/// Growth of a process's resident memory during an operation, in MiB: the largest value
/// sampled minus the value just before, for each kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    pub anon_mib: f64,
    pub file_mib: f64,
}

/// How often [`MemorySampler`] reads `/proc`: often enough that a transient buffer of a few
/// milliseconds is seen, rarely enough to cost nothing measurable.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Polls the `RssAnon` and `RssFile` of some processes on a thread until [`finish`]ed, keeping
/// each one's largest value. A process that has gone (or a kernel without these fields) yields
/// None for it.
///
/// [`finish`]: MemorySampler::finish
pub struct MemorySampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    baselines: Vec<Option<Resident>>,
    thread: std::thread::JoinHandle<Vec<Option<Resident>>>,
}

impl MemorySampler {
    /// Reads every process's baseline now, then samples until [`MemorySampler::finish`].
    pub fn start(pids: Vec<u32>) -> MemorySampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let baselines: Vec<Option<Resident>> = pids.iter().map(|p| Resident::of(*p)).collect();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop_seen = stop.clone();
        let mut peaks = baselines.clone();
        let thread = std::thread::spawn(move || loop {
            for (peak, pid) in peaks.iter_mut().zip(&pids) {
                if let (Some(p), Some(now)) = (peak.as_mut(), Resident::of(*pid)) {
                    p.anon_kib = p.anon_kib.max(now.anon_kib);
                    p.file_kib = p.file_kib.max(now.file_kib);
                }
            }
            if stop_seen.load(Ordering::Relaxed) {
                return peaks;
            }
            std::thread::sleep(SAMPLE_EVERY);
        });
        MemorySampler {
            stop,
            baselines,
            thread,
        }
    }

    /// Stops sampling (after one last sample) and returns each process's growth.
    pub fn finish(self) -> Vec<Option<Growth>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peaks = self.thread.join().unwrap_or_default();
        self.baselines
            .iter()
            .zip(peaks)
            .map(|(base, peak)| {
                let (b, p) = ((*base)?, peak?);
                Some(Growth {
                    anon_mib: kib_to_mib(p.anon_kib.saturating_sub(b.anon_kib)),
                    file_mib: kib_to_mib(p.file_kib.saturating_sub(b.file_kib)),
                })
            })
            .collect()
    }
}

/// The largest growth of each kind over some processes (`RssAnon` and `RssFile` may peak on
/// different nodes). None when no process was measured.
pub fn largest_growth(all: &[Option<Growth>]) -> Option<Growth> {
    all.iter().flatten().copied().reduce(|a, b| Growth {
        anon_mib: a.anon_mib.max(b.anon_mib),
        file_mib: a.file_mib.max(b.file_mib),
    })
}

/// Pages the kernel still has to write: `nr_dirty + nr_writeback` from `/proc/vmstat`'s text.
/// None when either counter is missing.
pub fn unwritten_pages(vmstat: &str) -> Option<u64> {
    let field = |name: &str| {
        vmstat.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    Some(field("nr_dirty")? + field("nr_writeback")?)
}

/// The page size `/proc/vmstat` counts in, from `getconf PAGESIZE` (4 KiB when that fails:
/// the size on every machine this runs on).
fn page_size() -> u64 {
    Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(4096)
}

/// The machine counts as quiet below this much dirty or in-writeback data: a few MiB is what
/// an idle system (logs, other tenants) keeps dirty; a timed round then pays for nothing an
/// earlier one wrote.
pub const QUIET_BELOW_BYTES: u64 = 4 << 20;
/// How long [`wait_quiet`] waits at most; past it the round runs anyway and the report says so.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`wait_quiet`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    pub waited: Duration,
    /// Dirty + writeback bytes at the end.
    pub unwritten_bytes: u64,
    /// Why the wait ended before the machine was quiet, or None when it was.
    pub timed_out: Option<String>,
}

/// Waits until the kernel has less than [`QUIET_BELOW_BYTES`] dirty or under writeback and
/// `also_idle` says the rest is idle too (e.g. a server has removed its temporary files),
/// polling every 100 ms for at most `timeout`. A `sync` starts the writeback first, so the
/// wait is for the disk, not for the kernel's writeback timer.
pub fn wait_quiet(timeout: Duration, also_idle: impl Fn() -> Result<(), String>) -> Quiet {
    let started = Instant::now();
    let page = page_size();
    settle();
    loop {
        let unwritten = std::fs::read_to_string("/proc/vmstat")
            .ok()
            .and_then(|t| unwritten_pages(&t))
            .map_or(0, |p| p * page);
        let busy = if unwritten >= QUIET_BELOW_BYTES {
            Err(format!(
                "{:.1} MiB dirty or in writeback",
                kib_to_mib(unwritten / 1024)
            ))
        } else {
            also_idle()
        };
        match busy {
            Ok(()) => {
                return Quiet {
                    waited: started.elapsed(),
                    unwritten_bytes: unwritten,
                    timed_out: None,
                }
            }
            Err(why) if started.elapsed() >= timeout => {
                return Quiet {
                    waited: started.elapsed(),
                    unwritten_bytes: unwritten,
                    timed_out: Some(format!(
                        "not quiet after {:.0} s: {why}",
                        timeout.as_secs_f64()
                    )),
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Times `dd if=/dev/zero of=FILE bs=1M count=MIB conv=fsync` (the file removed after): what
/// this disk does for a plain synced write of that size right now. Returns its MB/s.
pub fn dd_reference(file: &Path, mib: u64) -> Result<f64, String> {
    let run = run_tool(
        Path::new("dd"),
        &[
            "if=/dev/zero",
            &format!("of={}", file.display()),
            "bs=1M",
            &format!("count={}", mib.max(1)),
            "conv=fsync",
        ],
        None,
        None,
    );
    let _ = std::fs::remove_file(file);
    let run = run?;
    Ok((mib.max(1) << 20) as f64 / 1e6 / run.wall.as_secs_f64().max(1e-9))
}

/// How far two speeds of the same write may stray from each other before the run is flagged
/// (dd after the rounds against dd before): a factor of [`REFERENCE_FACTOR`] either way means
/// the disk or the machine behaved differently during the rounds (another tenant's
/// writeback, throttling), and the run's ratios are not comparable.
pub const REFERENCE_FACTOR: f64 = 2.0;

/// A flag when `what`'s MB/s is more than [`REFERENCE_FACTOR`] times faster or slower than
/// `against`'s; None when it is within.
pub fn speed_flag(what: &str, mb_s: f64, against: &str, against_mb_s: f64) -> Option<String> {
    if !(mb_s > 0.0 && against_mb_s > 0.0) {
        return Some(format!("{what}: no speed to compare with {against}"));
    }
    let ratio = mb_s / against_mb_s;
    (!(1.0 / REFERENCE_FACTOR..=REFERENCE_FACTOR).contains(&ratio)).then(|| {
        format!(
            "{what} ran at {mb_s:.0} MB/s, {ratio:.2}x the {against_mb_s:.0} MB/s of \
             {against} (more than {REFERENCE_FACTOR}x away)"
        )
    })
}

/// Flushes `path`'s data and metadata to the disk (`fsync`), as a synced copy would.
pub fn fsync_file(path: &Path) -> Result<(), String> {
    open(path, false)?
        .sync_all()
        .map_err(|e| format!("fsync {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert!(Percentiles::of(&mut []).is_none());
    }

    #[test]
    fn alternate_swaps_the_order_every_round() {
        // Each call returns the call's position overall, so the order shows in the results.
        let calls = std::cell::Cell::new(0);
        let next = || {
            calls.set(calls.get() + 1);
            Ok::<_, String>(calls.get())
        };
        let (a, b) = alternate(3, next, next).unwrap();
        assert_eq!((a, b), (vec![1, 4, 5], vec![2, 3, 6]));
        calls.set(0);
        let (a, b) = alternate(1, next, next).unwrap();
        assert_eq!((a, b), (vec![1], vec![2]));
        assert!(alternate(0, next, next).is_err());
    }

    #[test]
    fn rotation_puts_every_case_in_every_position() {
        let orders = rotated(5, 4);
        assert_eq!(orders[0], [0, 1, 2, 3]);
        assert_eq!(orders[1], [1, 2, 3, 0]);
        assert_eq!(orders[4], [0, 1, 2, 3]);
        for position in 0..4 {
            let firsts: std::collections::BTreeSet<usize> =
                orders[..4].iter().map(|o| o[position]).collect();
            assert_eq!(firsts.len(), 4, "position {position}");
        }
        assert!(rotated(0, 4).is_empty());
    }

    #[test]
    fn alternate_stops_at_the_first_error() {
        let b_calls = std::cell::Cell::new(0);
        let failing_b = || {
            b_calls.set(b_calls.get() + 1);
            if b_calls.get() == 2 {
                Err("round 2 failed".to_string())
            } else {
                Ok(())
            }
        };
        let err = alternate(3, || Ok(()), failing_b).unwrap_err();
        assert_eq!(err, "round 2 failed");
        assert_eq!(b_calls.get(), 2, "no round runs after the failure");
    }

    #[test]
    fn median_of_odd_even_and_single_counts() {
        let by_value = |v: &f64| *v;
        assert_eq!(median_by(&[5.02, 4.10, 4.35], by_value), Some(&4.35));
        assert_eq!(median_by(&[3.0, 1.0, 2.0, 10.0, 0.5], by_value), Some(&2.0));
        assert_eq!(median_by(&[7.0], by_value), Some(&7.0));
        // Even: the lower middle item, a measured one rather than the mean 2.5.
        assert_eq!(median_by(&[4.0, 1.0, 3.0, 2.0], by_value), Some(&2.0));
        assert_eq!(median_by(&[], by_value), None);
        // By key, returning the item itself.
        let rows = [("slow", 9.0), ("fast", 1.0), ("typical", 5.0)];
        assert_eq!(median_by(&rows, |r| r.1).map(|r| r.0), Some("typical"));
    }

    #[test]
    fn vmstat_counts_dirty_and_writeback_pages() {
        let text = "nr_free_pages 1000\nnr_dirty 300\nnr_dirty_threshold 9\n\
                    nr_writeback 20\nnr_writeback_temp 5\n";
        assert_eq!(
            unwritten_pages(text),
            Some(320),
            "exact names, not prefixes"
        );
        assert_eq!(unwritten_pages("nr_dirty 3\n"), None);
        assert_eq!(unwritten_pages("nr_dirty x\nnr_writeback 1\n"), None);
        // The real file parses.
        let real = std::fs::read_to_string("/proc/vmstat").unwrap();
        assert!(unwritten_pages(&real).is_some());
    }

    #[test]
    fn quiet_wait_ends_on_its_timeout_and_says_why() {
        let q = wait_quiet(Duration::from_millis(300), || {
            Err("a temp file is left".into())
        });
        let why = q.timed_out.expect("never idle: the wait times out");
        assert!(
            why.contains("a temp file is left") || why.contains("dirty"),
            "{why}"
        );
        assert!(q.waited >= Duration::from_millis(300) && q.waited < Duration::from_secs(30));
    }

    #[test]
    fn speeds_are_flagged_only_beyond_the_factor() {
        let flag = |mb_s: f64| speed_flag("sqlite3 .backup", mb_s, "dd conv=fsync", 400.0);
        assert_eq!(flag(500.0), None);
        assert_eq!(flag(200.0), None, "exactly 2x slower");
        assert_eq!(flag(800.0), None, "exactly 2x faster");
        assert_eq!(
            flag(150.0).unwrap(),
            "sqlite3 .backup ran at 150 MB/s, 0.38x the 400 MB/s of dd conv=fsync (more than \
             2x away)"
        );
        assert!(flag(1000.0).is_some(), "too fast too");
        assert!(flag(0.0).is_some());
    }

    #[test]
    fn sampler_sees_anonymous_growth_apart_from_file_pages() {
        let sampler = MemorySampler::start(vec![std::process::id()]);
        // 48 MiB of touched heap, held while the sampler runs.
        let held = vec![7u8; 48 << 20];
        std::hint::black_box(&held);
        std::thread::sleep(Duration::from_millis(100));
        let growth = sampler.finish();
        drop(held);
        let g = growth[0].expect("this process is measurable");
        assert!(g.anon_mib >= 40.0, "{g:?}");
        let gone = MemorySampler::start(vec![u32::MAX]).finish();
        assert_eq!(gone, vec![None]);
        assert_eq!(largest_growth(&[None, Some(g)]), Some(g));
        assert_eq!(largest_growth(&[None]), None);
    }

    #[test]
    fn own_memory_is_readable() {
        // RSS first: the peak read afterwards can only be larger (tests run in parallel).
        let rss = proc_status_kib(std::process::id(), "VmRSS").unwrap();
        let hwm = proc_status_kib(std::process::id(), "VmHWM").unwrap();
        assert!(hwm >= rss && rss > 0);
    }

    #[test]
    fn tool_runs_are_timed_and_failures_reported() {
        let run = run_tool(Path::new("/bin/sh"), &["-c", "true"], None, None).unwrap();
        assert!(run.wall < Duration::from_secs(10));
        assert!(run.peak_rss_kib.is_some());
        let err = run_tool(
            Path::new("/bin/sh"),
            &["-c", "echo boom >&2; exit 3"],
            None,
            None,
        )
        .unwrap_err();
        assert!(err.contains("boom"), "{err}");
    }
}
