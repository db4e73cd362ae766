//! `fanout`: N authenticated sockets in one room (`lobby`, or with `--rooms K` in K rooms of N/K,
//! one sender each), S of them sending, at a total rate R or as fast as a bounded window allows;
//! deliveries/s, end-to-end latency, missing deliveries, server CPU per delivered frame. With `--login-storm L` a second phase repeats the first while L loops log in
//! back to back (bcrypt), so the two latencies can be compared.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::sync::watch;
use wsgate_testkit::{Gateway, PASSWORD};

use crate::common::{
    histogram, latency_json, latency_text, make_users, opt, record, round, Failures, Meter, Table,
    Target,
};
use crate::fleet::{self, Plan, Shared};

/// Options of `fanout`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sockets in the room (all authenticated, all receiving).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub sockets: usize,
    /// Sockets that also send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second into the room, all senders together; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages per sender not yet delivered to every socket, at most.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Seconds of sending per measured phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// At most this many messages per measured phase.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Seconds of untimed sending first.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Users the sockets belong to (presence: only a user's first socket is announced).
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Characters of message text.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Run a second phase with this many concurrent login loops (bcrypt) and compare.
    #[arg(long, default_value_t = 0)]
    pub login_storm: usize,
    /// Seconds to wait for the last deliveries of a phase.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Rooms (0: everyone in `lobby`). With K rooms the sockets leave `lobby` and join room
    /// `i % K`; K > 1 needs N divisible by K and means one sender per room (`--senders` is ignored).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// Extra sockets that stay connected in no room at all (they leave `lobby`): the node holds
    /// them, but no message is for them.
    #[arg(long, default_value_t = 0)]
    pub idle_sockets: usize,
}

struct Storm {
    logins: Mutex<(u64, hdrhistogram::Histogram<u64>)>,
    failures: Failures,
}

async fn storm_loop(gw: Gateway, user: String, storm: Arc<Storm>, mut stop: watch::Receiver<bool>) {
    // Bounded: stops when told, and in any case after 10 minutes.
    let cap = Instant::now() + Duration::from_secs(600);
    while !*stop.borrow() && Instant::now() < cap {
        let t0 = Instant::now();
        let body = json!({"username": user, "password": PASSWORD});
        let reply = tokio::select! {
            r = gw.post("/api/login", body, None) => r,
            _ = crate::fleet::stopped(&mut stop) => break,
        };
        match reply {
            Ok(r) if r.status == 200 => {
                let mut l = storm.logins.lock().unwrap();
                l.0 += 1;
                record(&mut l.1, t0.elapsed());
            }
            Ok(r) => storm
                .failures
                .add(format!("login_{}_{}", r.status, r.error())),
            Err(_) => storm.failures.add("login_request"),
        }
    }
}

