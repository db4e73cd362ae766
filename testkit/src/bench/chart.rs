//! `chart FILE… --out DIR`: the SVG cost curves of docs/bench/ (RSS against sockets, CPU per delivery
//! against room size and against rate, handshake latency against concurrency, cross-node p99
//! against load), drawn from the JSON lines of `scripts/bench.sh`'s runs. Each chart states the
//! machine and the commit it was measured on.
//!
//! The SVG is written by hand: a line chart is a few dozen elements, and a plotting crate would
//! add more to the build than this file is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// One line of a chart: its name and points (x, y), sorted by x.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// A log-scaled x axis (room sizes, concurrency: decades apart).
    pub x_log: bool,
    pub series: Vec<Series>,
    /// The machine and the commit, printed under the chart.
    pub footnote: String,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 78.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick values covering `0..=max` (the y axis starts at zero: costs are compared to nothing).
fn ticks(max: f64) -> Vec<f64> {
    if max.is_nan() || max <= 0.0 || max.is_infinite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let count = (max / step).ceil() as usize;
    (0..=count.max(1)).map(|i| i as f64 * step).collect()
}

fn number(x: f64) -> String {
    if x.abs() >= 10_000.0 && x.fract() == 0.0 {
        let s = format!("{x:.0}");
        // Thousands separators: 19000 → 19,000.
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() < 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

impl Chart {
    /// The chart as an SVG document. A chart without points says so instead of drawing axes.
    pub fn svg(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="24" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.x_log || *x > 0.0))
            .collect();
        if points.is_empty() {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">no runs of this chart in the results</text>"#,
                W / 2.0,
                H / 2.0
            );
        } else {
            self.axes_and_lines(&mut out, &points);
        }
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{}" font-size="10" fill="#555">{}</text>"##,
            H - 10.0,
            escape(&self.footnote)
        );
        out.push_str("</svg>\n");
        out
    }

    fn axes_and_lines(&self, out: &mut String, points: &[(f64, f64)]) {
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let fx = |x: f64| if self.x_log { x.log10() } else { x };
        let (mut x_min, mut x_max) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
                (lo.min(fx(*x)), hi.max(fx(*x)))
            });
        if !self.x_log {
            x_min = x_min.min(0.0);
        }
        if x_max - x_min < 1e-9 {
            x_max = x_min + 1.0;
        }
        let y_ticks = ticks(points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.05);
        let y_max = *y_ticks.last().unwrap_or(&1.0);
        let px = |x: f64| LEFT + (fx(x) - x_min) / (x_max - x_min) * plot_w;
        let py = |y: f64| TOP + plot_h - y / y_max * plot_h;

        // Grid and y ticks.
        for y in &y_ticks {
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
                py(*y),
                LEFT + plot_w,
                LEFT - 6.0,
                py(*y) + 4.0,
                number(*y)
            );
        }
        // x ticks: every distinct x of the data (the runs are the ticks).
        let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        for x in &xs {
            let _ = writeln!(
                out,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#999"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
                px(*x),
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 18.0,
                number(*x)
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0:.1}" stroke="#333"/><line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#333"/>"##,
            TOP + plot_h,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h + 38.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            out,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let drawn: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.x_log || *x > 0.0))
                .map(|(x, y)| (px(x), py(y)))
                .collect();
            if drawn.len() > 1 {
                let path: Vec<String> = drawn
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = writeln!(
                    out,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                );
            }
            for ((x, y), (_, value)) in drawn.iter().zip(&series.points) {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"><title>{}</title></circle>"#,
                    number(*value)
                );
            }
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = LEFT + plot_w + 16.0;
            let _ = writeln!(
                out,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 20.0,
                lx + 26.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
    }
}

