//! A fleet of authenticated sockets, one task each, all reading all the time (so pings are answered
//! and the server never sees a slow consumer because of the tool), a few of them also sending.
//!
//! Bench messages carry `B{phase}:{sender}:{seq}:{ns}` in their text, `ns` being the send time on this
//! process's monotonic clock: every receiver records `now - ns` and counts the message, per phase.
//! Each (sender, seq) has a delivery counter; a message counts as delivered when every socket of the
//! fleet has it, and a sender keeps at most `window` messages not yet delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use wsgate_testkit::User;

use crate::common::{
    close_kind, close_socket, histogram, now_ns, ws_kind, CloseMode, Failures, Target, Ws,
};

/// Latency histograms per phase are sharded so that receivers on several threads rarely meet.
const SHARDS: usize = 16;
/// Longest wait for one socket to open (ticket, TCP, upgrade, auth_ok).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long, sockets not yet started are not opened at all (`open_deadline`).
const OPEN_DEADLINE: Duration = Duration::from_secs(300);
/// Longest wait of a sender for its window to open before it gives up on the phase.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(10);

/// What a socket task is told to do.
pub enum Cmd {
    /// Send bench message `seq` of `sender` in `phase`.
    Send {
        phase: usize,
        sender: usize,
        seq: u64,
    },
}

/// Which rooms the fleet's sockets join after authenticating (none: they stay in `lobby` only).
#[derive(Clone, Default)]
pub struct RoomPlan {
    /// The rooms.
    pub rooms: Vec<Arc<str>>,
    /// Rooms each socket joins: socket `i` joins `per_socket` consecutive rooms from `i % rooms`.
    pub per_socket: usize,
    /// Whether sockets leave `lobby` first (so only their rooms reach them).
    pub leave_lobby: bool,
}

impl RoomPlan {
    /// The rooms socket `i` joins.
    pub fn rooms_of(&self, i: usize) -> Vec<Arc<str>> {
        if self.rooms.is_empty() {
            return Vec::new();
        }
        (0..self.per_socket.min(self.rooms.len()))
            .map(|k| self.rooms[(i + k) % self.rooms.len()].clone())
            .collect()
    }

    /// The room socket `i` sends to (its first).
    pub fn home_of(&self, i: usize) -> Option<Arc<str>> {
        self.rooms_of(i).into_iter().next()
    }
}

/// One measured (or warm-up) phase.
pub struct Phase {
    hists: Vec<Mutex<Histogram<u64>>>,
    /// Delivery counters, `[sender][seq % window]`.
    slots: Vec<Vec<AtomicU32>>,
    /// Bench messages received, all sockets together.
    pub delivered: AtomicU64,
    /// When the last one arrived (`now_ns`).
    pub last_delivery_ns: AtomicU64,
}

impl Phase {
    /// The phase's end-to-end latency histogram (µs).
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in &self.hists {
            let _ = all.add(&*h.lock().unwrap_or_else(|p| p.into_inner()));
        }
        all
    }
}

/// State every socket task shares.
pub struct Shared {
    /// Phases, fixed before the fleet opens.
    pub phases: Vec<Phase>,
    notify: Vec<Notify>,
    /// Sockets in the fleet: a message is delivered when this many have it.
    members: AtomicU32,
    window: usize,
    pad: String,
    /// Failures after the socket opened: closes by the server, read and write errors.
    pub failures: Failures,
    /// Frames that are not bench messages, by type (`joined`, `left`, …).
    pub others: Failures,
    /// Sockets whose task ended before it was told to stop.
    pub dead: AtomicU64,
    /// Failures of the final close, by kind.
    pub close_failures: Failures,
}

impl Shared {
    /// Shared state for `senders` senders with `window` messages in flight each; message texts are
    /// padded to `text_len` characters.
    pub fn new(phases: &[&str], senders: usize, window: usize, text_len: usize) -> Arc<Self> {
        let window = window.max(1);
        Arc::new(Self {
            phases: phases
                .iter()
                .map(|_| Phase {
                    hists: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
                    slots: (0..senders)
                        .map(|_| (0..window).map(|_| AtomicU32::new(0)).collect())
                        .collect(),
                    delivered: AtomicU64::new(0),
                    last_delivery_ns: AtomicU64::new(0),
                })
                .collect(),
            notify: (0..senders).map(|_| Notify::new()).collect(),
            members: AtomicU32::new(u32::MAX),
            window,
            // "B{phase}:{sender}:{seq}:{ns}" is about 26 characters.
            pad: "x".repeat(text_len.saturating_sub(26).min(1900)),
            failures: Failures::default(),
            others: Failures::default(),
            dead: AtomicU64::new(0),
            close_failures: Failures::default(),
        })
    }

