//! Plumbing shared by the workloads: the target and its loopback source addresses, raw sockets,
//! failure kinds, latency histograms, the server's /proc figures, and output.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use wsgate_testkit::{Gateway, User};

/// A raw client socket (no TLS, no focus filter: the tool sees every frame).
pub type Ws = WebSocketStream<TcpStream>;

/// A failure kind, e.g. `upgrade_401_ticket_used` or `close_1013_slow_consumer`.
pub type Kind = String;

/// Process-local time base: sender and receivers live in this process, so a monotonic clock works.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since `base()`.
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// The server under test and how to reach it.
pub struct Target {
    /// REST client (tickets, logins).
    pub gw: Gateway,
    /// Every node sockets are opened on, round robin: the server above, then `--nodes` (a
    /// cluster driven directly instead of through its load balancer).
    nodes: Vec<(Gateway, SocketAddrV4)>,
    /// Source addresses sockets are opened from, rotating.
    sources: Vec<Ipv4Addr>,
    /// Client read buffer per socket.
    read_buffer: usize,
    /// How sockets are closed.
    pub close_mode: CloseMode,
}

impl Target {
    /// `url` must be `http://` on a loopback IPv4 address (or `localhost`); anything else is refused.
    pub fn new(
        url: &str,
        nodes: &[String],
        source_ips: u8,
        read_buffer: usize,
        close_mode: CloseMode,
    ) -> Result<Self> {
        let addr = loopback_addr(url)?;
        let mut all = vec![(Gateway::new(&format!("http://{addr}"))?, addr)];
        for node in nodes {
            let addr = loopback_addr(node)?;
            all.push((Gateway::new(&format!("http://{addr}"))?, addr));
        }
        let sources = (1..=source_ips.max(1))
            .map(|x| Ipv4Addr::new(127, 0, 0, x))
            .collect();
        Ok(Self {
            gw: all[0].0.clone(),
            nodes: all,
            sources,
            read_buffer,
            close_mode,
        })
    }

    /// How many nodes sockets are spread over.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many source addresses are in rotation.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }
}

/// `url` as a loopback address: `http://` on 127.0.0.0/8 (or `localhost`); anything else is refused.
fn loopback_addr(url: &str) -> Result<SocketAddrV4> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad --url {url}"))?;
    if parsed.scheme() != "http" {
        bail!("--url must be http://127.0.0.x:PORT");
    }
    let ip = match parsed.host_str() {
        Some("localhost") => Ipv4Addr::LOCALHOST,
        Some(host) => host
            .parse::<Ipv4Addr>()
            .map_err(|_| anyhow!("--url must name a loopback IPv4 address, got {url}"))?,
        None => bail!("--url has no host: {url}"),
    };
    if !ip.is_loopback() {
        bail!("wsgate-bench only loads servers on 127.0.0.0/8, got {ip}");
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| anyhow!("no port in {url}"))?;
    Ok(SocketAddrV4::new(ip, port))
}

impl Target {
    /// Mints a ticket for `token` on node `i % nodes`; failures are classified.
    pub async fn ticket(&self, token: &str, i: usize) -> Result<String, Kind> {
        let reply = self.nodes[i % self.nodes.len()]
            .0
            .post_empty("/api/ws-ticket", Some(token))
            .await
            .map_err(|e| format!("ticket_request_{}", short_error(&e.to_string())))?;
        match (reply.status, reply.body["ticket"].as_str()) {
            (201, Some(ticket)) => Ok(ticket.to_string()),
            (status, _) => Err(format!("ticket_{status}_{}", reply.error())),
        }
    }