/// The median of a non-empty set of values.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Points (x, median of y over the runs at that x) of the runs `pick` accepts.
fn curve(runs: &[Value], pick: impl Fn(&Value) -> Option<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut by_x: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for (x, y) in runs.iter().filter_map(pick) {
        by_x.entry(x.to_bits()).or_insert((x, Vec::new())).1.push(y);
    }
    let mut points: Vec<(f64, f64)> = by_x
        .into_values()
        .filter_map(|(x, mut ys)| median(&mut ys).map(|y| (x, y)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn quiet(run: &Value) -> &Value {
    run["phases"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["phase"] == "quiet"))
        .unwrap_or(&Value::Null)
}

fn label(run: &Value) -> &str {
    run["label"].as_str().unwrap_or("")
}

/// Labels `scripts/bench.sh` gives the runs of each chart.
fn is_idle_size(l: &str) -> bool {
    matches!(l, "idle-1k" | "idle-5k" | "idle-10k" | "idle-19k")
}
fn is_room_size(l: &str) -> bool {
    l == "rooms-small" || l.starts_with("rooms-size-")
}
fn is_rate(l: &str) -> bool {
    l == "fanout-20" || l.starts_with("fanout-rate-")
}
fn is_concurrency(l: &str) -> bool {
    l == "handshake" || l.starts_with("handshake-workers-")
}
fn is_cluster_load(l: &str) -> bool {
    l == "cluster-fanout-20" || l.starts_with("cluster-fanout-rate-")
}

/// Every chart of docs/bench/, by file name.
pub fn charts(runs: &[Value], footnote: &str) -> Vec<(&'static str, Chart)> {
    let f = |v: &Value| v.as_f64();
    let chart = |title: &str, x: &str, y: &str, x_log: bool, series: Vec<Series>| Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        x_log,
        series,
        footnote: footnote.into(),
    };
    let series = |name: &str, points| Series {
        name: name.into(),
        points,
    };
    let rss = curve(runs, |r| {
        let x = f(&r["sockets_open"])?;
        let y = f(&r["server_rss_kb_with"])? / 1024.0;
        is_idle_size(label(r)).then_some((x, y))
    });
    let room_size = curve(runs, |r| {
        let sockets = f(&r["sockets"])?;
        let rooms = f(&r["rooms"])?.max(1.0);
        let y = f(&quiet(r)["server_cpu_us_per_delivery"])?;
        is_room_size(label(r)).then_some((sockets / rooms, y))
    });
    let rate = curve(runs, |r| {
        let y = f(&quiet(r)["server_cpu_us_per_delivery"])?;
        is_rate(label(r)).then_some((f(&r["rate"])?, y))
    });
    let handshake = |key: &'static str| {
        curve(runs, move |r| {
            let y = f(&r["latency_ms"][key])?;
            is_concurrency(label(r)).then_some((f(&r["workers"])?, y))
        })
    };
    let cluster = |key: &'static str| {
        curve(runs, move |r| {
            let y = f(&quiet(r)["latency_ms"][key])?;
            is_cluster_load(label(r)).then_some((f(&r["rate"])?, y))
        })
    };
    vec![
        (
            "rss-vs-sockets.svg",
            chart(
                "Server RSS against idle authenticated sockets",
                "sockets in lobby",
                "server RSS (MiB)",
                false,
                vec![series("RSS", rss)],
            ),
        ),
        (
            "cpu-vs-room-size.svg",
            chart(
                "Server CPU per delivery against room size (10,000 sockets, 10,000 deliveries/s)",
                "sockets per room (log)",
                "µs CPU per delivered frame",
                true,
                vec![series("CPU/delivery", room_size)],
            ),
        ),
        (
            "cpu-vs-rate.svg",
            chart(
                "Server CPU per delivery against message rate (1,000 sockets in one room)",
                "messages/s into the room",
                "µs CPU per delivered frame",
                false,
                vec![series("CPU/delivery", rate)],
            ),
        ),
        (
            "handshake-latency-vs-concurrency.svg",
            chart(
                "Handshake latency (mint → auth_ok) against concurrency",
                "concurrent workers (log)",
                "ms",
                true,
                vec![
                    series("p50", handshake("p50")),
                    series("p99", handshake("p99")),
                    series("max", handshake("max")),
                ],
            ),
        ),
        (
            "cluster-p99-vs-load.svg",
            chart(
                "Cross-node delivery latency against load (3 nodes, 1,000 sockets)",
                "messages/s into the room (× 1,000 deliveries)",
                "ms",
                false,
                vec![series("p50", cluster("p50")), series("p99", cluster("p99"))],
            ),
        ),
    ]
}

/// Reads the JSON lines of `files` (other lines are skipped).
pub fn read_runs(files: &[PathBuf]) -> Result<Vec<Value>> {
    let mut runs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        runs.extend(
            text.lines()
                .filter(|l| l.starts_with('{'))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
        );
    }
    Ok(runs)
}

/// Writes every chart into `out`; returns the files written.
pub fn run(files: &[PathBuf], out: &Path, footnote: &str) -> Result<Vec<PathBuf>> {
    let runs = read_runs(files)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let mut written = Vec::new();
    for (name, chart) in charts(&runs, footnote) {
        let path = out.join(name);
        std::fs::write(&path, chart.svg()).with_context(|| format!("{}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(9.3), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            ticks(0.9),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert!(*ticks(112.0).last().unwrap() >= 112.0);
        assert_eq!(ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(ticks(f64::NAN), vec![0.0, 1.0]);
    }

    #[test]
    fn a_curve_takes_the_median_of_repeated_runs() {
        let run = |label: &str, sockets: u64, rss: u64| json!({"workload": "idle", "label": label, "sockets_open": sockets, "server_rss_kb_with": rss});
        let runs = vec![
            run("idle-10k", 10_000, 60 * 1024),
            run("idle-10k", 10_000, 64 * 1024),
            run("idle-10k", 10_000, 61 * 1024),
            run("idle-1k", 1_000, 12 * 1024),
            run("idle-rooms", 10_000, 90 * 1024),
        ];
        let charts = charts(&runs, "machine, commit");
        let rss = &charts[0].1.series[0].points;
        assert_eq!(rss, &vec![(1_000.0, 12.0), (10_000.0, 61.0)]);
    }

    #[test]
    fn the_svg_has_a_point_per_run_and_states_machine_and_commit() {
        let runs = vec![
            json!({"label": "handshake-workers-10", "workers": 10, "latency_ms": {"p50": 1.0, "p99": 2.5, "max": 4.0}}),
            json!({"label": "handshake", "workers": 50, "latency_ms": {"p50": 8.0, "p99": 15.9, "max": 25.0}}),
        ];
        let charts = charts(&runs, "AMD EPYC 2 vCPUs, commit abc1234 <x>");
        let (name, chart) = &charts[3];
        assert_eq!(*name, "handshake-latency-vs-concurrency.svg");
        let svg = chart.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 6, "3 series × 2 runs");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("commit abc1234 &lt;x&gt;"), "escaped footnote");
        // Higher latency is drawn higher: p99's point at 50 workers is above p50's.
        let cy = |series: usize, point: usize| -> f64 {
            let circles: Vec<&str> = svg.split("<circle").skip(1).collect();
            let c = circles[series * 2 + point];
            let at = c.find("cy=\"").unwrap() + 4;
            c[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(cy(1, 1) < cy(0, 1));
    }

    #[test]
    fn a_chart_without_runs_says_so() {
        let charts = charts(&[], "m");
        let svg = charts[4].1.svg();
        assert!(svg.contains("no runs of this chart"));
        assert!(!svg.contains("<polyline"));
    }
}
