//! Network partitions against a real 3-node cluster, checked for linearizability.
//!
//! Each scenario starts three `raftlited` processes whose node-to-node traffic goes through the
//! fault proxy (`tests/faults/proxy.rs`), runs clients that write and read three keys on every
//! node at every consistency level, injects its faults, heals, and then checks: the writes and
//! the `strong` and `linearizable` reads are linearizable (todc-utils' Wing–Gong–Lowe checker,
//! one register per key), no acknowledged write is missing on any node, and every replica
//! holds the same content. `weak` and `none` reads are reported, not asserted. The checker's
//! own tests show it rejects a stale read, constructed and recorded from a real cluster.
//!
//! `RAFTLITE_FAULTS_SEED` and `RAFTLITE_FAULTS_SECONDS` set the run (see `tests/faults/mod.rs`
//! and `docs/faults.md`).

mod common;
mod faults;

use std::ops::Range;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};

use faults::history::{self, Level, Op, Outcome, Record};
use faults::proxy::Cut;
use faults::{run_scenario, FaultCluster, RunConfig};

/// How long a leader cut off from the majority may keep acting as one. The nodes run with a
/// 500 ms election timeout (`common::FAST_RAFT`).
const LEADER_LEASE_BOUND: Duration = Duration::from_secs(5);

/// A fault round is not started with less than this left of the fault time.
const MIN_ROUND: Duration = Duration::from_secs(2);
/// At most this many fault rounds in a scenario, however long the fault time.
const MAX_ROUNDS: usize = 1000;

fn rng_for(cfg: &RunConfig, salt: u64) -> StdRng {
    StdRng::seed_from_u64(cfg.seed.wrapping_mul(7919).wrapping_add(salt))
}

fn mode(rng: &mut StdRng) -> Cut {
    if rng.random_bool(0.5) {
        Cut::Refuse
    } else {
        Cut::Blackhole
    }
}

/// Sleeps `d`, but never past `until`.
fn sleep_until_or(d: Duration, until: Instant) {
    let now = Instant::now();
    if now < until {
        std::thread::sleep(d.min(until - now));
    }
}

/// A partition scenario: a 3-node cluster behind the proxy, the clients, and rounds of one
/// kind of fault until the run's fault time is spent. `inject` cuts links and says what it did
/// (`None` skips the round: no leader to cut off); the cut holds for a random time in
/// `hold_ms`, then every link heals and the cluster gets a random time in `calm_ms`. Then
/// everything is checked (`Outcomes::assert_sound`).
fn partition_scenario(
    name: &str,
    salt: u64,
    hold_ms: Range<u64>,
    calm_ms: Range<u64>,
    mut inject: impl FnMut(&FaultCluster, &mut StdRng) -> Option<String>,
) {
    let cfg = RunConfig::from_env();
    let cluster = FaultCluster::start(3);
    let outcomes = run_scenario(name, &cluster, &cfg, salt, |c, log| {
        let mut rng = rng_for(&cfg, salt);
        let end = Instant::now() + cfg.fault_time;
        for _round in 0..MAX_ROUNDS {
            if Instant::now() + MIN_ROUND >= end {
                break;
            }
            let Some(what) = inject(c, &mut rng) else {
                continue;
            };
            log.push(what);
            sleep_until_or(
                Duration::from_millis(rng.random_range(hold_ms.clone())),
                end,
            );
            c.net.heal_all();
            log.push("heal all");
            sleep_until_or(
                Duration::from_millis(rng.random_range(calm_ms.clone())),
                end,
            );
        }
    });
    outcomes.assert_sound(&cluster);
}

/// Cuts `victim` off from every other node, both ways.
fn isolate(c: &FaultCluster, rng: &mut StdRng, victim: usize, role: &str) -> Option<String> {
    let m = mode(rng);
    c.net.isolate(&[victim], m);
    Some(format!("isolate {role} node{} ({m:?})", victim + 1))
}

#[test]
fn isolating_the_leader_keeps_the_history_linearizable() {
    partition_scenario("isolate the leader", 1, 3000..6000, 2000..2001, |c, rng| {
        let leader = c.leader(Duration::from_secs(10))?;
        isolate(c, rng, leader, "leader")
    });
}

