//! `report FILE…`: reads the JSON lines of earlier runs and prints one summary table, with the
//! targets for the runs `scripts/bench.sh` labels.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::common::Table;

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn phase<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["phases"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["phase"] == name))
        .unwrap_or(&Value::Null)
}

fn failures(run: &Value) -> u64 {
    let sum = |v: &Value| {
        v.as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0)
    };
    sum(&run["failures"]) + sum(&run["open_failures"])
}

/// One line per run: the headline figures.
fn headline(run: &Value) -> String {
    match run["workload"].as_str().unwrap_or("") {
        "handshake" => format!(
            "{} workers, close {}: {}/s, p50/p99/max {}/{}/{} ms, {} µs CPU/handshake, failures {}, other CPU {}%",
            run["workers"],
            run["close_mode"].as_str().unwrap_or("?"),
            f(num(&run["handshakes_per_s"]), 0),
            f(num(&run["latency_ms"]["p50"]), 2),
            f(num(&run["latency_ms"]["p99"]), 2),
            f(num(&run["latency_ms"]["max"]), 2),
            f(num(&run["server_cpu_us_per_handshake"]), 1),
            failures(run),
            f(num(&run["measure"]["other_cpu_pct"]), 0)
        ),
        "fanout" => {
            let mut parts = Vec::new();
            for p in run["phases"].as_array().into_iter().flatten() {
                parts.push(format!(
                    "{}: {} deliveries/s, p50/p99/max {}/{}/{} ms, {} µs CPU/delivery, missing {}, other CPU {}%{}",
                    p["phase"].as_str().unwrap_or(""),
                    f(num(&p["deliveries_per_s"]), 0),
                    f(num(&p["latency_ms"]["p50"]), 2),
                    f(num(&p["latency_ms"]["p99"]), 2),
                    f(num(&p["latency_ms"]["max"]), 2),
                    f(num(&p["server_cpu_us_per_delivery"]), 3),
                    p["missing"],
                    f(num(&p["measure"]["other_cpu_pct"]), 0),
                    if p["logins"].is_null() {
                        String::new()
                    } else {
                        format!(", {} logins/s", f(num(&p["logins_per_s"]), 2))
                    }
                ));
            }
            format!(
                "{} sockets, rate {}: {}; failures {}",
                run["sockets_open"],
                if run["rate"].as_f64() == Some(0.0) {
                    "full".to_string()
                } else {
                    format!("{}/s", run["rate"])
                },
                parts.join("; "),
                failures(run)
            )
        }
        "idle" => format!(
            "{}/{} open ({:.0}/s), RSS {} → {} KiB = {} KiB/socket (anon {} B/socket), verify {}/{}, failures {}",
            run["sockets_open"],
            run["sockets"],
            num(&run["open_per_s"]).unwrap_or(0.0),
            run["server_rss_kb_before"],
            run["server_rss_kb_with"],
            f(num(&run["server_rss_kib_per_socket"]), 2),
            f(num(&run["server_anon_bytes_per_socket"]), 0),
            run["verify_delivered"],
            run["sockets_open"],
            failures(run)
        ),
        "login" => format!(
            "{} loops: {} logins/s, p50/p99 {}/{} ms, {} ms CPU/login, failures {}",
            run["workers"],
            f(num(&run["logins_per_s"]), 2),
            f(num(&run["latency_ms"]["p50"]), 1),
            f(num(&run["latency_ms"]["p99"]), 1),
            f(num(&run["server_cpu_us_per_login"]).map(|u| u / 1000.0), 1),
            failures(run)
        ),
        other => format!("unknown workload {other}"),
    }
}

