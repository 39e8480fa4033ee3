//! `raftlite-bench chart`: the reports drawn as SVG charts, linked from the top of
//! `docs/benchmarks.md`.
//!
//! Two kinds:
//! - **Throughput against database size** (`sizes-OPERATION.svg`): from the latest run of the
//!   `sizes` scenario ([`crate::scenarios::sizes`]), one chart per operation (the case name's
//!   part before `": "`: backup, dump, load) with a line per tool, x the database size (log
//!   scale, a tick at each measured size), y MB/s. A `--quick` run's chart says so in its
//!   subtitle: its databases are a few MiB and show nothing about the product.
//! - **Every goal across the runs** (`goals.svg`): one panel per goal of
//!   [`crate::goals::GOALS`] that has a figure in at least one run, x the run's date, y the
//!   figure, a point per run (green met, red missed) and a grey line at the target.
//!
//! A goal's figure and target are read from the text `goals` writes ([`plotted_goal`]): the
//! figure is the number it starts with (`0.87× (4.50 s vs 5.19 s)` → 0.87), the target the
//! number after the first `≤`, `≥`, `<` or `>` of the goal's target. A goal without both (P5:
//! the bound depends on the run's idle p99; the stall count has no number to compare with) is
//! left out and named in the chart's header. The test `the_plotted_goals_are_these` fails when
//! a goal's wording drifts out of this reading.
//!
//! Runs are chosen as `report` chooses them ([`crate::summary::not_for_goals`]): quick runs and
//! data sets under 1 GiB only with `--all-runs`. A run without a date cannot be placed on the
//! date axis and is left out of the goals chart (with a note on stderr).
//!
//! The output is a function of the reports alone (no clock, no randomness, runs ordered by
//! date then by file name), so the committed SVGs in `docs/charts/` are checked against what
//! the committed reports draw (`docs_charts_are_what_the_committed_reports_draw`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cli::ChartOptions;
use crate::goals::{Goal, GOALS};
use crate::record::{self, RunRecord};

/// The line that opens the chart links in a document (a prefix).
pub const BEGIN: &str = "<!-- BEGIN charts";
/// The line that closes them.
pub const END: &str = "<!-- END charts -->";

/// The goals chart's file name.
pub const GOALS_FILE: &str = "goals.svg";

/// One drawn chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// File name, e.g. `sizes-backup.svg`.
    pub file: String,
    /// What it shows, for the link text.
    pub title: String,
    pub svg: String,
}

/// Series colours, in the order tools first appear (colour-blind-safe Okabe–Ito palette).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
];
const MET: RGBColor = RGBColor(0, 158, 115);
const MISSED: RGBColor = RGBColor(213, 94, 0);
const GREY: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(228, 228, 228);
const FONT: &str = "sans-serif";

/// Every chart `runs` (in command-line order) make: the size charts first, then the goals'.
/// Errors when there is nothing to draw.
pub fn draw(runs: &[(PathBuf, RunRecord)], all_runs: bool) -> Result<Vec<Drawn>, String> {
    let mut read: Vec<&RunRecord> = Vec::new();
    for (path, run) in runs {
        match crate::summary::not_for_goals(run) {
            Some(why) if !all_runs => eprintln!(
                "raftlite-bench chart: not read: {}: {why} (--all-runs reads it)",
                path.display()
            ),
            _ => read.push(run),
        }
    }
    // Oldest first; a stable sort keeps command-line (file name) order between equal dates.
    read.sort_by(|a, b| a.date_utc.cmp(&b.date_utc));
    let mut drawn = Vec::new();
    if let Some(run) = read.iter().rev().find(|r| !size_points(r).is_empty()) {
        drawn.extend(size_charts(run)?);
    }
    let dated: Vec<(f64, &RunRecord)> = read
        .iter()
        .filter_map(|r| {
            let day = r.date_utc.as_deref().and_then(days_since_epoch);
            if day.is_none() {
                eprintln!("raftlite-bench chart: a run without a date is not on the goals chart");
            }
            Some((day?, *r))
        })
        .collect();
    if let Some(goals) = goals_chart(&dated)? {
        drawn.push(goals);
    }
    if drawn.is_empty() {
        return Err(format!(
            "nothing to draw: none of the {} report(s) read has a goal's figure or a run of \
             the sizes scenario{}",
            read.len(),
            if all_runs {
                ""
            } else {
                " (--all-runs also reads quick and small runs)"
            }
        ));
    }
    Ok(drawn)
}