    /// TCP connect from source address number `i` (rotating) to node `i % nodes`, then the
    /// WebSocket upgrade with `ticket` and no `Origin` header.
    pub async fn upgrade(&self, ticket: &str, i: usize) -> Result<Ws, Kind> {
        let source = self.sources[i % self.sources.len()];
        let socket = TcpSocket::new_v4().map_err(|e| io_kind("socket", &e))?;
        bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::from((source, 0)))
            .map_err(|e| io_kind("bind", &e))?;
        let addr = self.nodes[i % self.nodes.len()].1;
        let stream = socket
            .connect(SocketAddr::V4(addr))
            .await
            .map_err(|e| io_kind("connect", &e))?;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(0);
        let url = format!("ws://{addr}/ws?ticket={ticket}");
        match tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let code = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_default();
                Err(format!("upgrade_{}_{code}", resp.status().as_u16()))
            }
            Err(err) => Err(ws_kind("upgrade", &err)),
        }
    }

    /// Mint, upgrade, `auth`, wait for `auth_ok`: one authenticated socket, on node `i % nodes`
    /// (the ticket is minted there too).
    pub async fn connect(&self, user: &User, i: usize, wait: Duration) -> Result<Ws, Kind> {
        let ticket = self.ticket(&user.token, i).await?;
        let mut ws = self.upgrade(&ticket, i).await?;
        authenticate(&mut ws, &user.token, wait).await?;
        Ok(ws)
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: the port is chosen at `connect`, by the full 4-tuple, so binding a source
/// address does not use up the ephemeral range per address.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a properly sized option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Sends each frame and waits for its reply: `subscribed` (or `unsubscribed`) of that room.
pub async fn join_rooms(
    ws: &mut Ws,
    rooms: &[Arc<str>],
    leave_lobby: bool,
    wait: Duration,
) -> Result<(), Kind> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut requests: Vec<(Value, &str, &str)> = Vec::new();
    if leave_lobby {
        requests.push((
            json!({"type": "unsubscribe", "room": "lobby"}),
            "unsubscribed",
            "lobby",
        ));
    }
    for room in rooms {
        requests.push((
            json!({"type": "subscribe", "room": &**room}),
            "subscribed",
            room,
        ));
    }
    for (frame, reply, room) in requests {
        ws.send(Message::text(frame.to_string()))
            .await
            .map_err(|e| ws_kind("subscribe_send", &e))?;
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err("subscribe_timeout".into()),
                Ok(None) => return Err("subscribe_eof".into()),
                Ok(Some(Err(err))) => return Err(ws_kind("subscribe_read", &err)),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if frame["room"] != room {
                        continue;
                    }
                    match frame["type"].as_str() {
                        Some(t) if t == reply => break,
                        Some("error") => {
                            return Err(format!(
                                "subscribe_error_{}",
                                frame["code"].as_str().unwrap_or("")
                            ))
                        }
                        _ => continue,
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Err(close_kind(frame.as_ref())),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
    Ok(())
}

/// Creates public rooms `bench-<tag>-0..n` as `owner` (existing ones are fine); their ids.
pub async fn make_rooms(gw: &Gateway, owner: &User, tag: &str, n: usize) -> Result<Vec<Arc<str>>> {
    let ids: Vec<String> = (0..n).map(|i| format!("bench-{tag}-{i}")).collect();
    let results: Vec<Result<()>> = futures_util::stream::iter(ids.clone())
        .map(|id| async move {
            let reply = gw
                .post(
                    "/api/rooms",
                    json!({"id": id, "kind": "public"}),
                    Some(&owner.token),
                )
                .await?;
            if reply.status != 201 && reply.error() != "room_exists" {
                bail!("creating room {id}: {} {}", reply.status, reply.body);
            }
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(ids.into_iter().map(Arc::from).collect())
}

/// Sends `auth` and waits for `auth_ok` (skipping anything else, e.g. presence).
pub async fn authenticate(ws: &mut Ws, token: &str, wait: Duration) -> Result<(), Kind> {
    let auth = json!({"type": "auth", "token": token}).to_string();
    ws.send(Message::text(auth))
        .await
        .map_err(|e| ws_kind("auth_send", &e))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("auth_ok_timeout".into()),
            Ok(None) => return Err("auth_eof".into()),
            Ok(Some(Err(err))) => return Err(ws_kind("auth_read", &err)),
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match frame["type"].as_str() {
                    Some("auth_ok") => return Ok(()),
                    Some("error") => {
                        return Err(format!(
                            "auth_error_{}",
                            frame["code"].as_str().unwrap_or("")
                        ))
                    }
                    _ => continue,
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return Err(close_kind(frame.as_ref())),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// How the client ends a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CloseMode {
    /// RFC 6455: send a close frame, wait for the server's close frame and its TCP close.
    Reply,
    /// Send a close frame and drop the connection without waiting for the server's answer.
    Send,
}

/// Closes the socket as `mode` says; in `Reply` mode a missing close reply is `close_no_reply`.
pub async fn close_socket(ws: &mut Ws, mode: CloseMode, wait: Duration) -> Result<(), Kind> {
    match mode {
        CloseMode::Reply => close_politely(ws, wait).await,
        CloseMode::Send => {
            let sent = tokio::time::timeout(wait, ws.send(Message::Close(None))).await;
            match sent {
                Ok(Ok(())) | Ok(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Ok(()),
                Ok(Err(err)) => Err(ws_kind("close_send", &err)),
                Err(_) => Err("close_send_timeout".into()),
            }
        }
    }
}

/// Closes politely: our close frame, then read until the server's close and EOF (bounded by `wait`).
pub async fn close_politely(ws: &mut Ws, wait: Duration) -> Result<(), Kind> {
    let done = async {
        if let Err(err) = ws.close(None).await {
            return match err {
                WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(()),
                err => Err(ws_kind("close_send", &err)),
            };
        }
        loop {
            match ws.next().await {
                None => return Ok(()),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(()),
                Some(Err(WsError::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ))) => return Err("close_no_reply".into()),
                Some(Err(err)) => return Err(ws_kind("close_read", &err)),
                Some(Ok(_)) => continue,
            }
        }
    };
    tokio::time::timeout(wait, done)
        .await
        .unwrap_or_else(|_| Err("close_timeout".into()))
}

/// `close_CODE_REASON` of a server close.
pub fn close_kind(frame: Option<&CloseFrame>) -> Kind {
    match frame {
        Some(f) => format!("close_{}_{}", u16::from(f.code), f.reason),
        None => "close_1005".into(),
    }
}

/// A short, stable name for a WebSocket error.
pub fn ws_kind(stage: &str, err: &WsError) -> Kind {
    match err {
        WsError::Io(io) => io_kind(stage, io),
        WsError::ConnectionClosed | WsError::AlreadyClosed => format!("{stage}_closed"),
        WsError::Protocol(p) => format!("{stage}_protocol_{}", short_error(&p.to_string())),
        WsError::Capacity(_) => format!("{stage}_capacity"),
        other => format!("{stage}_{}", short_error(&other.to_string())),
    }
}

/// A short, stable name for an I/O error (errno names for the ones load testing meets).
pub fn io_kind(stage: &str, err: &std::io::Error) -> Kind {
    let name = match err.raw_os_error() {
        Some(libc::EMFILE) => "emfile".to_string(),
        Some(libc::ENFILE) => "enfile".to_string(),
        Some(libc::EADDRNOTAVAIL) => "eaddrnotavail".to_string(),
        Some(libc::EADDRINUSE) => "eaddrinuse".to_string(),
        Some(libc::ECONNREFUSED) => "econnrefused".to_string(),
        Some(libc::ECONNRESET) => "econnreset".to_string(),
        Some(libc::ETIMEDOUT) => "etimedout".to_string(),
        Some(libc::EPIPE) => "epipe".to_string(),
        Some(n) => format!("errno{n}"),
        None => format!("{:?}", err.kind()).to_lowercase(),
    };
    format!("{stage}_{name}")
}

/// First few words of an error message, as an identifier.
pub fn short_error(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(4)
        .collect::<Vec<_>>()
        .join("_")
        .to_lowercase()
}

/// Failures by kind.
#[derive(Default)]
pub struct Failures(Mutex<BTreeMap<Kind, u64>>);

impl Failures {
    /// Counts one failure of `kind`.
    pub fn add(&self, kind: impl Into<Kind>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.into())
            .or_insert(0) += 1;
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// `{"kind": count, …}`.
    pub fn json(&self) -> Value {
        json!(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// `kind=count, …` or `none`.
    pub fn text(&self) -> String {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return "none".into();
        }
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records a duration into a µs histogram.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

fn ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 3)
}

/// Rounds to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `{"count","p50","p90","p99","p999","max","mean"}` in milliseconds.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": round(h.mean() / 1000.0, 3),
    })
}

/// `p50 / p99 / max ms` for the table.
pub fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "{:.2} / {:.2} / {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// Raises RLIMIT_NOFILE to its hard limit; returns (soft, hard) after.
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// This process's CPU time (user + system).
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills a zeroed struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// This process's resident set, in KiB.
pub fn self_rss_kb() -> u64 {
    status_kb(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        "VmRSS",
    )
}

fn status_kb(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The whole process's CPU time in nanoseconds, exited threads included, from the kernel's
/// per-process CPU clock (`clock_getcpuclockid`); `None` if that clock cannot be read.
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: out-pointers to stack values.
    unsafe {
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
            || libc::clock_gettime(clock, &mut ts) != 0
        {
            return None;
        }
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// One reading of the server process.
#[derive(Clone)]
pub struct ProcSample {
    /// Process CPU clock, ns (precise, exited threads included).
    clock_ns: Option<u64>,
    /// utime + stime of the whole process (dead threads included), in clock ticks.
    stat_ticks: u64,
    /// utime alone: the CPU the server spent in its own code, in clock ticks.
    user_ticks: u64,
    /// Sum of every live thread's on-CPU nanoseconds (`/proc/PID/task/*/schedstat`).
    sched_ns: u64,
    /// Live thread ids, sorted.
    tids: Vec<u32>,
    /// VmRSS, RssAnon, RssFile in KiB.
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads the server's CPU and memory figures from /proc.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("server pid {pid}: no /proc/{pid}/stat"))?;
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat_ticks = num(11) + num(12);
    let user_ticks = num(11);
    let mut tids = Vec::new();
    let mut sched_ns = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                tids.push(tid);
            }
        }
    }
    tids.sort_unstable();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Ok(ProcSample {
        clock_ns: process_cpu_ns(pid),
        stat_ticks,
        user_ticks,
        sched_ns,
        tids,
        rss_kb: status_kb(&status, "VmRSS"),
        rss_anon_kb: status_kb(&status, "RssAnon"),
        rss_file_kb: status_kb(&status, "RssFile"),
        threads: status_kb(&status, "Threads"),
    })
}

/// `/proc/PID/smaps_rollup` as `{"Rss": kB, …}` (empty when unreadable).
pub fn smaps_rollup(pid: u32) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let mut map = serde_json::Map::new();
    for line in text.lines().skip(1) {
        let mut parts = line.split_whitespace();
        if let (Some(key), Some(value)) = (parts.next(), parts.next()) {
            if let Ok(v) = value.parse::<u64>() {
                map.insert(key.trim_end_matches(':').to_string(), json!(v));
            }
        }
    }
    Value::Object(map)
}

/// Kernel TCP figures of this network namespace (`/proc/net/sockstat`): sockets in use and the
/// pages their buffers take (client and server ends together: it is all loopback).
pub fn tcp_sockstat() -> Value {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return Value::Null;
    };
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    let mut map = serde_json::Map::new();
    for pair in words.chunks(2) {
        if let [key, value] = pair {
            if let Ok(v) = value.parse::<u64>() {
                map.insert(key.to_string(), json!(v));
            }
        }
    }
    Value::Object(map)
}

