//! `report FILE…`: reads the JSON lines of earlier runs and prints one summary table, with the
//! targets for the runs `scripts/bench.sh` labels.

use anyhow::Result;
use serde_json::Value;

use crate::common::Table;

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The hypervisor's steal over a phase, summed over the CPUs (percent of one core); `None` for
/// runs recorded before the tool measured it.
fn steal(measure: &Value) -> Option<f64> {
    let each = measure["cpu_steal_pct"].as_array()?;
    Some(each.iter().filter_map(Value::as_f64).sum())
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
            "{} workers, close {}: {}/s, p50/p99/max {}/{}/{} ms, {} µs CPU/handshake, failures {}, other CPU {}%, steal {}%",
            run["workers"],
            run["close_mode"].as_str().unwrap_or("?"),
            f(num(&run["handshakes_per_s"]), 0),
            f(num(&run["latency_ms"]["p50"]), 2),
            f(num(&run["latency_ms"]["p99"]), 2),
            f(num(&run["latency_ms"]["max"]), 2),
            f(num(&run["server_cpu_us_per_handshake"]), 1),
            failures(run),
            f(num(&run["measure"]["other_cpu_pct"]), 0),
            f(steal(&run["measure"]), 1)
        ),
        "fanout" => {
            let mut parts = Vec::new();
            for p in run["phases"].as_array().into_iter().flatten() {
                parts.push(format!(
                    "{}: {} deliveries/s, p50/p99/max {}/{}/{} ms, {} µs CPU/delivery, missing {}, other CPU {}%, steal {}%{}",
                    p["phase"].as_str().unwrap_or(""),
                    f(num(&p["deliveries_per_s"]), 0),
                    f(num(&p["latency_ms"]["p50"]), 2),
                    f(num(&p["latency_ms"]["p99"]), 2),
                    f(num(&p["latency_ms"]["max"]), 2),
                    f(num(&p["server_cpu_us_per_delivery"]), 3),
                    p["missing"],
                    f(num(&p["measure"]["other_cpu_pct"]), 0),
                    f(steal(&p["measure"]), 1),
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
    // The rooms pair from the medians of its repeats, as the floor table gives it: the last run
    // alone could say the opposite.
    for (target, key) in [
        (
            "rooms: CPU/delivery, 1,000 rooms of 10 ≤ 1.5× one room of 1,000 (medians)",
            "server_cpu_us_per_delivery",
        ),
        (
            "rooms: the same, user-mode CPU only (the server's own code)",
            "server_user_cpu_us_per_delivery",
        ),
    ] {
        if let Some((a, b, r)) = median_ratio(runs, "rooms-small", "rooms-big", key) {
            rows.push((
                target.into(),
                format!("{a:.2} vs {b:.2} µs = {r:.2}×"),
                Some(r <= 1.5),
            ));
        }
    }
    // The target's pair differs in two things at once: the room's size, and how often each socket
    // gets a frame (1/s in rooms of 10, 10/s in the room of 1,000), which changes what the
    // loopback's TCP does per send (docs/benchmarks.md). Rooms of 1,000 at 1 frame/s per socket,
    // with the same sockets and deliveries/s, differ from `rooms-small` in the room's size only.
    let cpu = "server_cpu_us_per_delivery";
    if let Some((a, b, r)) = median_ratio(runs, "rooms-small", "rooms-size-1000", cpu) {
        rows.push((
            "rooms: the same against 10 rooms of 1,000, 1 frame/s per socket as in rooms of 10 (no target)"
                .into(),
            format!("{a:.2} vs {b:.2} µs = {r:.2}×"),
            None,
        ));
    }
    // (The memory of a room subscription is in `figures`, as the median of the repeats.)
    if let Some(lobby) = by("idle-10k") {
        let lobby_kib = num(&lobby["server_rss_kib_per_socket"]);
        rows.push((
            "idle socket in lobby ≤ 5.55 KiB (before rooms)".into(),
            f(lobby_kib, 2) + " KiB",
            lobby_kib.map(|k| k <= 5.55),
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

/// A figure's value in every run of `label` (repeats of one run).
fn values(runs: &[Value], label: &str, get: impl Fn(&Value) -> Option<f64>) -> Vec<f64> {
    runs.iter()
        .filter(|r| r["label"] == label)
        .filter_map(get)
        .collect()
}

/// "median (min–max, n runs)" of a figure's values.
fn spread(values: &[f64], digits: usize) -> (Option<f64>, String) {
    let mut sorted = values.to_vec();
    let median = crate::chart::median(&mut sorted);
    let text = match (median, sorted.first(), sorted.last()) {
        (Some(m), Some(lo), Some(hi)) if sorted.len() > 1 => format!(
            "{} ({}–{}, {} runs)",
            f(Some(m), digits),
            f(Some(*lo), digits),
            f(Some(*hi), digits),
            sorted.len()
        ),
        (Some(m), _, _) => format!("{} (1 run)", f(Some(m), digits)),
        _ => "-".into(),
    };
    (median, text)
}

/// The table of the performance figures (issue "performance v2"): the median of each labelled
/// run's repeats with their spread, against its target.
fn figures(runs: &[Value]) -> Vec<(String, String, Option<bool>)> {
    let quiet_of = |key: &'static str| move |r: &Value| num(&phase(r, "quiet")[key]);
    let p99 = |r: &Value| num(&phase(r, "quiet")["latency_ms"]["p99"]);
    let rss = |r: &Value| num(&r["server_rss_kib_per_socket"]);
    let cpu = quiet_of("server_cpu_us_per_delivery");
    let mut rows = Vec::new();
    let mut row = |name: &str,
                   label: &str,
                   get: &dyn Fn(&Value) -> Option<f64>,
                   unit: &str,
                   digits: usize,
                   limit: f64,
                   strict: bool| {
        let vals = values(runs, label, get);
        if vals.is_empty() {
            return;
        }
        let (median, text) = spread(&vals, digits);
        let bound = if strict { "<" } else { "≤" };
        rows.push((
            format!("{name}: {bound} {limit} {unit}"),
            format!("{text} {unit}"),
            median.map(|m| if strict { m < limit } else { m <= limit }),
        ));
    };
    row(
        "RSS per idle authenticated socket in lobby, 10,000 (idle-10k)",
        "idle-10k",
        &rss,
        "KiB",
        2,
        3.5,
        false,
    );
    row(
        "RSS per pending socket, 10,000 (idle-pending-10k)",
        "idle-pending-10k",
        &rss,
        "KiB",
        2,
        3.0,
        false,
    );
    row(
        "server CPU per full handshake (handshake)",
        "handshake",
        &|r: &Value| num(&r["server_cpu_us_per_handshake"]),
        "µs",
        1,
        200.0,
        false,
    );
    row(
        "server CPU per delivered frame, full rate, 1,000 sockets (fanout-full)",
        "fanout-full",
        &cpu,
        "µs",
        3,
        0.8,
        false,
    );
    row(
        "server CPU per delivered frame, 1,000 × 20 msg/s (fanout-20)",
        "fanout-20",
        &cpu,
        "µs",
        2,
        8.0,
        false,
    );
    row(
        "delivery p99, 1,000 × 20 msg/s (fanout-20)",
        "fanout-20",
        &p99,
        "ms",
        2,
        10.0,
        true,
    );
    row(
        "3 nodes: cross-node p99, 1,000 × 20 msg/s (cluster-fanout-20)",
        "cluster-fanout-20",
        &p99,
        "ms",
        2,
        10.0,
        true,
    );
    // Paired figures: each repeat of one run against the median of the other.
    let (lobby, _) = spread(&values(runs, "idle-10k", rss), 2);
    if let Some(lobby) = lobby {
        let extra: Vec<f64> = runs
            .iter()
            .filter(|r| r["label"] == "idle-rooms")
            .filter_map(|r| {
                let k = r["rooms_per_socket"].as_f64()?.max(1.0);
                Some((rss(r)? - lobby) * 1024.0 / k)
            })
            .collect();
        if !extra.is_empty() {
            let (median, text) = spread(&extra, 0);
            rows.push((
                "per extra room subscription of an idle socket (idle-rooms − idle-10k): ≤ 256 B"
                    .into(),
                format!("{text} B"),
                median.map(|m| m <= 256.0),
            ));
        }
    }
    let (single, _) = spread(&values(runs, "fanout-20-mongodb", cpu), 3);
    if let Some(single) = single.filter(|s| *s > 0.0) {
        let ratios: Vec<f64> = values(runs, "cluster-fanout-20", cpu)
            .iter()
            .map(|c| c / single)
            .collect();
        if !ratios.is_empty() {
            let (median, text) = spread(&ratios, 2);
            rows.push((
                "3 nodes: CPU/delivery summed over nodes ≤ 1.5× one node on MongoDB (fanout-20-mongodb)".into(),
                format!("{text}×"),
                median.map(|m| m <= 1.5),
            ));
        }
    }
    rows
}

/// Reads one figure of a run.
type Getter = dyn Fn(&Value) -> Option<f64>;

/// A quiet-phase figure (`key`) of two labels, each the median of its repeats, and their ratio.
fn median_ratio(runs: &[Value], small: &str, big: &str, key: &str) -> Option<(f64, f64, f64)> {
    let get = |r: &Value| num(&phase(r, "quiet")[key]);
    let (a, _) = spread(&values(runs, small, get), 2);
    let (b, _) = spread(&values(runs, big, get), 2);
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a, b, a / b)),
        _ => None,
    }
}

/// wsgate beside `wsgate-floor` (`BENCH_FLOOR=1`: each run of LABEL followed by floor-LABEL, the
/// same exchanges with no application logic): (figure, wsgate, floor, wsgate ÷ floor) rows, each
/// the median of the repeats with its spread: what wsgate's own work adds to what the libraries,
/// used plainly, cost on this machine.
fn floor_rows(runs: &[Value]) -> Vec<[String; 4]> {
    let quiet = |key: &'static str| move |r: &Value| num(&phase(r, "quiet")[key]);
    let p99 = |r: &Value| num(&phase(r, "quiet")["latency_ms"]["p99"]);
    let handshake = |r: &Value| num(&r["server_cpu_us_per_handshake"]);
    let cpu = quiet("server_cpu_us_per_delivery");
    let user = quiet("server_user_cpu_us_per_delivery");
    let figures: [(&str, &str, &Getter, &str, usize); 9] = [
        (
            "server CPU per full handshake",
            "handshake",
            &handshake,
            "µs",
            1,
        ),
        ("CPU per delivery, full rate", "fanout-full", &cpu, "µs", 3),
        (
            "CPU per delivery, 1,000 × 20 msg/s",
            "fanout-20",
            &cpu,
            "µs",
            2,
        ),
        ("  of it user mode", "fanout-20", &user, "µs", 2),
        ("delivery p99, 1,000 × 20 msg/s", "fanout-20", &p99, "ms", 2),
        (
            "CPU per delivery, 1,000 rooms of 10",
            "rooms-small",
            &cpu,
            "µs",
            2,
        ),
        (
            "CPU per delivery, one room of 1,000",
            "rooms-big",
            &cpu,
            "µs",
            2,
        ),
        (
            "CPU per delivery, 10 rooms of 1,000",
            "rooms-size-1000",
            &cpu,
            "µs",
            2,
        ),
        ("  rooms of 10, user mode", "rooms-small", &user, "µs", 2),
    ];
    let mut rows = Vec::new();
    for (name, label, get, unit, digits) in figures {
        let ours = values(runs, label, get);
        let floor = values(runs, &format!("floor-{label}"), get);
        if ours.is_empty() || floor.is_empty() {
            continue;
        }
        let (a, a_text) = spread(&ours, digits);
        let (b, b_text) = spread(&floor, digits);
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "-".into(),
        };
        rows.push([
            format!("{name} ({label})"),
            format!("{a_text} {unit}"),
            format!("{b_text} {unit}"),
            ratio,
        ]);
    }
    for (name, small, big) in [
        (
            "rooms ratio: rooms of 10 ÷ one room of 1,000",
            "rooms-small",
            "rooms-big",
        ),
        (
            "rooms ratio: rooms of 10 ÷ 10 rooms of 1,000",
            "rooms-small",
            "rooms-size-1000",
        ),
    ] {
        let cpu = "server_cpu_us_per_delivery";
        let ours = median_ratio(runs, small, big, cpu);
        let floor = median_ratio(
            runs,
            &format!("floor-{small}"),
            &format!("floor-{big}"),
            cpu,
        );
        if let (Some((_, _, a)), Some((_, _, b))) = (ours, floor) {
            rows.push([
                name.into(),
                format!("{a:.2}× (medians)"),
                format!("{b:.2}× (medians)"),
                format!("{:.2}×", a / b),
            ]);
        }
    }
    rows
}

/// Prints the summary of the runs in `files` (JSON lines; other lines are ignored).
pub fn run(files: &[std::path::PathBuf]) -> Result<bool> {
    let runs = crate::chart::read_runs(files)?;
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
    // The figures are reported, not enforced: `--strict` keeps meaning the release targets above.
    let mut v2 = Table::new(
        "performance figures (median of the repeats, spread)",
        &["figure: target", "measured", "met"],
    );
    for (target, measured, met) in figures(&runs) {
        v2.row(vec![target, measured, met_text(met).into()]);
    }
    if !v2.is_empty() {
        v2.print();
    }
    let mut floor = Table::new(
        "wsgate beside wsgate-floor (same workloads, no application logic; median and spread)",
        &["figure", "wsgate", "floor", "wsgate ÷ floor"],
    );
    for row in floor_rows(&runs) {
        floor.row(row.to_vec());
    }
    if !floor.is_empty() {
        floor.print();
    }
    Ok(all_met)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steal_is_summed_over_the_cpus_and_absent_from_older_runs() {
        assert_eq!(steal(&json!({"cpu_steal_pct": [1.5, 0.25]})), Some(1.75));
        assert_eq!(steal(&json!({"cpu_busy_pct": [50.0, 40.0]})), None);
        let handshake = |measure: Value| {
            json!({"workload": "handshake", "workers": 8, "close_mode": "client",
                "handshakes_per_s": 4000.0, "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
                "server_cpu_us_per_handshake": 180.0, "measure": measure})
        };
        let now = headline(&handshake(
            json!({"other_cpu_pct": 3.0, "cpu_steal_pct": [4.0, 0.5]}),
        ));
        assert!(now.ends_with("other CPU 3%, steal 4.5%"), "{now}");
        let before = headline(&handshake(json!({"other_cpu_pct": 3.0})));
        assert!(before.ends_with("other CPU 3%, steal -%"), "{before}");
    }

    fn idle(label: &str, kib: f64, rooms: u64) -> Value {
        json!({"workload": "idle", "label": label, "server_rss_kib_per_socket": kib, "rooms_per_socket": rooms})
    }

    #[test]
    fn figures_are_the_median_of_the_repeats_with_their_spread() {
        let runs = vec![
            idle("idle-10k", 3.6, 0),
            idle("idle-10k", 3.2, 0),
            idle("idle-10k", 3.4, 0),
            idle("idle-rooms", 4.4, 10),
        ];
        let rows = figures(&runs);
        let (target, measured, met) = &rows[0];
        assert!(
            target.starts_with("RSS per idle authenticated socket"),
            "{target}"
        );
        assert_eq!(measured, "3.40 (3.20–3.60, 3 runs) KiB");
        assert_eq!(*met, Some(true), "the median, 3.40, is within 3.5");
        let (_, measured, met) = rows.last().unwrap();
        // (4.4 − 3.4) KiB over 10 rooms = 102 B each.
        assert_eq!(measured, "102 (1 run) B");
        assert_eq!(*met, Some(true));
    }

    fn fanout(label: &str, cpu: f64, user: f64) -> Value {
        json!({"workload": "fanout", "label": label, "phases": [{"phase": "quiet",
            "server_cpu_us_per_delivery": cpu, "server_user_cpu_us_per_delivery": user}]})
    }

    #[test]
    fn the_rooms_pair_is_a_target_and_the_same_rate_pair_is_shown_beside_it() {
        let runs = vec![
            fanout("rooms-small", 28.0, 6.0),
            fanout("rooms-big", 12.5, 3.0),
            fanout("rooms-size-1000", 20.0, 5.0),
        ];
        let rows = paired_targets(&runs);
        assert_eq!(rows[0].1, "28.00 vs 12.50 µs = 2.24×");
        assert_eq!(rows[0].2, Some(false));
        assert_eq!(rows[1].1, "6.00 vs 3.00 µs = 2.00×");
        let (target, measured, met) = &rows[2];
        assert!(target.contains("10 rooms of 1,000"), "{target}");
        assert_eq!(measured, "28.00 vs 20.00 µs = 1.40×");
        assert_eq!(*met, None, "not the issue's target");
        let without = paired_targets(&runs[..2]);
        assert!(
            without
                .iter()
                .all(|(t, _, _)| !t.contains("10 rooms of 1,000")),
            "no row without its runs"
        );
    }

    #[test]
    fn the_floor_table_sets_each_figure_beside_the_floors_and_the_rooms_ratios_of_medians() {
        let runs = vec![
            fanout("rooms-small", 9.0, 3.0),
            fanout("rooms-small", 10.0, 3.0),
            fanout("rooms-small", 30.0, 3.0),
            fanout("rooms-big", 5.0, 2.0),
            fanout("floor-rooms-small", 6.0, 1.0),
            fanout("floor-rooms-big", 4.0, 1.0),
            fanout("rooms-size-1000", 8.0, 2.0),
        ];
        let rows = floor_rows(&runs);
        assert_eq!(
            rows[0],
            [
                "CPU per delivery, 1,000 rooms of 10 (rooms-small)".to_string(),
                "10.00 (9.00–30.00, 3 runs) µs".into(),
                "6.00 (1 run) µs".into(),
                "1.67×".into()
            ]
        );
        assert_eq!(rows[1][3], "1.25×", "5 against 4");
        // No floor run of rooms-size-1000: neither its row nor its ratio.
        assert!(rows.iter().all(|r| !r[0].contains("10 rooms of 1,000")));
        let ratio = rows.last().unwrap();
        assert_eq!(
            ratio[1], "2.00× (medians)",
            "the median 10 over 5, not the last run's 30"
        );
        assert_eq!(ratio[2], "1.50× (medians)");
        assert_eq!(ratio[3], "1.33×");
        // The target's row takes the same medians.
        let target = &paired_targets(&runs)[0];
        assert_eq!(target.1, "10.00 vs 5.00 µs = 2.00×");
        assert_eq!(target.2, Some(false));
    }

    #[test]
    fn a_figure_over_its_target_is_not_met_and_missing_runs_give_no_row() {
        let runs = vec![idle("idle-10k", 5.5, 0)];
        let rows = figures(&runs);
        assert_eq!(rows.len(), 1, "only the figure that was measured");
        assert_eq!(rows[0].2, Some(false));
    }
}