/// A measured point of the `sizes` scenario.
#[derive(Debug, Clone, PartialEq)]
struct SizePoint {
    operation: String,
    tool: String,
    db_bytes: u64,
    mb_per_s: f64,
}

fn size_points(run: &RunRecord) -> Vec<SizePoint> {
    let Some(s) = run.scenario("sizes") else {
        return Vec::new();
    };
    s.rows
        .iter()
        .filter_map(|r| {
            let (operation, tool) = r.case.split_once(": ")?;
            Some(SizePoint {
                operation: operation.to_string(),
                tool: tool.to_string(),
                db_bytes: r.data_set_bytes?,
                mb_per_s: r.mb_per_s.filter(|v| v.is_finite())?,
            })
        })
        .collect()
}

/// The distinct values of `items`, in first-seen order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen
}

/// One chart per operation of `run`'s sizes scenario.
fn size_charts(run: &RunRecord) -> Result<Vec<Drawn>, String> {
    let points = size_points(run);
    let mut subtitle = format!(
        "MB/s = database size / wall time; run {}, commit {}",
        run.date_utc.as_deref().unwrap_or("undated"),
        run.commit
            .as_deref()
            .map_or("unknown", |c| c.get(..7).unwrap_or(c))
    );
    if run.quick == Some(true) {
        subtitle.push_str("; a --quick run: tiny databases, not representative");
    }
    distinct(points.iter().map(|p| p.operation.as_str()))
        .into_iter()
        .map(|op| {
            let of_op: Vec<&SizePoint> = points.iter().filter(|p| p.operation == op).collect();
            let title = format!("{op}: throughput against database size");
            let svg = render(720, 440, |root| size_chart(root, &title, &subtitle, &of_op))?;
            Ok(Drawn {
                file: format!("sizes-{}.svg", file_stem(op)),
                title,
                svg,
            })
        })
        .collect()
}