/// Open descriptors of the server.
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// One CPU's clock ticks from /proc/stat.
#[derive(Clone, Copy, Debug, PartialEq)]
struct CpuTicks {
    /// Everything but idle and iowait (steal included: the CPU was not ours to idle on).
    busy: u64,
    softirq: u64,
    /// Time the hypervisor ran something else while this virtual CPU had work: a stall of
    /// everything on it, seen by no process's clock.
    steal: u64,
    total: u64,
}

/// Per CPU: its ticks so far.
fn cpu_ticks() -> Vec<CpuTicks> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// The `cpuN` lines of a /proc/stat text (not the `cpu` total line).
fn parse_cpu_ticks(text: &str) -> Vec<CpuTicks> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal …
            let field = |i: usize| v.get(i).copied().unwrap_or(0);
            let total: u64 = v.iter().take(8).sum();
            CpuTicks {
                busy: total.saturating_sub(field(3) + field(4)),
                softirq: field(6),
                steal: field(7),
                total,
            }
        })
        .collect()
}

/// The workload's helper processes (`--helper-pid`: a database, Redis, nginx): part of the
/// workload, so their CPU is reported apart and is not "other" CPU (noise).
static HELPERS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Sets the helper processes (once, at start).
pub fn set_helpers(pids: &[u32]) {
    let _ = HELPERS.set(pids.to_vec());
}