#[test]
fn isolating_a_follower_keeps_the_history_linearizable() {
    partition_scenario("isolate a follower", 2, 3000..6000, 2000..2001, |c, rng| {
        let leader = c.leader(Duration::from_secs(10))?;
        let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let follower = followers[rng.random_range(0..followers.len())];
        isolate(c, rng, follower, "follower")
    });
}

#[test]
fn splitting_one_from_two_and_healing_keeps_the_history_linearizable() {
    // Any node, leader or not: the seed decides.
    partition_scenario("split 1|2 and heal", 3, 1000..4000, 500..2000, |c, rng| {
        let alone = rng.random_range(0..3);
        isolate(c, rng, alone, "(split 1|2)")
    });
}

#[test]
fn flapping_links_keep_the_history_linearizable() {
    // A new random set of directed cuts every 0.5 to 2.5 s, each link cut with probability
    // 0.3: often one way only.
    partition_scenario("flap links", 4, 500..2500, 0..1, |c, rng| {
        let mut cut = Vec::new();
        for from in 0..3 {
            for to in 0..3 {
                if from != to && rng.random_bool(0.3) {
                    c.net.cut(from, to, mode(rng));
                    cut.push(format!("{}->{}", from + 1, to + 1));
                }
            }
        }
        Some(format!("flap: cut [{}]", cut.join(" ")))
    });
}

#[test]
fn one_way_loss_from_the_leader_keeps_the_history_linearizable() {
    // The leader cannot call the others; they can still call it (votes, forwarded requests
    // and probes reach it).
    partition_scenario(
        "one-way loss from the leader",
        5,
        3000..6000,
        2000..2001,
        |c, rng| {
            let leader = c.leader(Duration::from_secs(10))?;
            let m = mode(rng);
            for other in (0..3).filter(|&i| i != leader) {
                c.net.cut(leader, other, m);
            }
            Some(format!("cut node{} -> others, one way ({m:?})", leader + 1))
        },
    );
}

/// One read at `level` on node `i`, with the time it took.
fn read_on(
    cluster: &FaultCluster,
    i: usize,
    key: usize,
    level: Level,
    timeout: Duration,
) -> (Outcome, Duration) {
    let http = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client");
    let started = Instant::now();
    let outcome =
        faults::workload::perform(&http, &cluster.nodes[i].http_addr, Op::Read { key, level });
    (outcome, started.elapsed())
}

#[test]
fn an_isolated_leader_stops_leading_and_its_linearizable_reads_fail_in_bounded_time() {
    let cluster = FaultCluster::start(3);
    cluster.nodes[0].execute(faults::workload::SCHEMA);
    let leader = cluster.leader(Duration::from_secs(10)).expect("a leader");
    cluster.net.isolate(&[leader], Cut::Refuse);
    let cut_at = Instant::now();
    // A write sent at once reaches the node while its lease still holds and is proposed; it
    // cannot commit, and must still be answered in bounded time (not when the partition
    // heals), without a success.
    let addr = cluster.nodes[leader].http_addr.clone();
    let early_write = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let started = Instant::now();
        let outcome = faults::workload::perform(&http, &addr, Op::Write { key: 1, value: 7 });
        (outcome, started.elapsed())
    });

    // Within the bound, the old leader stops saying it leads: /readyz, /status and weak reads.
    let node = &cluster.nodes[leader];
    let stepped_down = common::wait_until(LEADER_LEASE_BOUND, || {
        let status = node.get("/status").json();
        node.get("/readyz").status == 503
            && status["store"]["leader"]["node_id"] != format!("node{}", leader + 1)
    });
    let stepped_down_after = cut_at.elapsed();
    let status = node.get("/status").json();
    assert!(
        stepped_down,
        "node{} still acts as leader {:?} after being cut off: /readyz {:?}, /status \
         store.leader {}, store.raft.state {}",
        leader + 1,
        cut_at.elapsed(),
        node.get("/readyz").body,
        status["store"]["leader"],
        status["store"]["raft"]["state"],
    );
    eprintln!(
        "node{} cut off: not leader on /readyz and /status after {stepped_down_after:?}",
        leader + 1
    );
    // Weak, strong and linearizable reads end, in bounded time, with rqlite's answer for a
    // node that knows no leader.
    for level in [Level::Weak, Level::Strong, Level::Linearizable] {
        let (outcome, took) = read_on(&cluster, leader, 0, level, Duration::from_secs(30));
        eprintln!("{} read on it: {outcome:?} after {took:?}", level.as_str());
        assert_eq!(
            outcome,
            Outcome::Failed("HTTP 503: leader not found".into()),
            "a {} read on the cut-off leader",
            level.as_str()
        );
        assert!(
            took < Duration::from_secs(10),
            "a {} read on the cut-off leader took {took:?} ({outcome:?})",
            level.as_str()
        );
    }

    // A write sent to it now is refused at once, before anything is proposed.
    let (write, took) = {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let started = Instant::now();
        let outcome = faults::workload::perform(
            &http,
            &cluster.nodes[leader].http_addr,
            Op::Write { key: 0, value: 1 },
        );
        (outcome, started.elapsed())
    };
    eprintln!("write on it: {write:?} after {took:?}");
    assert_eq!(write, Outcome::Failed("HTTP 503: leader not found".into()));

    let (outcome, took) = early_write.join().expect("the writing thread");
    eprintln!("write sent as the cut began: {outcome:?} after {took:?}");
    assert!(
        !matches!(outcome, Outcome::Written) && took < LEADER_LEASE_BOUND,
        "a write sent to the leader as it was cut off: {outcome:?} after {took:?}"
    );

    // The majority side elected a leader meanwhile and serves linearizable reads.
    let majority: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let served = common::wait_until(Duration::from_secs(15), || {
        majority.iter().any(|&i| {
            matches!(
                read_on(&cluster, i, 0, Level::Linearizable, Duration::from_secs(5)).0,
                Outcome::Read(_)
            )
        })
    });
    assert!(
        served,
        "the majority side never served a linearizable read\n{}",
        cluster.logs()
    );
}