/// `text` as a file name part: lower-case letters, digits and `-`.
fn file_stem(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// An `f64` axis with ticks exactly where the chart wants them (each measured size, each
/// midnight) rather than at round numbers. (plotters' own `with_key_points` drops the label
/// formatter the mesh needs.)
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Light points would draw a grid line between ticks; none are wanted.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Draws into an SVG string of `width` × `height`.
fn render(
    width: u32,
    height: u32,
    paint: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// `bytes` as `64 MiB`, `1 GiB`, `1.5 MiB`.
fn size_label(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if mib >= 10.0 || mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

fn size_chart(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    subtitle: &str,
    points: &[&SizePoint],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.draw(&Text::new(title, (12, 10), (FONT, 18).into_font()))
        .map_err(e)?;
    root.draw(&Text::new(
        subtitle,
        (12, 34),
        (FONT, 12).into_font().color(&GREY),
    ))
    .map_err(e)?;
    let area = root.margin(52, 6, 6, 16);
    // x is log2 of the size in MiB, so equal ratios of size are equal distances.
    let x_of = |bytes: u64| (bytes as f64 / f64::from(1 << 20)).log2();
    let sizes: Vec<u64> = {
        let mut s: Vec<u64> = points.iter().map(|p| p.db_bytes).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let (lo, hi) = match (sizes.first(), sizes.last()) {
        (Some(&a), Some(&b)) => (x_of(a), x_of(b)),
        _ => return Err("no sizes to draw".into()),
    };
    let pad = ((hi - lo) * 0.08).max(0.5);
    let y_max = points.iter().map(|p| p.mb_per_s).fold(0.0, f64::max);
    // Head room for the legend above the highest line.
    let y_top = if y_max > 0.0 { y_max * 1.45 } else { 1.0 };
    let key_points: Vec<f64> = sizes.iter().map(|&b| x_of(b)).collect();
    let labels: Vec<(f64, String)> = sizes.iter().map(|&b| (x_of(b), size_label(b))).collect();
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(Ticked::new((lo - pad)..(hi + pad), key_points), 0f64..y_top)
        .map_err(e)?;
    let label_of = |x: &f64| {
        labels
            .iter()
            .find(|(k, _)| (k - x).abs() < 1e-9)
            .map_or_else(String::new, |(_, l)| l.clone())
    };
    chart
        .configure_mesh()
        .x_desc("database size")
        .y_desc("MB/s")
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .max_light_lines(0)
        .bold_line_style(GRID)
        .label_style((FONT, 12))
        .draw()
        .map_err(e)?;
    for (i, tool) in distinct(points.iter().map(|p| p.tool.as_str()))
        .into_iter()
        .enumerate()
    {
        let color = PALETTE[i % PALETTE.len()];
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.tool == tool)
            .map(|p| (x_of(p.db_bytes), p.mb_per_s))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(tool)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, 12))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// A goal as the goals chart draws it: its target's bound, and the unit its figure is in.
#[derive(Debug, Clone, PartialEq)]
pub struct PlottedGoal {
    /// The bound's relation as the target writes it: `≤`, `≥`, `<` or `>`.
    pub relation: char,
    pub target: f64,
}

/// The bound of `goal`'s target, or None when the goals chart cannot draw it (see the module
/// documentation).
pub fn plotted_goal(goal: &Goal) -> Option<PlottedGoal> {
    let (at, relation) = goal
        .target
        .char_indices()
        .find(|(_, c)| matches!(c, '≤' | '≥' | '<' | '>'))?;
    let after = goal.target[at + relation.len_utf8()..].trim_start();
    let (target, _) = leading_number(after)?;
    Some(PlottedGoal { relation, target })
}

/// The number `text` starts with (`,` as a thousands separator allowed) and the text after
/// it.
fn leading_number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len());
    let number = text[..end].trim_end_matches(['.', ',']);
    let value = number.replace(',', "").parse().ok()?;
    Some((value, &text[number.len()..]))
}

/// The unit of a figure: the words after its number up to a parenthesis or `;`
/// (`0.87× (4.50 s vs 5.19 s)` → `×`, `6.4 MiB peak (…)` → `MiB peak`).
fn unit_of(rest: &str) -> String {
    rest.split(['(', ';'])
        .next()
        .unwrap_or("")
        .replace('`', "")
        .trim()
        .to_string()
}

/// A goal's points across the runs: (run date in days since the epoch, figure, met).
struct GoalSeries {
    goal: &'static Goal,
    plotted: PlottedGoal,
    unit: String,
    points: Vec<(f64, f64, bool)>,
}

fn goal_series(runs: &[(f64, &RunRecord)]) -> Vec<GoalSeries> {
    GOALS
        .iter()
        .filter_map(|goal| {
            let plotted = plotted_goal(goal)?;
            let mut unit = String::new();
            let points: Vec<(f64, f64, bool)> = runs
                .iter()
                .filter_map(|(day, run)| {
                    let reading = (goal.read)(run.scenario(goal.scenario)?)?;
                    let (value, rest) = leading_number(&reading.figure)?;
                    unit = unit_of(rest);
                    Some((*day, value, reading.met))
                })
                .collect();
            (!points.is_empty()).then_some(GoalSeries {
                goal,
                plotted,
                unit,
                points,
            })
        })
        .collect()
}

/// Panel size of the goals chart, and its columns.
const PANEL: (u32, u32) = (620, 300);
const COLUMNS: usize = 2;
const HEADER: u32 = 64;

fn goals_chart(runs: &[(f64, &RunRecord)]) -> Result<Option<Drawn>, String> {
    let series = goal_series(runs);
    if series.is_empty() {
        return Ok(None);
    }
    let left_out: Vec<String> = GOALS
        .iter()
        .filter(|g| plotted_goal(g).is_none())
        .map(|g| g.id.to_string())
        .collect();
    let rows = series.len().div_ceil(COLUMNS);
    let width = PANEL.0 * COLUMNS as u32;
    let height = HEADER + PANEL.1 * rows as u32;
    let title = "Each goal's figure across the recorded runs".to_string();
    let svg = render(width, height, |root| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.draw(&Text::new(title.as_str(), (12, 10), (FONT, 18).into_font()))
            .map_err(e)?;
        let legend = format!(
            "a point per run (green: met, red: missed), grey line: the target; x: run date (UTC). \
             Not drawn (no fixed number to compare with): {}",
            if left_out.is_empty() {
                "none".to_string()
            } else {
                left_out.join(", ")
            }
        );
        root.draw(&Text::new(
            legend,
            (12, 36),
            (FONT, 12).into_font().color(&GREY),
        ))
        .map_err(e)?;
        let (_, body) = root.split_vertically(HEADER);
        let panels = body.split_evenly((rows, COLUMNS));
        for (panel, s) in panels.iter().zip(&series) {
            goal_panel(panel, s)?;
        }
        Ok(())
    })?;
    Ok(Some(Drawn {
        file: GOALS_FILE.to_string(),
        title,
        svg,
    }))
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn goal_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, s: &GoalSeries) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let caption = format!("{}: {}", s.goal.id, s.goal.target.replace('`', ""));
    let lines = wrap(&caption, 88);
    for (i, line) in lines.iter().enumerate() {
        let y = 6 + 15 * i as i32;
        area.draw(&Text::new(line.as_str(), (10, y), (FONT, 12).into_font()))
            .map_err(e)?;
    }
    let plot = area.margin(10 + 15 * lines.len() as u32, 6, 6, 16);
    let (x_min, x_max) = s
        .points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let pad = ((x_max - x_min) * 0.06).max(0.5);
    let (x_lo, x_hi) = (x_min - pad, x_max + pad);
    let run_days: Vec<f64> = s.points.iter().map(|p| p.0).collect();
    let y_max = s
        .points
        .iter()
        .map(|p| p.1)
        .fold(s.plotted.target, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(&plot)
        .x_label_area_size(26)
        .y_label_area_size(64)
        .build_cartesian_2d(
            Ticked::new(x_lo..x_hi, date_ticks(x_lo, x_hi, &run_days)),
            0f64..y_top,
        )
        .map_err(e)?;
    let unit = if s.unit.starts_with('×') {
        format!("ratio {}", s.unit)
    } else {
        s.unit.clone()
    };
    let whole_days = x_max - x_min >= 1.0;
    chart
        .configure_mesh()
        .y_desc(unit)
        .x_label_formatter(&|x| date_label(*x, whole_days))
        .y_label_formatter(&|y| number_label(*y))
        .max_light_lines(0)
        .bold_line_style(GRID)
        .label_style((FONT, 11))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            [(x_lo, s.plotted.target), (x_hi, s.plotted.target)],
            GREY.stroke_width(2),
        ))
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            s.points.iter().map(|p| (p.0, p.1)),
            PALETTE[0].stroke_width(1),
        ))
        .map_err(e)?;
    chart
        .draw_series(
            s.points.iter().map(|&(x, y, met)| {
                Circle::new((x, y), 4, if met { MET } else { MISSED }.filled())
            }),
        )
        .map_err(e)?;
    Ok(())
}