/// The helpers' CPU clocks summed, ns (a helper that is gone counts 0).
fn helpers_cpu_ns() -> u64 {
    HELPERS
        .get()
        .into_iter()
        .flatten()
        .filter_map(|&p| process_cpu_ns(p))
        .sum()
}

/// Measures one phase: wall time, the server's CPU (when its pid is known), this tool's CPU, and
/// how busy every CPU of the machine was (to tell when something else ran during the phase).
pub struct Meter {
    /// Every server process (a cluster's nodes): their CPU is summed.
    pids: Vec<u32>,
    server: Vec<Option<ProcSample>>,
    client: Duration,
    helpers_ns: u64,
    cpus: Vec<CpuTicks>,
    t0: Instant,
}

/// What a `Meter` saw.
pub struct Measured {
    /// Wall time of the phase.
    pub wall: Duration,
    /// Server CPU in the phase, nanoseconds.
    pub server_cpu_ns: Option<u64>,
    /// The part of it in user mode (the server's own code), nanoseconds, at clock-tick
    /// resolution. On loopback the kernel part includes the receiving side's TCP work (and the
    /// wake-up of the client's thread), which a sender pays inline.
    pub server_user_ns: Option<u64>,
    /// How the server CPU was read: `cpu_clock` (the process CPU clock, ns), `schedstat` (ns, live
    /// threads) or `stat` (clock ticks).
    pub method: &'static str,
    /// This tool's CPU in the phase.
    pub client_cpu: Duration,
    /// The helper processes' CPU in the phase (see `set_helpers`).
    pub helpers_cpu: Duration,
    /// Server memory at the end (the first server's).
    pub server_after: Option<ProcSample>,
    /// Per CPU: busy share of the phase, percent (from /proc/stat).
    pub cpu_busy_pct: Vec<f64>,
    /// Per CPU: softirq share of the phase, percent.
    pub cpu_softirq_pct: Vec<f64>,
    /// Per CPU: steal share of the phase, percent (the hypervisor's, counted in busy and in
    /// "other": latency figures of a phase with steal include its stalls).
    pub cpu_steal_pct: Vec<f64>,
}