    fn on_text(&self, text: &str, shard: usize, counts: &mut [u64]) {
        if let Some((phase, sender, seq, sent)) = parse_bench(text) {
            let Some(p) = self.phases.get(phase) else {
                self.others.add("bench_unknown_phase");
                return;
            };
            let now = now_ns();
            counts[phase] += 1;
            p.delivered.fetch_add(1, Ordering::Relaxed);
            p.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
            let us = (now.saturating_sub(sent) / 1000).max(1);
            p.hists[shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .saturating_record(us);
            if let Some(slot) = p
                .slots
                .get(sender)
                .and_then(|s| s.get(seq as usize % self.window))
            {
                let got = slot.fetch_add(1, Ordering::AcqRel) + 1;
                if got == self.members.load(Ordering::Acquire) {
                    self.notify[sender].notify_one();
                }
            }
            return;
        }
        let kind = frame_type(text);
        if kind == "error" {
            let code = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_default();
            self.failures.add(format!("error_frame_{code}"));
        } else {
            self.others.add(kind);
        }
    }
}

/// `(phase, sender, seq, sent_ns)` of a bench message frame.
fn parse_bench(text: &str) -> Option<(usize, usize, u64, u64)> {
    const KEY: &str = "\"text\":\"B";
    let start = text.find(KEY)? + KEY.len();
    let mut rest = &text.as_bytes()[start..];
    let mut nums = [0u64; 4];
    for (k, n) in nums.iter_mut().enumerate() {
        let mut digits = 0;
        while let Some((&c, tail)) = rest.split_first() {
            if !c.is_ascii_digit() {
                break;
            }
            *n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            digits += 1;
            rest = tail;
        }
        if digits == 0 {
            return None;
        }
        if k < 3 {
            match rest.split_first() {
                Some((b':', tail)) => rest = tail,
                _ => return None,
            }
        }
    }
    Some((nums[0] as usize, nums[1] as usize, nums[2], nums[3]))
}

/// The `type` of a server frame, without a full parse when it comes first.
fn frame_type(text: &str) -> String {
    if let Some(rest) = text.strip_prefix("{\"type\":\"") {
        if let Some(end) = rest.find('"') {
            return rest[..end].to_string();
        }
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unparsed".into())
}

/// What a socket task reports at the end.
pub struct SocketReport {
    /// The socket's index in the fleet.
    pub index: usize,
    /// Bench messages received, per phase.
    pub counts: Vec<u64>,
    /// Still open when told to stop.
    pub alive: bool,
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn next_cmd(cmds: &mut Option<mpsc::Receiver<Cmd>>) -> Option<Cmd> {
    match cmds {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn socket_task(
    idx: usize,
    mut ws: Ws,
    home: Option<Arc<str>>,
    mut cmds: Option<mpsc::Receiver<Cmd>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    close_mode: CloseMode,
) -> SocketReport {
    let shard = idx % SHARDS;
    let mut counts = vec![0u64; shared.phases.len()];
    let alive = loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break true,
            cmd = next_cmd(&mut cmds) => match cmd {
                Some(Cmd::Send { phase, sender, seq }) => {
                    let room = home
                        .as_deref()
                        .map(|r| format!("\"room\":\"{r}\","))
                        .unwrap_or_default();
                    let frame = format!(
                        "{{\"type\":\"message\",{room}\"text\":\"B{phase}:{sender}:{seq}:{}{}\"}}",
                        now_ns(),
                        shared.pad
                    );
                    if let Err(err) = ws.send(Message::text(frame)).await {
                        shared.failures.add(ws_kind("send", &err));
                        break false;
                    }
                }
                None => cmds = None,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => shared.on_text(&text, shard, &mut counts),
                Some(Ok(Message::Close(frame))) => {
                    shared.failures.add(close_kind(frame.as_ref()));
                    break false;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    shared.failures.add(ws_kind("read", &err));
                    break false;
                }
                None => {
                    shared.failures.add("eof");
                    break false;
                }
            },
        }
    };
    if alive {
        if let Err(kind) = close_socket(&mut ws, close_mode, Duration::from_secs(5)).await {
            shared.close_failures.add(kind);
        }
    } else {
        shared.dead.fetch_add(1, Ordering::Relaxed);
    }
    SocketReport {
        index: idx,
        counts,
        alive,
    }
}

/// One socket's open: how long it took and its task, or `None` if it failed.
type Opened = Option<(Duration, JoinHandle<SocketReport>)>;

/// An open fleet.
pub struct Fleet {
    /// Shared state.
    pub shared: Arc<Shared>,
    handles: Vec<JoinHandle<SocketReport>>,
    /// Command channels of the sending sockets (those that opened).
    pub senders: Vec<mpsc::Sender<Cmd>>,
    stop: watch::Sender<bool>,
    /// Sockets authenticated.
    pub open: usize,
    /// Failures while opening, by kind.
    pub open_failures: Failures,
    /// Time to open one socket (mint, TCP, upgrade, auth_ok), µs.
    pub open_latency: Histogram<u64>,
    /// Time to open them all.
    pub open_wall: Duration,
}

/// Opens `n` authenticated sockets, `parallel` at a time, for `users` in rotation, each joining its
/// rooms of `plan`; sockets `sender_at[k]` get a command channel and become sender `k`. A message
/// is delivered when `members` sockets have it (the fleet's size when `None`).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    target: &Arc<Target>,
    users: &[User],
    n: usize,
    sender_at: &[usize],
    parallel: usize,
    shared: Arc<Shared>,
    plan: &RoomPlan,
    members: Option<usize>,
) -> Fleet {
    let (stop, stop_rx) = watch::channel(false);
    let mut channels: HashMap<usize, mpsc::Receiver<Cmd>> = HashMap::new();
    let mut txs: HashMap<usize, mpsc::Sender<Cmd>> = HashMap::new();
    for &at in sender_at {
        let (tx, rx) = mpsc::channel(64);
        channels.insert(at, rx);
        txs.insert(at, tx);
    }
    let channels = Mutex::new(channels);
    let open_failures = Failures::default();
    let started = Instant::now();
    let open_deadline = started + OPEN_DEADLINE;
    let next_source = AtomicUsize::new(0);
    let results: Vec<(usize, Opened)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let user = &users[i % users.len()];
            let target = target.clone();
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let channels = &channels;
            let open_failures = &open_failures;
            let source = next_source.fetch_add(1, Ordering::Relaxed);
            async move {
                let t0 = Instant::now();
                if t0 >= open_deadline {
                    open_failures.add("open_deadline");
                    return (i, None);
                }
                let wait = Duration::from_secs(10);
                let rooms = plan.rooms_of(i);
                let leave_lobby = plan.leave_lobby;
                let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
                    let mut ws = target.connect(user, source, wait).await?;
                    if leave_lobby || !rooms.is_empty() {
                        crate::common::join_rooms(&mut ws, &rooms, leave_lobby, wait).await?;
                    }
                    Ok::<_, crate::common::Kind>(ws)
                })
                .await
                .unwrap_or_else(|_| Err("open_timeout".into()));
                match opened {
                    Ok(ws) => {
                        let took = t0.elapsed();
                        let cmds = channels
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&i);
                        let handle = tokio::spawn(socket_task(
                            i,
                            ws,
                            plan.home_of(i),
                            cmds,
                            shared,
                            stop_rx,
                            target.close_mode,
                        ));
                        (i, Some((took, handle)))
                    }
                    Err(kind) => {
                        open_failures.add(kind);
                        (i, None)
                    }
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let open_wall = started.elapsed();
    let mut open_latency = histogram();
    let mut handles = Vec::with_capacity(n);
    let mut senders = Vec::new();
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    for (i, opened) in results {
        if let Some((took, handle)) = opened {
            crate::common::record(&mut open_latency, took);
            handles.push(handle);
            if let Some(tx) = txs.remove(&i) {
                senders.push(tx);
            }
        }
    }
    let open = handles.len();
    shared
        .members
        .store(members.unwrap_or(open) as u32, Ordering::Release);
    Fleet {
        shared,
        handles,
        senders,
        stop,
        open,
        open_failures,
        open_latency,
        open_wall,
    }
}

/// How one phase sends.
pub struct Plan {
    /// Phase index.
    pub phase: usize,
    /// Messages per second, all senders together; 0 = as fast as the window allows.
    pub rate: f64,
    /// How long senders keep sending.
    pub duration: Duration,
    /// At most this many messages, all senders together.
    pub max_messages: u64,
}

/// What the senders did in one phase.
#[derive(Default, Debug, Clone)]
pub struct Sent {
    /// Messages sent.
    pub messages: u64,
    /// Times a sender found its window full.
    pub window_stalls: u64,
    /// Senders that gave up because their window stayed full for `WINDOW_TIMEOUT`.
    pub window_timeouts: u64,
    /// Senders that could not hand a message to their socket (it died).
    pub send_failures: u64,
    /// Worst lateness of a rate-paced send behind its schedule.
    pub max_behind: Duration,
    /// Wall time from the first send to the last delivery (or the end of the drain).
    pub wall: Duration,
    /// Deliveries still missing when the drain gave up.
    pub undelivered: u64,
    /// Messages sent by each sender.
    pub per_sender: Vec<u64>,
}

impl Fleet {
    /// Sockets each message is delivered to.
    pub fn members(&self) -> u64 {
        u64::from(self.shared.members.load(Ordering::Acquire))
    }

