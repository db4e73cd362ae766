//! `handshake`: C workers each doing K full cycles: mint a ticket, TCP connect, upgrade, `auth`,
//! `auth_ok`, polite close. Logins happen before and are not timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use wsgate_testkit::User;

use crate::common::{
    authenticate, close_socket, histogram, latency_json, latency_text, make_users, opt, record,
    round, Failures, Meter, Table, Target,
};

/// Options of `handshake`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent workers.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub workers: usize,
    /// Full cycles per worker.
    #[arg(long, short = 'k', default_value_t = 100)]
    pub cycles: u64,
    /// Stop the workers after this many seconds even if cycles remain.
    #[arg(long, default_value_t = 120.0)]
    pub max_secs: f64,
    /// Users (0 = one per worker; each cycle then also makes the server broadcast `joined`/`left`).
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Untimed cycles per worker before the measured ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    close_failed: u64,
}

struct Stats {
    tally: Mutex<Tally>,
    to_auth_ok: Mutex<hdrhistogram::Histogram<u64>>,
    cycle: Mutex<hdrhistogram::Histogram<u64>>,
    failures: Failures,
}

async fn cycle(target: &Target, user: &User, source: usize, stats: Option<&Stats>) {
    let t0 = Instant::now();
    let opened = async {
        let ticket = target.ticket(&user.token, source).await?;
        let mut ws = target.upgrade(&ticket, source).await?;
        authenticate(&mut ws, &user.token, Duration::from_secs(10)).await?;
        Ok::<_, String>(ws)
    };
    let mut ws = match tokio::time::timeout(Duration::from_secs(30), opened).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(kind)) => {
            if let Some(stats) = stats {
                stats.failures.add(kind);
            }
            return;
        }
        Err(_) => {
            if let Some(stats) = stats {
                stats.failures.add("cycle_timeout");
            }
            return;
        }
    };
    let authed = t0.elapsed();
    let closed = close_socket(&mut ws, target.close_mode, Duration::from_secs(5)).await;
    drop(ws);
    let Some(stats) = stats else { return };
    let whole = t0.elapsed();
    record(&mut stats.to_auth_ok.lock().unwrap(), authed);
    record(&mut stats.cycle.lock().unwrap(), whole);
    let mut tally = stats.tally.lock().unwrap();
    tally.ok += 1;
    if let Err(kind) = closed {
        tally.close_failed += 1;
        drop(tally);
        stats.failures.add(kind);
    }
}

/// Runs the workload; returns the JSON figures and whether it was clean.
pub async fn run(target: Arc<Target>, args: &Args, pids: &[u32]) -> Result<(Value, bool)> {
    let workers = args.workers.max(1);
    let n_users = if args.users == 0 { workers } else { args.users };
    let users = Arc::new(make_users(&target.gw, "bh", n_users, 8).await?);
    let source = Arc::new(AtomicUsize::new(0));

    // Warm-up, untimed and uncounted.
    let mut warm = Vec::new();
    for w in 0..workers {
        let (target, users, source) = (target.clone(), users.clone(), source.clone());
        let n = args.warmup;
        warm.push(tokio::spawn(async move {
            let user = &users[w % users.len()];
            for _ in 0..n {
                cycle(&target, user, source.fetch_add(1, Ordering::Relaxed), None).await;
            }
        }));
    }
    for w in warm {
        let _ = w.await;
    }

    let stats = Arc::new(Stats {
        tally: Mutex::new(Tally::default()),
        to_auth_ok: Mutex::new(histogram()),
        cycle: Mutex::new(histogram()),
        failures: Failures::default(),
    });
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_secs);
    let meter = Meter::start(pids);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (target, users, source, stats) =
            (target.clone(), users.clone(), source.clone(), stats.clone());
        let cycles = args.cycles;
        tasks.push(tokio::spawn(async move {
            let user = &users[w % users.len()];
            for _ in 0..cycles {
                if Instant::now() >= deadline {
                    break;
                }
                let src = source.fetch_add(1, Ordering::Relaxed);
                cycle(&target, user, src, Some(&stats)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let m = meter.stop();

    let tally = stats.tally.lock().unwrap();
    let to_auth_ok = stats.to_auth_ok.lock().unwrap();
    let whole = stats.cycle.lock().unwrap();
    let attempts = workers as u64 * args.cycles;
    let failures = stats.failures.total();
    let rate = round(tally.ok as f64 / m.wall.as_secs_f64(), 1);
    let per = m.server_us_per(tally.ok);

    let mut t = Table::new(
        format!(
            "handshake: {workers} workers x {} cycles (mint, upgrade, auth, auth_ok, close)",
            args.cycles
        ),
        &["metric", "value"],
    );
    t.kv(
        "users / source addresses",
        format!("{n_users} / {}", target.source_count()),
    );
    t.kv(
        "handshakes ok / planned",
        format!("{} / {attempts}", tally.ok),
    );
    t.kv("handshakes/s", rate);
    t.kv("mint→auth_ok p50/p99/max", latency_text(&to_auth_ok));
    t.kv("full cycle p50/p99/max", latency_text(&whole));
    t.kv("server CPU µs/handshake", opt(per));
    t.kv("server CPU % of a core", opt(m.server_pct()));
    t.kv("client CPU % of a core", m.client_pct());
    t.kv("other CPU % (noise)", m.other_pct());
    t.kv("CPU steal % (each CPU)", m.steal_text());
    t.kv("failures", stats.failures.text());
    t.print();

    let json = json!({
        "workload": "handshake",
        "workers": workers,
        "cycles_per_worker": args.cycles,
        "users": n_users,
        "close_mode": format!("{:?}", target.close_mode).to_lowercase(),
        "handshakes": tally.ok,
        "planned": attempts,
        "handshakes_per_s": rate,
        "latency_ms": latency_json(&to_auth_ok),
        "cycle_ms": latency_json(&whole),
        "server_cpu_us_per_handshake": per,
        "measure": m.json(&[]),
        "close_failures": tally.close_failed,
        "failures": stats.failures.json(),
        "server_rss_kb": m.server_after.as_ref().map(|s| s.rss_kb),
    });
    let clean = failures == 0 && tally.ok > 0;
    Ok((json, clean))
}
