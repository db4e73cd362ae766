//! `idle`: open N authenticated sockets and hold them; the server's RSS before and with them gives
//! the memory per idle socket. At the end one message checks that every socket is still served.
//! With `--pending` the sockets are upgraded but never authenticated (the memory of a PENDING
//! socket); at the end each one authenticates, which checks that the server still held it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::{
    fd_count, latency_json, latency_text, make_users, opt, round, sample, self_rss_kb,
    smaps_rollup, tcp_sockstat, Meter, Table, Target,
};
use crate::fleet::{self, Plan, Shared};

/// Options of `idle`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sockets to open and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub sockets: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Users the sockets belong to.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Seconds to let the server settle before reading its RSS.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Rooms each socket subscribes to besides `lobby` (the memory of a subscription).
    #[arg(long, default_value_t = 0)]
    pub rooms_per_socket: usize,
    /// Hold the sockets PENDING: upgraded with a ticket, never authenticated. The server's auth
    /// timeout (`WSGATE_AUTH_TIMEOUT_MS`) must outlast the open, settle and hold phases.
    #[arg(long)]
    pub pending: bool,
}

/// (RSS, anonymous RSS) bytes per socket between two readings of the server, for `open` sockets.
fn per_socket(
    before: Option<&crate::common::ProcSample>,
    with: Option<&crate::common::ProcSample>,
    open: usize,
) -> (Option<f64>, Option<f64>) {
    let per = |a: u64, b: u64| round((b as f64 - a as f64) * 1024.0 / open as f64, 0);
    match (before, with) {
        (Some(a), Some(b)) if open > 0 => (
            Some(per(a.rss_kb, b.rss_kb)),
            Some(per(a.rss_anon_kb, b.rss_anon_kb)),
        ),
        _ => (None, None),
    }
}

/// Bytes as KiB, two decimals.
fn kib(bytes: Option<f64>) -> Option<f64> {
    bytes.map(|b| round(b / 1024.0, 2))
}