/// Runs the workload; returns the JSON figures and whether it was clean.
pub async fn run(target: Arc<Target>, args: &Args, pids: &[u32]) -> Result<(Value, bool)> {
    let n = args.sockets.max(1);
    let rooms = args.rooms;
    if rooms > 0 && n % rooms != 0 {
        bail!("--sockets ({n}) must be a multiple of --rooms ({rooms})");
    }
    let s = if rooms > 1 {
        rooms
    } else {
        args.senders.clamp(1, n)
    };
    if args.text_len > 2000 {
        bail!("--text-len is at most 2000");
    }
    let users = make_users(&target.gw, "bf", args.users.clamp(1, n), 8).await?;
    let storm_user = if args.login_storm > 0 {
        Some(make_users(&target.gw, "bs", 1, 1).await?.remove(0).name)
    } else {
        None
    };
    let mut phase_names = vec!["warmup", "quiet"];
    if storm_user.is_some() {
        phase_names.push("login_storm");
    }
    let shared = Shared::new(&phase_names, s, args.window, args.text_len);
    // With rooms, socket i is in room i % K: sockets 0..K are one sender per room.
    let sender_at: Vec<usize> = if rooms > 1 {
        (0..s).collect()
    } else {
        (0..s).map(|k| k * (n / s)).collect()
    };
    let plan = fleet::RoomPlan {
        rooms: if rooms > 0 {
            crate::common::make_rooms(&target.gw, &users[0], "fan", rooms).await?
        } else {
            Vec::new()
        },
        per_socket: 1,
        leave_lobby: rooms > 0,
    };
    let room_size = (rooms > 0).then(|| n / rooms);
    let fleet = fleet::open(
        &target,
        &users,
        n,
        &sender_at,
        64,
        shared.clone(),
        &plan,
        room_size,
    )
    .await;
    let bystanders = if args.idle_sockets > 0 {
        let nowhere = fleet::RoomPlan {
            leave_lobby: true,
            ..Default::default()
        };
        let quiet = Shared::new(&phase_names, 1, 1, 16);
        Some(
            fleet::open(
                &target,
                &users,
                args.idle_sockets,
                &[],
                64,
                quiet,
                &nowhere,
                None,
            )
            .await,
        )
    } else {
        None
    };
    // Let presence settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let drain = Duration::from_secs_f64(args.drain);
    let mut sent = vec![0u64; phase_names.len()];
    let mut per_sender = vec![Vec::new(); phase_names.len()];
    let mut results = Vec::new();
    if fleet.open > 0 && !fleet.senders.is_empty() {
        if args.warmup > 0.0 {
            let plan = Plan {
                phase: 0,
                rate: args.rate,
                duration: Duration::from_secs_f64(args.warmup),
                max_messages: args.max_messages,
            };
            let out = fleet.run_phase(&plan, drain).await;
            sent[0] = out.messages;
            per_sender[0] = out.per_sender;
        }
        for phase in 1..phase_names.len() {
            let storm = Arc::new(Storm {
                logins: Mutex::new((0, histogram())),
                failures: Failures::default(),
            });
            let (stop_storm, stop_rx) = watch::channel(false);
            let meter = Meter::start(pids);
            let mut loops = Vec::new();
            if phase_names[phase] == "login_storm" {
                for _ in 0..args.login_storm {
                    let user = storm_user.clone().unwrap_or_default();
                    loops.push(tokio::spawn(storm_loop(
                        target.gw.clone(),
                        user,
                        storm.clone(),
                        stop_rx.clone(),
                    )));
                }
            }
            let plan = Plan {
                phase,
                rate: args.rate,
                duration: Duration::from_secs_f64(args.duration),
                max_messages: args.max_messages,
            };
            let out = fleet.run_phase(&plan, drain).await;
            let m = meter.stop();
            let _ = stop_storm.send(true);
            for l in loops {
                let _ = l.await;
            }
            sent[phase] = out.messages;
            per_sender[phase] = out.per_sender.clone();
            results.push((phase, out, m, storm));
        }
    }
    let members = fleet.members();
    let open = fleet.open;
    let open_wall = fleet.open_wall;
    let open_latency = fleet.open_latency.clone();
    let open_failures = fleet.open_failures.json();
    let open_failure_count = fleet.open_failures.total();
    let reports = fleet.close().await;
    let (bystanders_open, bystander_frames) = match bystanders {
        Some(b) => {
            let open = b.open;
            let shared = b.shared.clone();
            let reports = b.close().await;
            let heard: u64 = reports.iter().flat_map(|r| r.counts.iter()).sum();
            (open, heard + shared.failures.total())
        }
        None => (0, 0),
    };
    let missing = if rooms > 1 {
        // Socket i hears only its room's sender, sender i % K.
        fleet::missing_by(&reports, sent.len(), |phase, i| {
            per_sender[phase].get(i % rooms).copied().unwrap_or(0)
        })
    } else {
        fleet::missing(&reports, &sent)
    };

    let mut header = vec!["metric".to_string()];
    header.extend(results.iter().map(|(p, ..)| phase_names[*p].to_string()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mode = if args.rate > 0.0 {
        format!("{} msg/s total", args.rate)
    } else {
        format!("full rate, window {}/sender", args.window)
    };
    let layout = match rooms {
        0 => "lobby".to_string(),
        k => format!("{k} rooms of {}", n / k),
    };
    let mut t = Table::new(
        format!("fanout: {open}/{n} sockets in {layout}, {s} senders, {mode}"),
        &header,
    );
    let mut row = |name: &str, f: &dyn Fn(usize) -> String| {
        let mut r = vec![name.to_string()];
        r.extend((0..results.len()).map(f));
        t.row(r);
    };
    row("messages sent", &|i| results[i].1.messages.to_string());
    row("deliveries", &|i| {
        shared.phases[results[i].0]
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string()
    });
    row("deliveries/s", &|i| {
        let (p, out, ..) = &results[i];
        let d = shared.phases[*p]
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        format!("{:.0}", d as f64 / out.wall.as_secs_f64().max(1e-9))
    });
    row("latency p50/p99/max", &|i| {
        latency_text(&shared.phases[results[i].0].latency())
    });
    row("missing / extra", &|i| {
        let (miss, extra) = missing[results[i].0];
        format!("{miss} / {extra}")
    });
    row("server CPU µs/delivery", &|i| {
        let (p, _, m, _) = &results[i];
        let d = shared.phases[*p]
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        opt(m.server_us_per(d))
    });
    row("server user CPU µs/delivery", &|i| {
        let (p, _, m, _) = &results[i];
        let d = shared.phases[*p]
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        opt(m.server_user_us_per(d))
    });
    row("server CPU % core", &|i| opt(results[i].2.server_pct()));
    row("client CPU % core", &|i| {
        results[i].2.client_pct().to_string()
    });
    row("CPU steal % (each CPU)", &|i| results[i].2.steal_text());
    row("window stalls", &|i| results[i].1.window_stalls.to_string());
    row("sender max behind", &|i| {
        format!("{:.1} ms", results[i].1.max_behind.as_secs_f64() * 1000.0)
    });
    row("logins (storm)", &|i| {
        let l = results[i].3.logins.lock().unwrap();
        if l.0 == 0 {
            "-".into()
        } else {
            format!("{} ({})", l.0, latency_text(&l.1))
        }
    });
    t.print();
    println!(
        "open: {open}/{n} in {:.2}s, open latency {}; failures after open: {}; final close failures: {}; open failures: {}; other frames: {}",
        open_wall.as_secs_f64(),
        latency_text(&open_latency),
        shared.failures.text(),
        shared.close_failures.text(),
        fleet_failures_text(&open_failures),
        shared.others.text()
    );

    let mut phases = Vec::new();
    if args.idle_sockets > 0 {
        println!(
            "bystanders: {bystanders_open}/{} open in no room; bench frames or failures among them: {bystander_frames}",
            args.idle_sockets
        );
    }
    let mut clean = open == n
        && bystanders_open == args.idle_sockets
        && bystander_frames == 0
        && open_failure_count == 0
        && shared.failures.total() == 0
        && shared.close_failures.total() == 0;
    for (p, out, m, storm) in &results {
        let phase = &shared.phases[*p];
        let delivered = phase.delivered.load(std::sync::atomic::Ordering::Relaxed);
        let (miss, extra) = missing[*p];
        clean &= miss == 0
            && extra == 0
            && out.window_timeouts == 0
            && out.send_failures == 0
            && out.messages > 0
            && storm.failures.total() == 0;
        let logins = storm.logins.lock().unwrap();
        let mut v = json!({
            "phase": phase_names[*p],
            "messages": out.messages,
            "deliveries": delivered,
            "expected": out.messages * members,
            "missing": miss,
            "extra": extra,
            "undelivered_at_drain": out.undelivered,
            "wall_s": round(out.wall.as_secs_f64(), 3),
            "messages_per_s": round(out.messages as f64 / out.wall.as_secs_f64().max(1e-9), 1),
            "deliveries_per_s": round(delivered as f64 / out.wall.as_secs_f64().max(1e-9), 1),
            "latency_ms": latency_json(&phase.latency()),
            "server_cpu_us_per_delivery": m.server_us_per(delivered),
            "server_user_cpu_us_per_delivery": m.server_user_us_per(delivered),
            "measure": m.json(&[]),
            "window_stalls": out.window_stalls,
            "window_timeouts": out.window_timeouts,
            "sender_max_behind_ms": round(out.max_behind.as_secs_f64() * 1000.0, 3),
        });
        if phase_names[*p] == "login_storm" {
            v["logins"] = json!(logins.0);
            v["logins_per_s"] = json!(round(logins.0 as f64 / m.wall.as_secs_f64(), 2));
            v["login_latency_ms"] = latency_json(&logins.1);
            v["login_failures"] = storm.failures.json();
        }
        phases.push(v);
    }
    let p99 = |name: &str| {
        phases
            .iter()
            .find(|v| v["phase"] == name)
            .and_then(|v| v["latency_ms"]["p99"].as_f64())
    };
    let storm_ratio = match (p99("quiet"), p99("login_storm")) {
        (Some(q), Some(st)) if q > 0.0 => Some(round(st / q, 2)),
        _ => None,
    };
    if let Some(r) = storm_ratio {
        println!("login storm: p99 latency {r}x the quiet phase's");
    }
    let json = json!({
        "workload": "fanout",
        "sockets": n,
        "rooms": rooms,
        "idle_sockets": args.idle_sockets,
        "sockets_open": open,
        "senders": s,
        "rate": args.rate,
        "window": args.window,
        "users": users.len(),
        "text_len": args.text_len,
        "login_storm": args.login_storm,
        "open_s": round(open_wall.as_secs_f64(), 3),
        "open_latency_ms": latency_json(&open_latency),
        "open_failures": open_failures,
        "failures": shared.failures.json(),
        "close_failures": shared.close_failures.json(),
        "other_frames": shared.others.json(),
        "phases": phases,
        "storm_p99_ratio": storm_ratio,
    });
    Ok((json, clean))
}

fn fleet_failures_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}