/// Builds a record for the constructed histories below.
fn record(
    process: usize,
    op: Op,
    call_ms: u64,
    ret_ms: u64,
    outcome: Outcome,
    t0: Instant,
) -> Record {
    Record {
        process,
        node: 0,
        op,
        call: t0 + Duration::from_millis(call_ms),
        ret: t0 + Duration::from_millis(ret_ms),
        outcome,
    }
}

#[test]
fn the_checker_rejects_a_stale_read_and_accepts_a_concurrent_one() {
    let t0 = Instant::now();
    let w = |v| Op::Write { key: 0, value: v };
    let strong = Op::Read {
        key: 0,
        level: Level::Strong,
    };
    let unknown = || Outcome::Unknown("timeout".into());
    // (what, the history, whether the checker must reject it); times in ms.
    let cases = [
        (
            "p1 reads 1 strictly after the write of 2 returned: stale",
            vec![
                record(0, w(1), 0, 10, Outcome::Written, t0),
                record(0, w(2), 20, 30, Outcome::Written, t0),
                record(1, strong, 40, 50, Outcome::Read(Some(1)), t0),
            ],
            true,
        ),
        (
            "the same read overlapping the write of 2 may see either value",
            vec![
                record(0, w(1), 0, 10, Outcome::Written, t0),
                record(0, w(2), 20, 60, Outcome::Written, t0),
                record(1, strong, 40, 50, Outcome::Read(Some(1)), t0),
            ],
            false,
        ),
        (
            "a write whose outcome is unknown may take effect any time after its call",
            vec![
                record(0, w(1), 0, 10, Outcome::Written, t0),
                record(1, w(2), 20, 30, unknown(), t0),
                record(2, strong, 100, 110, Outcome::Read(Some(2)), t0),
                record(2, strong, 120, 130, Outcome::Read(Some(2)), t0),
            ],
            false,
        ),
        (
            "but is not taken back once seen",
            vec![
                record(0, w(1), 0, 10, Outcome::Written, t0),
                record(1, w(2), 20, 30, unknown(), t0),
                record(2, strong, 100, 110, Outcome::Read(Some(2)), t0),
                record(2, strong, 120, 130, Outcome::Read(Some(1)), t0),
            ],
            true,
        ),
    ];
    for (what, records, rejected) in cases {
        let report = history::check(&records, 1, Duration::from_secs(10));
        assert_eq!(
            !report.violating_keys.is_empty(),
            rejected,
            "{what}: {}",
            report.summary()
        );
    }

    // A stale read at `none` is reported as stale, not as a violation.
    let stale_none = vec![
        record(0, w(1), 0, 10, Outcome::Written, t0),
        record(0, w(2), 20, 30, Outcome::Written, t0),
        record(
            1,
            Op::Read {
                key: 0,
                level: Level::None,
            },
            40,
            50,
            Outcome::Read(Some(1)),
            t0,
        ),
    ];
    let report = history::check(&stale_none, 1, Duration::from_secs(10));
    assert!(report.violating_keys.is_empty(), "{}", report.summary());
    assert_eq!(
        report.stale_reads.get(&Level::None),
        Some(&1),
        "{}",
        report.summary()
    );
}