/// (target, measured, met) rows for a labelled run.
fn targets(label: &str, run: &Value) -> Vec<(String, String, Option<bool>)> {
    let le = |x: Option<f64>, limit: f64| x.map(|x| x <= limit);
    let lt = |x: Option<f64>, limit: f64| x.map(|x| x < limit);
    let ge = |x: Option<f64>, limit: f64| x.map(|x| x >= limit);
    match label {
        "handshake" | "handshake-send" => {
            let cpu = num(&run["server_cpu_us_per_handshake"]);
            let rate = num(&run["handshakes_per_s"]);
            let p99 = num(&run["latency_ms"]["p99"]);
            let how = format!(
                "{label} (close {})",
                run["close_mode"].as_str().unwrap_or("?")
            );
            vec![
                (
                    format!("{how}: server CPU ≤ 400 µs/handshake"),
                    f(cpu, 1) + " µs",
                    le(cpu, 400.0),
                ),
                (
                    format!("{how}: ≥ 2,500 handshakes/s at 50 workers"),
                    f(rate, 0) + "/s",
                    ge(rate, 2500.0),
                ),
                (
                    format!("{how}: p99 < 25 ms"),
                    f(p99, 2) + " ms",
                    lt(p99, 25.0),
                ),
            ]
        }
        "fanout-full" => {
            let cpu = num(&phase(run, "quiet")["server_cpu_us_per_delivery"]);
            vec![(
                "fan-out full rate, 1,000 sockets: ≤ 1.5 µs CPU/delivery".into(),
                f(cpu, 3) + " µs",
                le(cpu, 1.5),
            )]
        }
        "fanout-20" => {
            let q = phase(run, "quiet");
            let cpu = num(&q["server_cpu_us_per_delivery"]);
            let p99 = num(&q["latency_ms"]["p99"]);
            vec![
                (
                    "fan-out 1,000 × 20 msg/s: ≤ 15 µs CPU/delivery".into(),
                    f(cpu, 2) + " µs",
                    le(cpu, 15.0),
                ),
                (
                    "fan-out 1,000 × 20 msg/s: p99 < 20 ms".into(),
                    f(p99, 2) + " ms",
                    lt(p99, 20.0),
                ),
            ]
        }
        "fanout-storm" => {
            let q = num(&phase(run, "quiet")["latency_ms"]["p99"]);
            let s = num(&phase(run, "login_storm")["latency_ms"]["p99"]);
            let ratio = num(&run["storm_p99_ratio"]);
            vec![(
                "login storm (cost 12, 8 loops): p99 ≤ 2× quiet".into(),
                format!("{} ms vs {} ms quiet = {}×", f(s, 2), f(q, 2), f(ratio, 2)),
                le(ratio, 2.0),
            )]
        }
        "idle-10k" => {
            let per = num(&run["server_rss_kib_per_socket"]);
            vec![(
                "idle RSS ≤ 6 KiB/socket at 10,000".into(),
                f(per, 2) + " KiB",
                le(per, 6.0),
            )]
        }
        "idle-19k" => {
            let open = run["sockets_open"].as_u64().unwrap_or(0);
            let clean = open == 19_000
                && failures(run) == 0
                && run["verify_missing"].as_u64() == Some(0)
                && run["died_during_hold"].as_u64() == Some(0);
            vec![(
                "19,000 authenticated sockets held without error".into(),
                format!(
                    "{open} open, {} failures, verify missing {}",
                    failures(run),
                    run["verify_missing"]
                ),
                Some(clean),
            )]
        }
        "cluster-fanout-20" | "cluster-fanout-20-nginx" => {
            let p99 = num(&phase(run, "quiet")["latency_ms"]["p99"]);
            let how = if label.ends_with("nginx") {
                "through nginx"
            } else {
                "directly"
            };
            vec![(
                format!("3 nodes {how}, 1,000 sockets × 20 msg/s: cross-node p99 < 10 ms"),
                f(p99, 2) + " ms",
                lt(p99, 10.0),
            )]
        }
        "cluster-handshake-nginx" => {
            let rate = num(&run["handshakes_per_s"]);
            vec![(
                "3 nodes through nginx: handshakes/s at 50 workers (no target)".into(),
                f(rate, 0) + "/s",
                None,
            )]
        }
        _ => Vec::new(),
    }
}

/// How the targets table says whether a target was met.
fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "n/a",
    }
}

