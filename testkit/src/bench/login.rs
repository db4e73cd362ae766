//! `login`: L concurrent loops of `POST /api/login` (bcrypt-bound); logins/s, latency, server CPU
//! per login.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use wsgate_testkit::PASSWORD;

use crate::common::{
    histogram, latency_json, latency_text, make_users, opt, record, round, Failures, Meter, Table,
    Target,
};

/// Options of `login`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent login loops.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub workers: usize,
    /// Logins per loop.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub logins: u64,
    /// Stop after this many seconds even if logins remain.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

/// Runs the workload; returns the JSON figures and whether it was clean.
pub async fn run(target: Arc<Target>, args: &Args, pids: &[u32]) -> Result<(Value, bool)> {
    let workers = args.workers.max(1);
    let users = make_users(&target.gw, "bl", workers, 4).await?;
    let hist = Arc::new(Mutex::new(histogram()));
    let failures = Arc::new(Failures::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_secs);
    let meter = Meter::start(pids);
    let mut tasks = Vec::new();
    for user in users.iter().map(|u| u.name.clone()) {
        let (gw, hist, failures) = (target.gw.clone(), hist.clone(), failures.clone());
        let n = args.logins;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for _ in 0..n {
                if Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                let body = json!({"username": user, "password": PASSWORD});
                match gw.post("/api/login", body, None).await {
                    Ok(r) if r.status == 200 && r.body["access_token"].is_string() => {
                        ok += 1;
                        record(&mut hist.lock().unwrap(), t0.elapsed());
                    }
                    Ok(r) => failures.add(format!("login_{}_{}", r.status, r.error())),
                    Err(_) => failures.add("login_request"),
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    let m = meter.stop();
    let hist = hist.lock().unwrap();
    let rate = round(ok as f64 / m.wall.as_secs_f64(), 2);
    let per = m.server_us_per(ok);

    let mut t = Table::new(
        format!("login: {workers} loops x {} logins", args.logins),
        &["metric", "value"],
    );
    t.kv(
        "logins ok / planned",
        format!("{ok} / {}", workers as u64 * args.logins),
    );
    t.kv("logins/s", rate);
    t.kv("latency p50/p99/max", latency_text(&hist));
    t.kv(
        "server CPU ms/login",
        opt(per.map(|us| round(us / 1000.0, 2))),
    );
    t.kv("server CPU % of a core", opt(m.server_pct()));
    t.kv("other CPU % (noise)", m.other_pct());
    t.kv("CPU steal % (each CPU)", m.steal_text());
    t.kv("failures", failures.text());
    t.print();

    let json = json!({
        "workload": "login",
        "workers": workers,
        "logins_per_worker": args.logins,
        "logins": ok,
        "logins_per_s": rate,
        "latency_ms": latency_json(&hist),
        "server_cpu_us_per_login": per,
        "measure": m.json(&[]),
        "failures": failures.json(),
    });
    Ok((json, failures.total() == 0 && ok > 0))
}