/// Ticks of the date axis: midnight of each day in range, at most 6 of them (evenly
/// thinned), when the runs span a day or more; otherwise each run's own time (`runs`).
fn date_ticks(lo: f64, hi: f64, runs: &[f64]) -> Vec<f64> {
    let (first, last) = runs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if last - first < 1.0 {
        let mut ticks = runs.to_vec();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        return ticks;
    }
    let days: Vec<f64> = ((lo.ceil() as i64)..=(hi.floor() as i64))
        .map(|d| d as f64)
        .collect();
    let step = days.len().div_ceil(6).max(1);
    days.into_iter().step_by(step).collect()
}

/// A date tick: `11-27` for a midnight tick, `11-27 21:00` otherwise.
fn date_label(days: f64, whole_days: bool) -> String {
    let stamp = crate::report::rfc3339((days * 86_400.0).round() as i64);
    if whole_days {
        stamp[5..10].to_string()
    } else {
        format!("{} {}", &stamp[5..10], &stamp[11..16])
    }
}

/// An axis number: thousands without decimals, small numbers with as few as show them.
fn number_label(y: f64) -> String {
    if y.abs() >= 100.0 {
        format!("{y:.0}")
    } else if y.abs() >= 10.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.2}")
    }
}

/// `2026-11-27T21:00:00Z` as days since the Unix epoch (fractional); None for anything else.
pub fn days_since_epoch(rfc3339: &str) -> Option<f64> {
    let b = rfc3339.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !rfc3339.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| rfc3339.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil, the inverse of `report::rfc3339`'s date part.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 + (hh * 3600 + mm * 60 + ss) as f64 / 86_400.0)
}

