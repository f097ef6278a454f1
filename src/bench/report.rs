//! Results of a whole bench run: per-cell summaries over all rounds, the
//! ratios between upstreams, the terminal table, and the JSON document
//! (schema in the `bench` module doc).

use serde::Serialize;

use super::args::{Plan, Stop};
use super::link::LinkReport;
use super::load::CellRun;
use super::stats::{ErrorCounts, Latencies, LatencySummary, Spread};
use super::status::FpmStatus;

/// Identifies the JSON layout; bump on incompatible changes.
pub const SCHEMA: &str = "fcgi-gateway-bench/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub settings: Settings,
    pub cells: Vec<CellReport>,
    pub ratios: Vec<RatioReport>,
    /// One per `--link-delay`, in the order of the upstreams; empty without.
    pub links: Vec<LinkReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub upstreams: Vec<String>,
    pub script: String,
    pub query: String,
    pub concurrency: Vec<usize>,
    pub keepalive: Vec<bool>,
    pub duration_ms: Option<u64>,
    pub requests: Option<u64>,
    pub rounds: u32,
    pub warmup_ms: u64,
    pub fpm_status_path: Option<String>,
    /// `null` with `--upstream`; else the php-fpm the bench started.
    pub php_fpm: Option<PhpFpmSettings>,
}