impl Meter {
    /// Starts measuring.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            server: pids.iter().map(|&p| sample(p).ok()).collect(),
            client: self_cpu(),
            helpers_ns: helpers_cpu_ns(),
            cpus: cpu_ticks(),
            t0: Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn stop(&self) -> Measured {
        let wall = self.t0.elapsed();
        let client_cpu = self_cpu().saturating_sub(self.client);
        let helpers_cpu = Duration::from_nanos(helpers_cpu_ns().saturating_sub(self.helpers_ns));
        let after: Vec<Option<ProcSample>> = self.pids.iter().map(|&p| sample(p).ok()).collect();
        let mut server_cpu_ns: Option<u64> = None;
        let mut server_user_ns: Option<u64> = None;
        let mut method = "none";
        for (before, after) in self.server.iter().zip(&after) {
            let (cpu, how) = cpu_between(before, after);
            if let Some(cpu) = cpu {
                server_cpu_ns = Some(server_cpu_ns.unwrap_or(0) + cpu);
                method = how;
            }
            if let (Some(a), Some(b)) = (before, after) {
                let user =
                    b.user_ticks.saturating_sub(a.user_ticks) * 1_000_000_000 / clock_ticks();
                server_user_ns = Some(server_user_ns.unwrap_or(0) + user);
            }
        }
        let cpus = cpu_ticks();
        let share = |f: fn(&CpuTicks) -> u64| shares(&self.cpus, &cpus, f);
        Measured {
            wall,
            server_cpu_ns,
            server_user_ns,
            method,
            client_cpu,
            helpers_cpu,
            server_after: after.into_iter().next().flatten(),
            cpu_busy_pct: share(|c| c.busy),
            cpu_softirq_pct: share(|c| c.softirq),
            cpu_steal_pct: share(|c| c.steal),
        }
    }
}