/// The Markdown that links `drawn` from a document, the charts being in `dir` relative to
/// the document's directory.
pub fn links(drawn: &[Drawn], dir: &str) -> String {
    let mut out = String::from(
        "Charts, drawn from the same reports by `raftlite-bench chart --out docs/charts \
         --write docs/benchmarks.md docs/bench-results`:\n\n",
    );
    let goals = drawn.iter().find(|d| d.file == GOALS_FILE);
    if let Some(g) = goals {
        out.push_str(&format!("- [{}]({dir}/{})\n", g.title, g.file));
    }
    let sizes: Vec<&Drawn> = drawn.iter().filter(|d| d.file != GOALS_FILE).collect();
    if sizes.is_empty() {
        out.push_str(
            "- Throughput against database size: no run of the `sizes` scenario is recorded \
             yet (`raftlite-bench sizes` sweeps 64 MiB, 256 MiB and 1 GiB).\n",
        );
    } else {
        for s in &sizes {
            out.push_str(&format!("- [{}]({dir}/{})\n", s.title, s.file));
        }
        out.push('\n');
        for s in &sizes {
            out.push_str(&format!("![{}]({dir}/{})\n", s.title, s.file));
        }
    }
    out
}

/// `doc` with the text between its chart markers replaced by `links`.
pub fn replace_links(doc: &str, links: &str) -> Result<String, String> {
    let (head, _, tail) = crate::summary::split_between(doc, BEGIN, END)?;
    Ok(format!("{head}\n{links}\n{tail}"))
}

/// `to` relative to `from` when `to` is inside it (`docs`, `docs/charts` → `charts`).
fn relative(from: &Path, to: &Path) -> Result<String, String> {
    let canon =
        |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("resolve {}: {e}", p.display()));
    let (from_abs, to_abs) = (canon(from)?, canon(to)?);
    let rel = to_abs.strip_prefix(&from_abs).map_err(|_| {
        format!(
            "{} is not inside {}, the document's directory: the links would break",
            to.display(),
            from.display()
        )
    })?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