/// The php-fpm the bench started (no `--upstream`).
#[derive(Debug, Clone, Serialize)]
pub struct PhpFpmSettings {
    /// Workers of each pool (`pm = static`).
    pub children: u32,
    /// The script was the built-in hello world.
    pub builtin_script: bool,
    /// Round-trip delays of the links, in milliseconds.
    pub link_delays_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellReport {
    pub upstream: String,
    /// Short name used in the table and the plot (`unix`, `tcp`, or the address).
    pub label: String,
    pub concurrency: usize,
    pub keepalive: bool,
    /// Successful requests over all rounds.
    pub requests: u64,
    pub errors: ErrorCounts,
    pub error_total: u64,
    pub first_error: Option<String>,
    pub unfinished: u64,
    /// Fewest clients that finished a request in any round.
    pub workers_served_min: usize,
    pub connects: u64,
    pub stdout_bytes: u64,
    /// Successful requests per second, per round.
    pub rps: Spread,
    pub latency_ms: LatencySet,
    /// Empty unless `--fpm-status-path` was given; one entry per round.
    pub fpm_status: Vec<StatusSample>,
    /// All rounds' total latencies, for the plot.
    #[serde(skip)]
    pub total_hist: Latencies,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySet {
    pub total: LatencySummary,
    pub ttfb: LatencySummary,
    pub connect: LatencySummary,
}

/// The status page after one round of a cell.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusSample {
    pub round: u32,
    pub after: Option<FpmStatus>,
    /// `max children reached` after minus before the cell.
    pub max_children_reached_delta: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RatioReport {
    pub concurrency: usize,
    pub keepalive: bool,
    pub numerator: String,
    pub denominator: String,
    /// req/s of the numerator over the denominator, per round.
    pub ratio: Spread,
}

/// Everything measured for one upstream × concurrency × keep-alive cell.
#[derive(Debug, Clone, Default)]
pub struct CellRecord {
    pub runs: Vec<CellRun>,
    pub statuses: Vec<StatusSample>,
}

/// Table and plot names for the upstreams: the plan's when it has them
/// (the self-started php-fpm's `unix`, `tcp`, `tcp+1ms`); else the kind
/// when that tells them apart, else the whole address.
pub fn labels(plan: &Plan) -> Vec<String> {
    if plan.labels.len() == plan.upstreams.len() && !plan.labels.is_empty() {
        return plan.labels.clone();
    }
    let kinds: Vec<&str> = plan.upstreams.iter().map(|u| u.kind()).collect();
    let distinct = kinds
        .iter()
        .enumerate()
        .all(|(i, k)| !kinds[..i].contains(k));
    plan.upstreams
        .iter()
        .map(|u| {
            if distinct {
                u.kind().to_owned()
            } else {
                u.to_string()
            }
        })
        .collect()
}

/// `records[u][k][c]`: upstream `u`, keep-alive mode `k`, concurrency `c`, in plan order.
pub fn build(plan: &Plan, records: &[Vec<Vec<CellRecord>>]) -> Report {
    let labels = labels(plan);
    let mut cells = Vec::new();
    for (k, &keepalive) in plan.keepalive.iter().enumerate() {
        for (c, &concurrency) in plan.concurrency.iter().enumerate() {
            for (u, addr) in plan.upstreams.iter().enumerate() {
                let Some(record) = records.get(u).and_then(|r| r.get(k)).and_then(|r| r.get(c))
                else {
                    continue;
                };
                cells.push(cell_report(
                    addr.to_string(),
                    labels[u].clone(),
                    concurrency,
                    keepalive,
                    record,
                ));
            }
        }
    }
    let mut ratios = Vec::new();
    for &keepalive in &plan.keepalive {
        for &concurrency in &plan.concurrency {
            let group: Vec<&CellReport> = cells
                .iter()
                .filter(|c| c.keepalive == keepalive && c.concurrency == concurrency)
                .collect();
            let Some((first, rest)) = group.split_first() else {
                continue;
            };
            for other in rest {
                let per_round = first
                    .rps
                    .rounds
                    .iter()
                    .zip(&other.rps.rounds)
                    .map(|(a, b)| if *b > 0.0 { a / b } else { f64::NAN })
                    .collect();
                ratios.push(RatioReport {
                    concurrency,
                    keepalive,
                    numerator: first.label.clone(),
                    denominator: other.label.clone(),
                    ratio: Spread::of(per_round),
                });
            }
        }
    }
    let (duration_ms, requests) = match plan.stop {
        Stop::After(d) => (Some(d.as_millis() as u64), None),
        Stop::Requests(n) => (None, Some(n)),
    };
    Report {
        schema: SCHEMA,
        settings: Settings {
            upstreams: plan.upstreams.iter().map(|u| u.to_string()).collect(),
            script: plan.script.clone(),
            query: plan.query.clone(),
            concurrency: plan.concurrency.clone(),
            keepalive: plan.keepalive.clone(),
            duration_ms,
            requests,
            rounds: plan.rounds,
            warmup_ms: plan.warmup.as_millis() as u64,
            fpm_status_path: plan.fpm_status_path.clone(),
            php_fpm: plan.fpm.as_ref().map(|f| PhpFpmSettings {
                children: f.children,
                builtin_script: f.builtin_script,
                link_delays_ms: f.links.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
            }),
        },
        cells,
        ratios,
        links: Vec::new(),
    }
}

fn cell_report(
    upstream: String,
    label: String,
    concurrency: usize,
    keepalive: bool,
    record: &CellRecord,
) -> CellReport {
    let mut merged = CellRun::default();
    let mut errors = ErrorCounts::default();
    let mut first_error = None;
    let (mut ok, mut unfinished, mut connects, mut bytes) = (0, 0, 0, 0);
    for run in &record.runs {
        ok += run.ok;
        errors.merge(&run.errors);
        if first_error.is_none() {
            first_error.clone_from(&run.first_error);
        }
        unfinished += run.unfinished;
        connects += run.connects;
        bytes += run.stdout_bytes;
        merged.total.merge(&run.total);
        merged.ttfb.merge(&run.ttfb);
        merged.connect.merge(&run.connect);
    }
    CellReport {
        upstream,
        label,
        concurrency,
        keepalive,
        requests: ok,
        error_total: errors.total(),
        errors,
        first_error,
        unfinished,
        workers_served_min: record
            .runs
            .iter()
            .map(|r| r.workers_served)
            .min()
            .unwrap_or(0),
        connects,
        stdout_bytes: bytes,
        rps: Spread::of(record.runs.iter().map(CellRun::rps).collect()),
        latency_ms: LatencySet {
            total: merged.total.summary(),
            ttfb: merged.ttfb.summary(),
            connect: merged.connect.summary(),
        },
        fpm_status: record.statuses.clone(),
        total_hist: merged.total,
    }
}

/// The aligned terminal table: one row per cell, then each group's ratios.
pub fn table(report: &Report) -> String {
    let with_status = report.settings.fpm_status_path.is_some();
    let mut header: Vec<&str> = vec![
        "keepalive",
        "conc",
        "upstream",
        "req/s",
        "min-max",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "ttfb p50",
        "conn p50",
        "served",
        "errors",
    ];
    if with_status {
        header.extend(["listen q", "max ch+"]);
    }
    let mut rows: Vec<Row> = vec![Row::Cells(header.iter().map(|s| s.to_string()).collect())];
    let mut last_group = None;
    for cell in &report.cells {
        let group = (cell.keepalive, cell.concurrency);
        if last_group.is_some_and(|g| g != group) {
            push_ratios(&mut rows, report, last_group);
        }
        last_group = Some(group);
        let t = &cell.latency_ms.total;
        let mut row = vec![
            on_off(cell.keepalive).to_owned(),
            cell.concurrency.to_string(),
            cell.label.clone(),
            format!("{:.0}", cell.rps.median),
            format!("{:.0}-{:.0}", cell.rps.min, cell.rps.max),
            ms(t.p50),
            ms(t.p90),
            ms(t.p99),
            ms(t.p99_9),
            ms(t.max),
            ms(cell.latency_ms.ttfb.p50),
            if cell.latency_ms.connect.count > 0 {
                ms(cell.latency_ms.connect.p50)
            } else {
                "-".to_owned()
            },
            format!("{}/{}", cell.workers_served_min, cell.concurrency),
            cell.errors.brief(),
        ];
        if with_status {
            row.extend(status_columns(&cell.fpm_status));
        }
        rows.push(Row::Cells(row));
    }
    push_ratios(&mut rows, report, last_group);
    render(&rows)
}

enum Row {
    Cells(Vec<String>),
    Note(String),
}

fn push_ratios(rows: &mut Vec<Row>, report: &Report, group: Option<(bool, usize)>) {
    for r in &report.ratios {
        if Some((r.keepalive, r.concurrency)) == group {
            rows.push(Row::Note(format!(
                "{}/{} req/s: {:.3} (rounds {:.3}-{:.3})",
                r.numerator, r.denominator, r.ratio.median, r.ratio.min, r.ratio.max
            )));
        }
    }
}

/// What the `tcp+…` rows are, then one line per link: appended to the table.
pub fn link_notes(report: &Report) -> String {
    if report.links.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\ntcp+D: php-fpm in a network namespace of its own, same pool settings, behind an \
         emulated link that adds D of round-trip time (D/2 each way: a userspace relay \
         between two tun devices holds every packet; a kept-alive request pays D once, one \
         on a new connection twice). held = how long packets really stayed in the relay, \
         one way.\n",
    );
    let mut rows = vec![Row::Cells(
        [
            "link",
            "upstream",
            "netns",
            "one-way ms",
            "held p50",
            "held p99",
            "held max",
            "packets",
            "dropped",
        ]
        .map(str::to_owned)
        .to_vec(),
    )];
    for link in &report.links {
        rows.push(Row::Cells(vec![
            link.label.clone(),
            link.upstream.clone(),
            link.namespace.clone(),
            ms(link.one_way_ms),
            ms(link.held_ms.p50),
            ms(link.held_ms.p99),
            ms(link.held_ms.max),
            link.packets.to_string(),
            link.dropped.to_string(),
        ]));
    }
    out.push_str(&render_aligned(&rows, |i| i < 3));
    out
}

fn status_columns(samples: &[StatusSample]) -> [String; 2] {
    let queue = samples
        .iter()
        .filter_map(|s| s.after.map(|a| a.listen_queue))
        .max();
    let reached: Option<u64> = samples
        .iter()
        .filter_map(|s| s.max_children_reached_delta)
        .reduce(|a, b| a + b);
    let show = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    [show(queue), show(reached)]
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

/// Text columns (keepalive, upstream, errors) are left-aligned, numbers right-aligned.
fn render(rows: &[Row]) -> String {
    render_aligned(rows, |i| matches!(i, 0 | 2 | 13))
}

/// Columns where `left(i)` are left-aligned, the others right-aligned.
fn render_aligned(rows: &[Row], left: impl Fn(usize) -> bool) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        if let Row::Cells(cells) = row {
            for (i, c) in cells.iter().enumerate() {
                if widths.len() <= i {
                    widths.push(0);
                }
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        match row {
            Row::Cells(cells) => {
                let mut line = String::new();
                for (i, c) in cells.iter().enumerate() {
                    let w = widths[i];
                    if i > 0 {
                        line.push_str("  ");
                    }
                    if left(i) {
                        line.push_str(&format!("{c:<w$}"));
                    } else {
                        line.push_str(&format!("{c:>w$}"));
                    }
                }
                out.push_str(line.trim_end());
            }
            Row::Note(note) => {
                out.push_str("    ");
                out.push_str(note);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Plan;
    use std::time::Duration;

    fn plan() -> Plan {
        Plan {
            upstreams: vec![
                "unix:/a.sock".parse().unwrap(),
                "tcp:127.0.0.1:9000".parse().unwrap(),
            ],
            script: "/x/hello.php".into(),
            query: String::new(),
            concurrency: vec![1, 4],
            keepalive: vec![true],
            stop: Stop::After(Duration::from_secs(1)),
            rounds: 2,
            warmup: Duration::ZERO,
            fpm_status_path: None,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            labels: vec![],
            fpm: None,
        }
    }

    fn run(ok: u64, ms_each: u64) -> CellRun {
        let mut r = CellRun {
            ok,
            elapsed: Duration::from_secs(1),
            workers_served: 1,
            ..CellRun::default()
        };
        for _ in 0..ok {
            r.total.record(Duration::from_millis(ms_each));
        }
        r
    }

    #[test]
    fn ratios_per_round_and_table() {
        let plan = plan();
        let rec = |a: u64, b: u64| CellRecord {
            runs: vec![run(a, 1), run(b, 1)],
            statuses: vec![],
        };
        let records = vec![
            vec![vec![rec(200, 220), rec(400, 400)]],
            vec![vec![rec(100, 200), rec(400, 200)]],
        ];
        let report = build(&plan, &records);
        assert_eq!(report.cells.len(), 4);
        assert_eq!(report.cells[0].label, "unix");
        assert_eq!(report.cells[1].label, "tcp");
        assert_eq!(report.ratios.len(), 2);
        let r = &report.ratios[0];
        assert_eq!((r.ratio.min, r.ratio.max), (1.1, 2.0));
        assert_eq!(report.ratios[1].ratio.max, 2.0);
        let text = table(&report);
        assert!(
            text.contains("unix/tcp req/s: 1.550 (rounds 1.100-2.000)"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("keepalive  conc  upstream"), "{text}");
        assert_eq!(lines.len(), 1 + 4 + 2);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["cells"][0]["requests"], 420);
        assert!(json["cells"][0].get("total_hist").is_none());
    }

    #[test]
    fn same_kind_upstreams_are_labelled_by_address() {
        let mut p = plan();
        p.upstreams = vec![
            "unix:/a.sock".parse().unwrap(),
            "unix:/b.sock".parse().unwrap(),
        ];
        assert_eq!(labels(&p), vec!["unix:/a.sock", "unix:/b.sock"]);
    }

    #[test]
    fn self_started_labels_and_link_notes() {
        let mut p = plan();
        p.upstreams.push("tcp:10.203.0.2:9000".parse().unwrap());
        p.labels = vec!["unix".into(), "tcp".into(), "tcp+1ms".into()];
        assert_eq!(labels(&p), p.labels);
        let rec = || CellRecord {
            runs: vec![run(100, 1), run(100, 1)],
            statuses: vec![],
        };
        let records = vec![vec![vec![rec(), rec()]]; 3];
        let mut report = build(&p, &records);
        assert_eq!(report.cells[2].label, "tcp+1ms");
        assert!(table(&report).contains("unix/tcp+1ms req/s: 1.000"));
        assert_eq!(link_notes(&report), "");
        let mut held = crate::bench::stats::Latencies::default();
        held.record(Duration::from_micros(510));
        report.links.push(LinkReport {
            label: "tcp+1ms".into(),
            upstream: "tcp:10.203.0.2:9000".into(),
            namespace: "fcgi-bench-1-0".into(),
            rtt_ms: 1.0,
            one_way_ms: 0.5,
            emulation: crate::bench::link::EMULATION,
            packets: 42,
            bytes: 4200,
            dropped: 0,
            write_errors: 0,
            held_ms: held.summary(),
        });
        let notes = link_notes(&report);
        assert!(notes.contains("D/2 each way"), "{notes}");
        let row = notes.lines().last().unwrap();
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "tcp+1ms",
                "tcp:10.203.0.2:9000",
                "fcgi-bench-1-0",
                "0.500",
                "0.510",
                "0.510",
                "0.510",
                "42",
                "0"
            ]
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["links"][0]["rtt_ms"], 1.0);
        assert!(json["settings"]["php_fpm"].is_null());
    }
}