/// Per CPU: what share of its ticks between two readings went to `part`, percent to 0.1.
fn shares(before: &[CpuTicks], after: &[CpuTicks], part: fn(&CpuTicks) -> u64) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(a, b)| {
            let total = b.total.saturating_sub(a.total).max(1) as f64;
            round(part(b).saturating_sub(part(a)) as f64 / total * 100.0, 1)
        })
        .collect()
}

/// One server's CPU between two samples, and how it was read.
fn cpu_between(
    before: &Option<ProcSample>,
    after: &Option<ProcSample>,
) -> (Option<u64>, &'static str) {
    match (before, after) {
        (Some(a), Some(b)) if a.clock_ns.is_some() && b.clock_ns.is_some() => (
            Some(
                b.clock_ns
                    .unwrap_or(0)
                    .saturating_sub(a.clock_ns.unwrap_or(0)),
            ),
            "cpu_clock",
        ),
        (Some(a), Some(b)) => {
            // schedstat is precise but forgets threads that exited; then use the tick count.
            let kept = a.tids.iter().all(|t| b.tids.binary_search(t).is_ok());
            if kept && b.sched_ns >= a.sched_ns {
                (Some(b.sched_ns - a.sched_ns), "schedstat")
            } else {
                let ticks = b.stat_ticks.saturating_sub(a.stat_ticks);
                (Some(ticks * 1_000_000_000 / clock_ticks()), "stat")
            }
        }
        _ => (None, "none"),
    }
}

impl Measured {
    /// Server CPU microseconds per unit of `count`.
    pub fn server_us_per(&self, count: u64) -> Option<f64> {
        let ns = self.server_cpu_ns?;
        (count > 0).then(|| round(ns as f64 / 1000.0 / count as f64, 3))
    }

    /// Server user-mode CPU microseconds per unit of `count`.
    pub fn server_user_us_per(&self, count: u64) -> Option<f64> {
        let ns = self.server_user_ns?;
        (count > 0).then(|| round(ns as f64 / 1000.0 / count as f64, 3))
    }

    /// Server CPU as a share of one core over the phase, in percent.
    pub fn server_pct(&self) -> Option<f64> {
        let ns = self.server_cpu_ns?;
        Some(round(
            ns as f64 / self.wall.as_nanos().max(1) as f64 * 100.0,
            1,
        ))
    }

    /// This tool's CPU as a share of one core, in percent.
    pub fn client_pct(&self) -> f64 {
        round(
            self.client_cpu.as_nanos() as f64 / self.wall.as_nanos().max(1) as f64 * 100.0,
            1,
        )
    }

    /// The helper processes' CPU as a share of one core, in percent.
    pub fn helpers_pct(&self) -> f64 {
        round(
            self.helpers_cpu.as_nanos() as f64 / self.wall.as_nanos().max(1) as f64 * 100.0,
            1,
        )
    }

    /// CPU time spent by neither the server, nor this tool, nor the helpers during the phase, in
    /// percent of one core: other processes (noise), kernel work accounted to no process
    /// (softirq with IRQ time accounting), or the hypervisor's steal.
    pub fn other_pct(&self) -> f64 {
        let busy: f64 = self.cpu_busy_pct.iter().sum();
        round(
            busy - self.server_pct().unwrap_or(0.0) - self.client_pct() - self.helpers_pct(),
            1,
        )
    }

    /// The steal of each CPU, as `0.2 / 1.5` (percent).
    pub fn steal_text(&self) -> String {
        let each: Vec<String> = self.cpu_steal_pct.iter().map(f64::to_string).collect();
        each.join(" / ")
    }

    /// The figures as JSON, with `per` = (name, count) for a per-unit CPU figure.
    pub fn json(&self, per: &[(&str, u64)]) -> Value {
        let mut v = json!({
            "wall_s": round(self.wall.as_secs_f64(), 3),
            "server_cpu_ms": self.server_cpu_ns.map(|n| round(n as f64 / 1e6, 3)),
            "server_cpu_method": self.method,
            "server_user_cpu_ms": self.server_user_ns.map(|n| round(n as f64 / 1e6, 3)),
            "server_cpu_pct": self.server_pct(),
            "client_cpu_pct": self.client_pct(),
            "helpers_cpu_pct": self.helpers_pct(),
            "cpu_busy_pct": self.cpu_busy_pct,
            "cpu_softirq_pct": self.cpu_softirq_pct,
            "cpu_steal_pct": self.cpu_steal_pct,
            "other_cpu_pct": self.other_pct(),
        });
        for (name, count) in per {
            v[format!("server_cpu_us_per_{name}")] = json!(self.server_us_per(*count));
        }
        v
    }
}