/// (target, measured, met) rows that compare two labelled runs of one set (the rooms targets).
fn paired_targets(runs: &[Value]) -> Vec<(String, String, Option<bool>)> {
    let by = |label: &str| runs.iter().rev().find(|r| r["label"] == label);
    let quiet = |run: &Value, key: &str| num(&phase(run, "quiet")[key]);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mut rows = Vec::new();
    if let (Some(small), Some(big)) = (by("rooms-small"), by("rooms-big")) {
        for (target, key) in [
            (
                "rooms: CPU/delivery, 1,000 rooms of 10 ≤ 1.5× one room of 1,000",
                "server_cpu_us_per_delivery",
            ),
            (
                "rooms: the same, user-mode CPU only (the server's own code)",
                "server_user_cpu_us_per_delivery",
            ),
        ] {
            let (a, b) = (quiet(small, key), quiet(big, key));
            let r = ratio(a, b);
            rows.push((
                target.into(),
                format!("{} vs {} µs = {}×", f(a, 2), f(b, 2), f(r, 2)),
                r.map(|r| r <= 1.5),
            ));
        }
    }
    if let (Some(lobby), Some(rooms)) = (by("idle-10k"), by("idle-rooms")) {
        let per = |r: &Value| num(&r["server_rss_kib_per_socket"]);
        let lobby_kib = per(lobby);
        rows.push((
            "idle socket in lobby ≤ 5.55 KiB (before rooms)".into(),
            f(lobby_kib, 2) + " KiB",
            lobby_kib.map(|k| k <= 5.55),
        ));
        let rooms_each = rooms["rooms_per_socket"].as_f64().unwrap_or(0.0).max(1.0);
        let extra = match (per(rooms), lobby_kib) {
            (Some(r), Some(l)) => Some((r - l) * 1024.0 / rooms_each),
            _ => None,
        };
        rows.push((
            "each extra room subscription ≤ 256 B".into(),
            f(extra, 0) + " B",
            extra.map(|b| b <= 256.0),
        ));
    }
    if let (Some(cluster), Some(single)) = (by("cluster-fanout-20"), by("fanout-20-mongodb")) {
        let key = "server_cpu_us_per_delivery";
        let (a, b) = (quiet(cluster, key), quiet(single, key));
        let r = ratio(a, b);
        rows.push((
            "3 nodes: CPU/delivery summed over nodes ≤ 1.5× one node (both on MongoDB)".into(),
            format!("{} vs {} µs = {}×", f(a, 2), f(b, 2), f(r, 2)),
            r.map(|r| r <= 1.5),
        ));
    }
    if let (Some(memory), Some(mongo)) = (by("fanout-20"), by("fanout-20-mongodb")) {
        let p99 = |r: &Value| num(&phase(r, "quiet")["latency_ms"]["p99"]);
        let r = ratio(p99(mongo), p99(memory));
        rows.push((
            "history on MongoDB: p99 at 1,000 × 20 msg/s ≤ 1.2× the embedded store's".into(),
            format!(
                "{} vs {} ms = {}×",
                f(p99(mongo), 2),
                f(p99(memory), 2),
                f(r, 2)
            ),
            r.map(|r| r <= 1.2),
        ));
    }
    rows
}

/// Prints the summary of the runs in `files` (JSON lines; other lines are ignored).
pub fn run(files: &[std::path::PathBuf]) -> Result<bool> {
    let mut runs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                runs.push(v);
            }
        }
    }
    let mut summary = Table::new("summary", &["run", "figures"]);
    let mut goals = Table::new("targets", &["target", "measured", "met"]);
    let mut all_met = true;
    for run in &runs {
        let label = run["label"].as_str().unwrap_or("");
        let name = if label.is_empty() {
            run["workload"].as_str().unwrap_or("?").to_string()
        } else {
            label.to_string()
        };
        summary.row(vec![name, headline(run)]);
        for (target, measured, met) in targets(label, run) {
            all_met &= met == Some(true);
            goals.row(vec![target, measured, met_text(met).into()]);
        }
    }
    for (target, measured, met) in paired_targets(&runs) {
        all_met &= met == Some(true);
        goals.row(vec![target, measured, met_text(met).into()]);
    }
    summary.print();
    if !goals.is_empty() {
        goals.print();
    }
    Ok(all_met)
}