    /// Runs one phase: every sender sends per `plan`, then waits (at most `drain`) until every socket
    /// has every message.
    pub async fn run_phase(&self, plan: &Plan, drain: Duration) -> Sent {
        let s = self.senders.len();
        if s == 0 {
            return Sent::default();
        }
        let start = tokio::time::Instant::now();
        let start_ns = crate::common::now_ns();
        let end = start + plan.duration;
        let members = self.members() as u32;
        let mut tasks = Vec::with_capacity(s);
        for (k, tx) in self.senders.iter().enumerate() {
            let tx = tx.clone();
            let shared = self.shared.clone();
            let phase = plan.phase;
            let rate = plan.rate;
            let quota =
                plan.max_messages / s as u64 + u64::from((k as u64) < plan.max_messages % s as u64);
            tasks.push(tokio::spawn(async move {
                let mut out = Sent::default();
                let window = shared.window as u64;
                let slots = &shared.phases[phase].slots[k];
                for seq in 0..quota {
                    let now = tokio::time::Instant::now();
                    if now >= end {
                        break;
                    }
                    if rate > 0.0 {
                        let due = start
                            + Duration::from_secs_f64((seq as f64 * s as f64 + k as f64) / rate);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due).await;
                        out.max_behind = out.max_behind.max(due.elapsed());
                    }
                    let slot = &slots[(seq % window) as usize];
                    if seq >= window && slot.load(Ordering::Acquire) < members {
                        out.window_stalls += 1;
                        let deadline = tokio::time::Instant::now() + WINDOW_TIMEOUT;
                        let mut timed_out = false;
                        while slot.load(Ordering::Acquire) < members {
                            tokio::select! {
                                _ = shared.notify[k].notified() => {}
                                _ = tokio::time::sleep_until(deadline) => { timed_out = true; break; }
                            }
                        }
                        if timed_out {
                            out.window_timeouts += 1;
                            break;
                        }
                    }
                    slot.store(0, Ordering::Release);
                    if tx.send(Cmd::Send { phase, sender: k, seq }).await.is_err() {
                        out.send_failures += 1;
                        break;
                    }
                    out.messages += 1;
                }
                out
            }));
        }
        let mut sent = Sent::default();
        for task in tasks {
            let part = task.await.unwrap_or_default();
            sent.per_sender.push(part.messages);
            {
                sent.messages += part.messages;
                sent.window_stalls += part.window_stalls;
                sent.window_timeouts += part.window_timeouts;
                sent.send_failures += part.send_failures;
                sent.max_behind = sent.max_behind.max(part.max_behind);
            }
        }
        let phase = &self.shared.phases[plan.phase];
        let expected = sent.messages * self.members();
        let drain_end = tokio::time::Instant::now() + drain;
        while phase.delivered.load(Ordering::Acquire) < expected
            && tokio::time::Instant::now() < drain_end
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered = phase.delivered.load(Ordering::Acquire);
        sent.undelivered = expected.saturating_sub(delivered);
        let last = phase.last_delivery_ns.load(Ordering::Acquire);
        sent.wall = if sent.undelivered == 0 && last > start_ns {
            Duration::from_nanos(last - start_ns)
        } else {
            start.elapsed()
        };
        sent
    }