/// The `chart` subcommand.
pub fn run(opts: &ChartOptions) -> ExitCode {
    match run_inner(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftlite-bench chart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(opts: &ChartOptions) -> Result<(), String> {
    let runs = record::load_all(&opts.inputs)?;
    let drawn = draw(&runs, opts.all_runs)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("create {}: {e}", opts.out.display()))?;
    for d in &drawn {
        let path = opts.out.join(&d.file);
        std::fs::write(&path, &d.svg).map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("raftlite-bench chart: wrote {}", path.display());
    }
    if let Some(doc) = &opts.write {
        let doc_dir = match doc.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = relative(&doc_dir, &opts.out)?;
        let text =
            std::fs::read_to_string(doc).map_err(|e| format!("read {}: {e}", doc.display()))?;
        let new = replace_links(&text, &links(&drawn, &dir))
            .map_err(|e| format!("{}: {e}", doc.display()))?;
        if new != text {
            std::fs::write(doc, new).map_err(|e| format!("write {}: {e}", doc.display()))?;
            eprintln!("raftlite-bench chart: {}: links replaced", doc.display());
        } else {
            eprintln!(
                "raftlite-bench chart: {}: links already up to date",
                doc.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(texts: &[String]) -> Vec<(PathBuf, RunRecord)> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        crate::summary::tests::runs(&texts)
    }

    /// The `(cx, cy)` of every `<circle` of an SVG: one per drawn point.
    fn circles(svg: &str) -> Vec<(f64, f64)> {
        let attr = |el: &str, name: &str| -> f64 {
            let at = el.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
            el[at..at + el[at..].find('"').unwrap()].parse().unwrap()
        };
        svg.split("<circle")
            .skip(1)
            .map(|el| (attr(el, "cx"), attr(el, "cy")))
            .collect()
    }

    /// The text of every `<text>` element, unescaped.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|el| {
                let body = &el[el.find('>').unwrap() + 1..];
                body[..body.find("</text>").unwrap()]
                    .trim()
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&apos;", "'")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&")
            })
            .collect()
    }

    fn sizes_run(quick: bool) -> String {
        let mut rows = Vec::new();
        for (size, scale) in [(64u64 << 20, 1.0), (256 << 20, 2.0), (1 << 30, 3.0)] {
            for (case, mb_per_s) in [
                ("backup: cp", 900.0),
                ("backup: raftlite GET /db/backup", 400.0),
                ("load: sqlite3 .restore", 300.0),
                ("load: raftlite POST /db/load (binary), 3 nodes", 100.0),
            ] {
                rows.push(format!(
                    r#"{{"case": "{case}", "wall_s": 1.0, "mb_per_s": {},
                        "data_set_bytes": {size}}}"#,
                    mb_per_s * scale
                ));
            }
        }
        format!(
            r#"{{"date_utc": "2026-12-03T01:00:00Z", "commit": "0123456789abcdef",
                 "quick": {quick}, "size_bytes": 1073741824,
                 "scenarios": [{{"name": "sizes", "rows": [{}]}}]}}"#,
            rows.join(",")
        )
    }

    #[test]
    fn a_size_chart_per_operation_with_a_line_per_tool_and_a_point_per_size() {
        let drawn = draw(&runs(&[sizes_run(false)]), false).unwrap();
        let files: Vec<&str> = drawn.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            files,
            ["sizes-backup.svg", "sizes-load.svg"],
            "no goal figure"
        );
        let backup = &drawn[0];
        assert_eq!(backup.title, "backup: throughput against database size");
        let t = texts(&backup.svg);
        for label in [
            "cp",
            "raftlite GET /db/backup",
            "64 MiB",
            "256 MiB",
            "1 GiB",
            "MB/s",
        ] {
            assert!(t.iter().any(|x| x == label), "no {label:?} in {t:?}");
        }
        assert!(!t.iter().any(|x| x.contains("sqlite3 .restore")), "{t:?}");
        assert!(!t.iter().any(|x| x.contains("--quick")), "{t:?}");
        let points = circles(&backup.svg);
        assert_eq!(points.len(), 6, "2 tools x 3 sizes");
        // Each line's points go right (larger size) and up (faster, as the input says); cp's
        // line is drawn first and is above raftlite's at every size.
        let (cp, ours) = points.split_at(3);
        for line in [cp, ours] {
            assert!(line.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1));
        }
        assert!(cp.iter().zip(ours).all(|(c, o)| c.0 == o.0 && c.1 < o.1));
        // The 256 MiB tick is midway between 64 MiB and 1 GiB: the x axis is logarithmic.
        assert!(((cp[1].0 - cp[0].0) - (cp[2].0 - cp[1].0)).abs() < 1.0);
    }

    #[test]
    fn a_quick_size_chart_says_so_and_is_read_only_with_all_runs() {
        let quick = runs(&[sizes_run(true)]);
        let e = draw(&quick, false).unwrap_err();
        assert!(
            e.contains("nothing to draw") && e.contains("--all-runs"),
            "{e}"
        );
        let drawn = draw(&quick, true).unwrap();
        assert!(
            texts(&drawn[0].svg)
                .iter()
                .any(|t| t.contains("a --quick run: tiny databases, not representative")),
            "{}",
            drawn[0].svg
        );
    }

    fn backup_run(date: &str, p1_ratio: f64) -> String {
        format!(
            r#"{{"date_utc": "{date}", "quick": false, "size_bytes": 1073741824,
                "scenarios": [{{"name": "backup", "rows": [
                  {{"case": "raftlite GET /db/backup", "wall_s": 4.5, "rss_growth_mib": 9.0,
                    "ratio": {{"value": {p1_ratio}, "of": "time",
                              "reference": "sqlite3 .backup"}}}},
                  {{"case": "sqlite3 .backup", "wall_s": 5.19}}]}}]}}"#
        )
    }

    #[test]
    fn the_goals_chart_has_a_panel_per_goal_and_a_point_per_run() {
        // Given out of date order: the chart orders by date.
        let runs = runs(&[
            backup_run("2026-11-29T12:00:00Z", 1.2),
            backup_run("2026-11-27T12:00:00Z", 0.867),
        ]);
        let drawn = draw(&runs, false).unwrap();
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].file, GOALS_FILE);
        let svg = &drawn[0].svg;
        let t = texts(svg).join("\n");
        // P1 (the ratio) and P3 (the RSS growth) were measured; nothing else was.
        assert!(
            t.contains("P1: GET /db/backup to a file, synced (curl -o + fsync) ≤ 0.5× the time"),
            "{t}"
        );
        assert!(
            t.contains("P3: raftlited's anonymous memory (RssAnon) growth during a backup ≤ 64"),
            "{t}"
        );
        assert!(!t.contains("P4:"), "{t}");
        assert!(t.contains("ratio ×") && t.contains("MiB"), "y units: {t}");
        assert!(
            t.contains("11-27") && t.contains("11-29"),
            "date ticks: {t}"
        );
        assert!(
            t.contains("Not drawn (no fixed number to compare with): P5, P5"),
            "{t}"
        );
        let points = circles(svg);
        assert_eq!(points.len(), 4, "2 goals x 2 runs");
        // P1's panel: the earlier run (0.867) left of and below the later (1.2); both miss
        // the 0.5× target.
        assert!(
            points[0].0 < points[1].0 && points[0].1 > points[1].1,
            "{points:?}"
        );
        let fills: Vec<&str> = svg
            .split("<circle")
            .skip(1)
            .map(|el| &el[el.find("fill=\"").unwrap() + 6..][..7])
            .collect();
        assert_eq!(fills, ["#D55E00", "#D55E00", "#009E73", "#009E73"]);
        assert_eq!(
            draw(&runs, false).unwrap(),
            drawn,
            "the same input draws the same SVG"
        );
    }

    #[test]
    fn nothing_to_draw_is_a_clear_error() {
        let undrawable = runs(&[r#"{"scenarios": [{"name": "backup", "rows": []}]}"#.into()]);
        let e = draw(&undrawable, false).unwrap_err();
        assert!(
            e.starts_with("nothing to draw: none of the 1 report(s)"),
            "{e}"
        );
        assert!(draw(&[], true)
            .unwrap_err()
            .contains("none of the 0 report(s)"));
        let empty_dir = std::env::temp_dir().join(format!("chart-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty_dir).unwrap();
        let e = run_inner(&ChartOptions {
            inputs: vec![empty_dir.clone()],
            out: empty_dir.join("out"),
            write: None,
            all_runs: false,
        })
        .unwrap_err();
        let _ = std::fs::remove_dir_all(&empty_dir);
        assert!(e.contains("holds no .json report"), "{e}");
    }

    /// Which goals the goals chart draws, and with which relation: a goal reworded out of the
    /// `≤ N` form fails here rather than vanishing from the chart. (The numbers are the
    /// goals' own business; that they are read whole is checked on fixed text below.)
    #[test]
    fn the_plotted_goals_are_these() {
        let plotted: Vec<String> = GOALS
            .iter()
            .map(|g| match plotted_goal(g) {
                Some(p) => {
                    assert!(p.target > 0.0, "{}: {}", g.id, g.target);
                    format!("{} {}", g.id, p.relation)
                }
                None => format!("{} -", g.id),
            })
            .collect();
        assert_eq!(
            plotted,
            [
                "P1 ≤",
                "P2 ≤",
                "P2 ≤",
                "P2 ≤",
                "P2 ≤",
                "P3 ≤",
                "P4 ≥",
                "P5 -",
                "P5 -",
                "P6 ≥",
                "P7 ≤",
                "P7 ≤",
                "P7 ≤",
                "P7 ≤",
                "P7 ≤",
                "P8 ≥",
                "P10 ≤",
                "P9 ≥",
                "A1 ≥",
                "A1 ≥",
                "C1 ≥",
                "C1 ≥",
                "A2 -",
                "A3 ≤",
                "log >",
                "shell <",
                "trust ≤",
                "trust ≤",
                "trust ≤",
            ]
        );
        let bound = |target: &'static str| {
            let g = Goal {
                id: "x",
                target,
                scenario: "x",
                read: |_| None,
            };
            plotted_goal(&g).map(|p| (p.relation, p.target))
        };
        assert_eq!(bound("`a` ≤ 1.25× the time of `b`"), Some(('≤', 1.25)));
        assert_eq!(
            bound("≥ 100,000 statements/s in 1000-statement requests"),
            Some(('≥', 1e5))
        );
        assert_eq!(
            bound("shares fsyncs (> 1 entry per counted fsync)"),
            Some(('>', 1.0))
        );
        assert_eq!(bound("no write over 100 ms during a backup"), None);
        assert_eq!(
            leading_number("69,116 statements/s"),
            Some((69116.0, " statements/s"))
        );
        assert_eq!(leading_number("0.87× (4.50 s)"), Some((0.87, "× (4.50 s)")));
        assert_eq!(leading_number("p99 12.8 ms"), None);
        assert_eq!(unit_of("× (4.50 s vs 5.19 s)"), "×");
        assert_eq!(unit_of(" MiB peak (1.7 MiB over)"), "MiB peak");
        assert_eq!(unit_of(" MiB `RssAnon` (`RssFile` +1 MiB)"), "MiB RssAnon");
        assert_eq!(
            unit_of(" entries per fsync (32165 entries); batches"),
            "entries per fsync"
        );
    }

    #[test]
    fn dates_read_back_as_days() {
        for secs in [0i64, 951_782_400, 1_700_000_000, 1_796_259_600] {
            let stamp = crate::report::rfc3339(secs);
            assert_eq!(
                days_since_epoch(&stamp),
                Some(secs as f64 / 86_400.0),
                "{stamp}"
            );
        }
        assert_eq!(days_since_epoch("2026-11-27"), None);
        assert_eq!(days_since_epoch("2026-13-27T00:00:00Z"), None);
        assert_eq!(date_label(20_419.0, true), "11-27");
        assert_eq!(date_label(20_419.875, false), "11-27 21:00");
    }

    #[test]
    fn links_go_between_the_markers() {
        let drawn = draw(
            &runs(&[sizes_run(false), backup_run("2026-11-27T12:00:00Z", 0.9)]),
            false,
        )
        .unwrap();
        let doc = "# B\n\n<!-- BEGIN charts: generated -->\nold\n<!-- END charts -->\n\n## T\n";
        let new = replace_links(doc, &links(&drawn, "charts")).unwrap();
        assert!(
            new.starts_with("# B\n\n<!-- BEGIN charts: generated -->\n\nCharts,"),
            "{new}"
        );
        assert!(new.contains("- [Each goal's figure across the recorded runs](charts/goals.svg)\n"));
        assert!(
            new.contains("![backup: throughput against database size](charts/sizes-backup.svg)\n")
        );
        assert!(new.ends_with("\n<!-- END charts -->\n\n## T\n"), "{new}");
        assert_eq!(replace_links(&new, &links(&drawn, "charts")).unwrap(), new);
        assert!(replace_links("# no markers\n", "x").is_err());
        let no_sizes = links(&drawn[2..], "charts");
        assert!(
            no_sizes.contains("no run of the `sizes` scenario is recorded yet"),
            "{no_sizes}"
        );
    }

    /// `docs/charts/` holds exactly what the committed reports draw, and `docs/benchmarks.md`
    /// links exactly those charts.
    #[test]
    fn docs_charts_are_what_the_committed_reports_draw() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let runs = record::load_all(&[root.join("docs/bench-results")]).unwrap();
        let drawn = draw(&runs, false).unwrap();
        let regenerate = "run `cargo run --release -p raftlite-bench -- chart --out docs/charts \
                          --write docs/benchmarks.md docs/bench-results`";
        let mut committed: Vec<String> = std::fs::read_dir(root.join("docs/charts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".svg"))
            .collect();
        committed.sort();
        let mut expected: Vec<String> = drawn.iter().map(|d| d.file.clone()).collect();
        expected.sort();
        assert_eq!(committed, expected, "docs/charts is stale: {regenerate}");
        for d in &drawn {
            let on_disk = std::fs::read_to_string(root.join("docs/charts").join(&d.file)).unwrap();
            assert!(
                on_disk == d.svg,
                "docs/charts/{} is stale: {regenerate}",
                d.file
            );
        }
        let dated: Vec<(f64, &RunRecord)> = runs
            .iter()
            .filter_map(|(_, r)| Some((days_since_epoch(r.date_utc.as_deref()?)?, r)))
            .collect();
        let plottable = GOALS.iter().filter(|g| plotted_goal(g).is_some()).count();
        assert_eq!(
            goal_series(&dated).len(),
            plottable,
            "every plottable goal's figure starts with its number"
        );
        let doc = std::fs::read_to_string(root.join("docs/benchmarks.md")).unwrap();
        let (_, generated, _) = crate::summary::split_between(&doc, BEGIN, END).unwrap();
        assert_eq!(
            generated,
            format!("\n{}\n", links(&drawn, "charts")),
            "docs/benchmarks.md's chart links are stale: {regenerate}"
        );
    }
}