/// `x` or `-`.
pub fn opt<T: std::fmt::Display>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Registers and logs in `n` fresh users (not timed), `parallel` at a time.
pub async fn make_users(
    gw: &Gateway,
    prefix: &str,
    n: usize,
    parallel: usize,
) -> Result<Vec<User>> {
    let users: Vec<Result<User>> = futures_util::stream::iter(0..n)
        .map(|_| gw.new_user(prefix))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    users.into_iter().collect()
}

/// A two-or-more column table printed with aligned columns.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a title and column names.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// No rows yet.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a two-cell row.
    pub fn kv(&mut self, key: &str, value: impl std::fmt::Display) {
        self.rows.push(vec![key.to_string(), value.to_string()]);
    }

    /// Prints it.
    pub fn print(&self) {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        println!("\n{}", self.title);
        let line = |row: &Vec<String>| {
            let cells: Vec<String> = (0..cols)
                .map(|i| {
                    let cell = row.get(i).map(String::as_str).unwrap_or("");
                    format!("{cell:<w$}", w = width[i])
                })
                .collect();
            println!("| {} |", cells.join(" | "));
        };
        line(&self.header);
        println!(
            "|{}|",
            width
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            line(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A /proc/stat of two CPUs: user nice system idle iowait irq softirq steal guest guest_nice.
    const STAT_BEFORE: &str = "cpu  300 0 100 1500 10 0 20 40 0 0
cpu0 200 0 50 700 5 0 10 35 0 0
cpu1 100 0 50 800 5 0 10 5 0 0
intr 12345
ctxt 678
";
    const STAT_AFTER: &str = "cpu  ...
cpu0 270 0 70 770 5 0 20 65 0 0
cpu1 150 0 60 885 5 0 15 5 0 0
";

    #[test]
    fn proc_stat_gives_each_cpu_its_busy_softirq_and_steal_ticks() {
        let cpus = parse_cpu_ticks(STAT_BEFORE);
        assert_eq!(
            cpus.len(),
            2,
            "the `cpu` total line and other lines are not CPUs"
        );
        // cpu0: total 1000 (the first 8 fields), idle + iowait 705, so busy 295 (steal included).
        assert_eq!(
            cpus[0],
            CpuTicks {
                busy: 295,
                softirq: 10,
                steal: 35,
                total: 1000
            }
        );
        assert_eq!(
            cpus[1],
            CpuTicks {
                busy: 165,
                softirq: 10,
                steal: 5,
                total: 970
            }
        );
    }

    #[test]
    fn steal_is_a_share_of_each_cpu_s_ticks_between_the_readings() {
        let before = parse_cpu_ticks(STAT_BEFORE);
        let after = parse_cpu_ticks(STAT_AFTER);
        // cpu0: 1000 → 1200 ticks, steal 35 → 65: 30 of 200 = 15 %; busy 295 → 425: 65 %.
        // cpu1: 970 → 1120 ticks, steal unchanged: 0 %; busy 165 → 230: 65 of 150 = 43.3 %.
        assert_eq!(shares(&before, &after, |c| c.steal), vec![15.0, 0.0]);
        assert_eq!(shares(&before, &after, |c| c.busy), vec![65.0, 43.3]);
        assert_eq!(shares(&before, &after, |c| c.softirq), vec![5.0, 3.3]);
        // A reading that went backwards (a CPU unplugged and back) gives 0, not a wrapped number.
        assert_eq!(shares(&after, &before, |c| c.steal), vec![0.0, 0.0]);
    }

    #[test]
    fn a_short_or_garbled_line_does_not_panic() {
        let cpus = parse_cpu_ticks("cpu0 10 x 5\ncpuX 1 2 3\n");
        assert_eq!(
            cpus,
            vec![CpuTicks {
                busy: 15,
                softirq: 0,
                steal: 0,
                total: 15
            }]
        );
    }
}