/// Runs the workload; returns the JSON figures and whether it was clean.
pub async fn run(target: Arc<Target>, args: &Args, pids: &[u32]) -> Result<(Value, bool)> {
    if args.pending {
        return run_pending(target, args, pids).await;
    }
    // Memory is one process's: the first server's.
    let pid = pids.first().copied();
    let n = args.sockets.max(1);
    let settle = Duration::from_secs_f64(args.settle);
    let users = make_users(&target.gw, "bi", args.users.clamp(1, n), 8).await?;
    // The rooms exist before the first RSS reading: only subscriptions are measured.
    let plan = fleet::RoomPlan {
        rooms: if args.rooms_per_socket > 0 {
            crate::common::make_rooms(&target.gw, &users[0], "idle", args.rooms_per_socket).await?
        } else {
            Vec::new()
        },
        per_socket: args.rooms_per_socket,
        leave_lobby: false,
    };
    tokio::time::sleep(settle).await;
    let before = pid.and_then(|p| sample(p).ok());
    let smaps_before = pid.map(smaps_rollup);
    let fds_before = pid.map(fd_count);
    let client_rss_before = self_rss_kb();
    let tcp_before = tcp_sockstat();

    let shared = Shared::new(&["verify"], 1, 1, 16);
    let fleet = fleet::open(
        &target,
        &users,
        n,
        &[0],
        args.parallel,
        shared.clone(),
        &plan,
        None,
    )
    .await;
    let open = fleet.open;
    tokio::time::sleep(settle).await;
    let with = pid.and_then(|p| sample(p).ok());
    let smaps_with = pid.map(smaps_rollup);
    let fds_with = pid.map(fd_count);
    let client_rss_with = self_rss_kb();
    let tcp_with = tcp_sockstat();

    let meter = Meter::start(pids);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let hold = meter.stop();
    let dead_in_hold = shared.dead.load(Ordering::Relaxed);

    // Every socket still served: one message, delivered to all.
    let verify = if fleet.senders.is_empty() {
        None
    } else {
        let plan = Plan {
            phase: 0,
            rate: 0.0,
            duration: Duration::from_secs(10),
            max_messages: 1,
        };
        Some(fleet.run_phase(&plan, Duration::from_secs(20)).await)
    };
    let delivered = shared.phases[0].delivered.load(Ordering::Relaxed);
    let end = pid.and_then(|p| sample(p).ok());
    let open_wall = fleet.open_wall;
    let open_latency = fleet.open_latency.clone();
    let open_failures = fleet.open_failures.json();
    let open_failure_text = fleet.open_failures.text();
    let open_failure_count = fleet.open_failures.total();
    let reports = fleet.close().await;
    let still_open = reports.iter().filter(|r| r.alive).count();
    tokio::time::sleep(settle).await;
    let after_close = pid.and_then(|p| sample(p).ok());

    let (rss_per, anon_per) = per_socket(before.as_ref(), with.as_ref(), open);

    let mut t = Table::new(
        format!("idle: {n} authenticated sockets held {}s", args.hold),
        &["metric", "value"],
    );
    t.kv("sockets open / asked", format!("{open} / {n}"));
    t.kv(
        "open time, rate",
        format!(
            "{:.2}s, {:.0}/s",
            open_wall.as_secs_f64(),
            open as f64 / open_wall.as_secs_f64().max(1e-9)
        ),
    );
    t.kv("open latency p50/p99/max", latency_text(&open_latency));
    t.kv("open failures", &open_failure_text);
    t.kv(
        "server RSS before → with (KiB)",
        format!(
            "{} → {}",
            opt(before.as_ref().map(|s| s.rss_kb)),
            opt(with.as_ref().map(|s| s.rss_kb))
        ),
    );
    t.kv("server RSS per socket (KiB)", opt(kib(rss_per)));
    t.kv("server anon RSS per socket (KiB)", opt(kib(anon_per)));
    t.kv(
        "server RSS at end / after close",
        format!(
            "{} / {}",
            opt(end.as_ref().map(|s| s.rss_kb)),
            opt(after_close.as_ref().map(|s| s.rss_kb))
        ),
    );
    t.kv("server CPU % core while idle", opt(hold.server_pct()));
    t.kv(
        "kernel TCP buffer pages (both ends)",
        format!("{} → {}", tcp_before["mem"], tcp_with["mem"]),
    );
    t.kv("server fds with sockets", opt(fds_with));
    t.kv("died during hold", dead_in_hold);
    t.kv(
        "verify: delivered / sockets",
        format!("{delivered} / {open}"),
    );
    t.kv("still open at the end", still_open);
    t.kv(
        "client RSS per socket (KiB)",
        round(
            (client_rss_with as f64 - client_rss_before as f64) / open.max(1) as f64,
            2,
        ),
    );
    t.kv("failures after open", shared.failures.text());
    t.kv("final close failures", shared.close_failures.text());
    t.print();

    let clean = open == n
        && open_failure_count == 0
        && shared.failures.total() == 0
        && shared.close_failures.total() == 0
        && dead_in_hold == 0
        && delivered == open as u64
        && still_open == open;
    let json = json!({
        "workload": "idle",
        "sockets": n,
        "rooms_per_socket": args.rooms_per_socket,
        "sockets_open": open,
        "users": users.len(),
        "hold_s": args.hold,
        "open_s": round(open_wall.as_secs_f64(), 3),
        "open_per_s": round(open as f64 / open_wall.as_secs_f64().max(1e-9), 1),
        "open_latency_ms": latency_json(&open_latency),
        "open_failures": open_failures,
        "failures": shared.failures.json(),
        "close_failures": shared.close_failures.json(),
        "other_frames": shared.others.json(),
        "died_during_hold": dead_in_hold,
        "verify_delivered": delivered,
        "verify_missing": (open as u64).saturating_sub(delivered),
        "verify_undelivered_at_drain": verify.map(|v| v.undelivered),
        "still_open_at_end": still_open,
        "server_rss_kb_before": before.as_ref().map(|s| s.rss_kb),
        "server_rss_kb_with": with.as_ref().map(|s| s.rss_kb),
        "server_rss_kb_end": end.as_ref().map(|s| s.rss_kb),
        "server_rss_kb_after_close": after_close.as_ref().map(|s| s.rss_kb),
        "server_anon_kb_before": before.as_ref().map(|s| s.rss_anon_kb),
        "server_anon_kb_with": with.as_ref().map(|s| s.rss_anon_kb),
        "server_rss_bytes_per_socket": rss_per,
        "server_anon_bytes_per_socket": anon_per,
        "server_file_kb_with": with.as_ref().map(|s| s.rss_file_kb),
        "server_rss_kib_per_socket": kib(rss_per),
        "server_threads": with.as_ref().map(|s| s.threads),
        "server_fds_before": fds_before,
        "server_fds_with": fds_with,
        "server_smaps_before": smaps_before,
        "server_smaps_with": smaps_with,
        "idle_measure": hold.json(&[]),
        "kernel_tcp_before": tcp_before,
        "kernel_tcp_with": tcp_with,
        "client_rss_kb_before": client_rss_before,
        "client_rss_kb_with": client_rss_with,
    });
    Ok((json, clean))
}