    /// Stops every socket (each closes politely) and collects the reports.
    pub async fn close(self) -> Vec<SocketReport> {
        let _ = self.stop.send(true);
        let mut reports = Vec::with_capacity(self.handles.len());
        for handle in self.handles {
            if let Ok(report) = handle.await {
                reports.push(report);
            }
        }
        reports
    }
}

/// Per phase: (missing, extra) deliveries, given each phase's messages sent.
pub fn missing(reports: &[SocketReport], sent: &[u64]) -> Vec<(u64, u64)> {
    missing_by(reports, sent.len(), |phase, _| sent[phase])
}

/// Per phase: (missing, extra) deliveries, where socket `i` should have received
/// `expected(phase, i)` messages in the phase.
pub fn missing_by(
    reports: &[SocketReport],
    phases: usize,
    expected: impl Fn(usize, usize) -> u64,
) -> Vec<(u64, u64)> {
    (0..phases)
        .map(|phase| {
            reports.iter().fold((0, 0), |(miss, extra), r| {
                let n = expected(phase, r.index);
                let got = r.counts.get(phase).copied().unwrap_or(0);
                (miss + n.saturating_sub(got), extra + got.saturating_sub(n))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_text() {
        let frame =
            r#"{"type":"message","id":"a-1","from":"u","text":"B2:3:17:123456xxxx","ts":1}"#;
        assert_eq!(parse_bench(frame), Some((2, 3, 17, 123456)));
        assert_eq!(parse_bench(r#"{"type":"message","text":"hello"}"#), None);
        assert_eq!(parse_bench(r#"{"type":"message","text":"B2:3"}"#), None);
        assert_eq!(frame_type(r#"{"type":"joined","user":"x"}"#), "joined");
    }
}
