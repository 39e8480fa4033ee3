//! Measuring: latency percentiles, memory from `/proc`, timed runs of external tools, and
//! alternating rounds of a pair of cases.
//!
//! Memory as `docs/benchmarks.md` defines it ("Measurements"): peak RSS (`VmHWM`) minus the idle
//! baseline of the same process. `VmHWM` only grows, so a server's baseline is its `VmRSS`
//! read at idle just before a scenario, and its peak is `VmHWM` read after it. A command-line
//! tool has no idle moment, so its baseline is its own peak on an empty input of the same
//! shape (see [`ToolRun`]); its peak comes from `/usr/bin/time -f %M` when that exists (exact),
//! else from polling `VmHWM` in `/proc` every few milliseconds (a close lower bound).

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