/// `--pending`: N sockets upgraded with a ticket and held without `auth`.
async fn run_pending(target: Arc<Target>, args: &Args, pids: &[u32]) -> Result<(Value, bool)> {
    use futures_util::StreamExt;

    let pid = pids.first().copied();
    let n = args.sockets.max(1);
    let settle = Duration::from_secs_f64(args.settle);
    let users = make_users(&target.gw, "bp", args.users.clamp(1, n), 8).await?;
    tokio::time::sleep(settle).await;
    let before = pid.and_then(|p| sample(p).ok());
    let failures = crate::common::Failures::default();

    let started = std::time::Instant::now();
    let opened: Vec<(usize, crate::common::Ws)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let target = &target;
            let user = &users[i % users.len()];
            async move {
                let ticket = target.ticket(&user.token, i).await?;
                target.upgrade(&ticket, i).await.map(|ws| (i, ws))
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .filter_map(|r| {
            let kept = match r {
                Ok(socket) => Some(socket),
                Err(kind) => {
                    failures.add(kind);
                    None
                }
            };
            std::future::ready(kept)
        })
        .collect()
        .await;
    let open_wall = started.elapsed();
    let open = opened.len();
    tokio::time::sleep(settle).await;
    let with = pid.and_then(|p| sample(p).ok());
    let smaps_with = pid.map(smaps_rollup);
    let meter = Meter::start(pids);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let hold = meter.stop();

    // Each socket authenticates now: `auth_ok` proves the server held it PENDING all along.
    let wait = Duration::from_secs(20);
    let authenticated: Vec<crate::common::Ws> = futures_util::stream::iter(opened)
        .map(|(i, mut ws)| {
            let user = &users[i % users.len()];
            async move {
                crate::common::authenticate(&mut ws, &user.token, wait)
                    .await
                    .map(|()| ws)
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .filter_map(|r| {
            let kept = match r {
                Ok(ws) => Some(ws),
                Err(kind) => {
                    failures.add(format!("after_hold_{kind}"));
                    None
                }
            };
            std::future::ready(kept)
        })
        .collect()
        .await;
    let held = authenticated.len();
    let close_failures = crate::common::Failures::default();
    let mode = target.close_mode;
    futures_util::stream::iter(authenticated)
        .for_each_concurrent(args.parallel.max(1), |mut ws| {
            let close_failures = &close_failures;
            async move {
                if let Err(kind) = crate::common::close_socket(&mut ws, mode, wait).await {
                    close_failures.add(kind);
                }
            }
        })
        .await;

    let (rss_per, anon_per) = per_socket(before.as_ref(), with.as_ref(), open);
    let mut t = Table::new(
        format!(
            "idle --pending: {n} upgraded, unauthenticated sockets held {}s",
            args.hold
        ),
        &["metric", "value"],
    );
    t.kv("sockets open / asked", format!("{open} / {n}"));
    t.kv(
        "open time, rate",
        format!(
            "{:.2}s, {:.0}/s",
            open_wall.as_secs_f64(),
            open as f64 / open_wall.as_secs_f64().max(1e-9)
        ),
    );
    t.kv(
        "server RSS before → with (KiB)",
        format!(
            "{} → {}",
            opt(before.as_ref().map(|s| s.rss_kb)),
            opt(with.as_ref().map(|s| s.rss_kb))
        ),
    );
    t.kv("server RSS per pending socket (KiB)", opt(kib(rss_per)));
    t.kv("server anon RSS per socket (KiB)", opt(kib(anon_per)));
    t.kv("server CPU % core while pending", opt(hold.server_pct()));
    t.kv("authenticated after the hold", format!("{held} / {open}"));
    t.kv("failures", failures.text());
    t.kv("close failures", close_failures.text());
    t.print();

    let clean = open == n && held == open && failures.total() == 0 && close_failures.total() == 0;
    let json = json!({
        "workload": "idle",
        "pending": true,
        "sockets": n,
        "rooms_per_socket": 0,
        "sockets_open": open,
        "users": users.len(),
        "hold_s": args.hold,
        "open_s": round(open_wall.as_secs_f64(), 3),
        "open_per_s": round(open as f64 / open_wall.as_secs_f64().max(1e-9), 1),
        "failures": failures.json(),
        "close_failures": close_failures.json(),
        "verify_delivered": held,
        "verify_missing": open - held,
        "server_rss_kb_before": before.as_ref().map(|s| s.rss_kb),
        "server_rss_kb_with": with.as_ref().map(|s| s.rss_kb),
        "server_anon_kb_before": before.as_ref().map(|s| s.rss_anon_kb),
        "server_anon_kb_with": with.as_ref().map(|s| s.rss_anon_kb),
        "server_rss_bytes_per_socket": rss_per,
        "server_anon_bytes_per_socket": anon_per,
        "server_rss_kib_per_socket": kib(rss_per),
        "server_smaps_with": smaps_with,
        "idle_measure": hold.json(&[]),
    });
    Ok((json, clean))
}