#[test]
fn the_checker_catches_a_stale_read_served_by_a_partitioned_old_leader() {
    let cluster = FaultCluster::start(3);
    cluster.nodes[0].execute(faults::workload::SCHEMA);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut records = Vec::new();
    let op = |process: usize, node: usize, op: Op, records: &mut Vec<Record>| {
        let call = Instant::now();
        let outcome = faults::workload::perform(&http, &cluster.nodes[node].http_addr, op);
        records.push(Record {
            process,
            node,
            op,
            call,
            ret: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    };
    let old_leader = cluster.leader(Duration::from_secs(10)).expect("a leader");
    // Acknowledged by the leader, so applied there: its value is what the leader will serve.
    let first = 1;
    assert_eq!(
        op(
            0,
            old_leader,
            Op::Write {
                key: 0,
                value: first
            },
            &mut records
        ),
        Outcome::Written
    );
    cluster.net.isolate(&[old_leader], Cut::Refuse);
    let majority: Vec<usize> = (0..3).filter(|&i| i != old_leader).collect();
    // The majority elects a new leader and takes a new write. Until it has one, attempts fail;
    // each is recorded (with a value of its own), as a new process when its outcome is unknown.
    let mut process = 1;
    let written = common::wait_until(Duration::from_secs(20), || {
        process += 1;
        let value = 100 + process as u64;
        op(
            process,
            majority[0],
            Op::Write { key: 0, value },
            &mut records,
        ) == Outcome::Written
    });
    assert!(
        written,
        "the majority side took no write\n{}",
        cluster.logs()
    );
    // The cut-off node still answers `none` reads, from its old state: stale on purpose.
    let seen = op(
        process + 1,
        old_leader,
        Op::Read {
            key: 0,
            level: Level::None,
        },
        &mut records,
    );
    assert_eq!(
        seen,
        Outcome::Read(Some(first)),
        "the old leader's local value"
    );
    cluster.net.heal_all();

    // Recorded as a `none` read, it is reported stale and is no violation...
    let report = history::check(&records, 1, Duration::from_secs(10));
    assert!(report.violating_keys.is_empty(), "{}", report.summary());
    assert_eq!(
        report.stale_reads.get(&Level::None),
        Some(&1),
        "{}",
        report.summary()
    );
    // ...and passed off as a linearizable read, the checker rejects the history.
    for r in &mut records {
        if let Op::Read { level, .. } = &mut r.op {
            *level = Level::Linearizable;
        }
    }
    let report = history::check(&records, 1, Duration::from_secs(10));
    assert_eq!(report.violating_keys, vec![0], "{}", report.summary());
}

#[test]
fn a_one_way_cut_stops_the_calls_of_one_node_to_another_only() {
    let cluster = FaultCluster::start(3);
    // Node 1 can no longer call node 2; node 2 still calls node 1.
    cluster.net.cut(0, 1, Cut::Refuse);
    let reachable = |from: usize, to: usize| {
        cluster.nodes[from].get("/nodes?timeout=2s").json()[format!("node{}", to + 1)]["reachable"]
            .as_bool()
    };
    assert_eq!(reachable(0, 1), Some(false), "node1 -> node2 is cut");
    assert_eq!(reachable(1, 0), Some(true), "node2 -> node1 is not");
    assert_eq!(reachable(0, 2), Some(true), "node1 -> node3 is not");
    cluster.net.heal(0, 1);
    assert_eq!(reachable(0, 1), Some(true), "healed");
}
