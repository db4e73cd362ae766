//! `spawn_app`: a real wsgate on an ephemeral port with short test durations, and a handle to stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wsgate::state::App;
use wsgate::store::{MemoryStore, MongoStore, Store};
use wsgate::{Application, Settings};
use wsgate_testkit::{Gateway, Socket, User};

/// A 32-byte test secret.
pub const SECRET: &str = "test-secret-test-secret-test-secret!";

/// Flags every test server gets unless it overrides them: fast bcrypt, short ticket and auth timeouts.
pub const BASE_ARGS: &[&str] = &[
    "--addr",
    "127.0.0.1:0",
    "--jwt-secret",
    SECRET,
    "--bcrypt-cost",
    "4",
    "--ticket-ttl-secs",
    "2",
    "--auth-timeout-ms",
    "1000",
    "--jwt-leeway-secs",
    "0",
    "--client-dir",
    "client",
];

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The metrics-only listener, when `--metrics-addr` was given.
    pub metrics_addr: Option<SocketAddr>,
    pub url: String,
    pub gw: Gateway,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<()>,
}

impl TestApp {
    /// Asks the server to shut down (as SIGTERM would) and waits for it to finish.
    pub async fn shutdown(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.handle).await;
        started.elapsed()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Settings from `BASE_ARGS` followed by `extra` (later flags win).
pub fn settings(extra: &[&str]) -> Settings {
    let mut args = vec!["wsgate"];
    args.extend_from_slice(BASE_ARGS);
    args.extend_from_slice(extra);
    Settings::from_args(args).expect("test settings are valid")
}

/// Spawns a server over the embedded store with `BASE_ARGS` plus `extra`.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    spawn_app_with_store(extra, Arc::new(MemoryStore::new())).await
}

/// Spawns a server over the given store.
pub async fn spawn_app_with_store(extra: &[&str], store: Arc<dyn Store>) -> TestApp {
    let application = Application::build_with_store(settings(extra), store)
        .await
        .expect("server builds");
    serve(application)
}

/// Runs a built server in a task.
fn serve(application: Application) -> TestApp {
    let addr = application.local_addr();
    let metrics_addr = application.metrics_addr();
    let app = application.app();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    TestApp {
        gw: Gateway::new(&url).expect("valid url"),
        addr,
        metrics_addr,
        url,
        app,
        stop: Some(stop),
        handle,
    }
}

/// Two new users, alice and bob, each with an authenticated socket that sees the other's chat and
/// presence.
pub async fn chatting_pair(gw: &Gateway) -> (User, User, Socket, Socket) {
    let alice = gw.new_user("alice").await.unwrap();
    let bob = gw.new_user("bob").await.unwrap();
    let (mut a, _) = gw.connect(&alice).await.unwrap();
    let (mut b, _) = gw.connect(&bob).await.unwrap();
    a.focus(&[&alice.name, &bob.name]);
    b.focus(&[&alice.name, &bob.name]);
    (alice, bob, a, b)
}

/// Whether the MongoDB tests must run (set by `scripts/test.sh`): then a missing server is a failure,
/// not a skip.
fn mongo_required() -> bool {
    std::env::var("WSGATE_REQUIRE_MONGO").is_ok_and(|v| v == "1")
}

/// Says (loudly) that a MongoDB test is skipped, or fails it when MongoDB is required.
fn mongo_unavailable(what: &str) {
    if mongo_required() {
        panic!(
            "{what} is not set but WSGATE_REQUIRE_MONGO=1: run the tests through scripts/test.sh"
        );
    }
    eprintln!("SKIPPED: {what} is not set (scripts/test.sh starts SecantusDB and sets it)");
}

/// A MongoDB store on a fresh database of the shared test server (`WSGATE_TEST_MONGODB_URI`).
pub async fn mongo_store() -> Option<Arc<MongoStore>> {
    let Ok(uri) = std::env::var("WSGATE_TEST_MONGODB_URI") else {
        mongo_unavailable("WSGATE_TEST_MONGODB_URI");
        return None;
    };
    let db = wsgate_testkit::unique_name("wsgate_test");
    let store = MongoStore::connect(&uri, &db, Duration::from_secs(5))
        .await
        .unwrap_or_else(|err| panic!("test MongoDB at {uri} unusable: {err}"));
    Some(Arc::new(store))
}

/// A private SecantusDB process (for tests that stop and restart the database).
pub struct Secantus {
    child: Option<std::process::Child>,
    pub port: u16,
    storage: std::path::PathBuf,
    bin: String,
}

impl Secantus {
    /// Starts one on a free port with on-disk storage (so a restart keeps the data) and test commands
    /// (`configureFailPoint`) enabled, or `None` when `WSGATE_TEST_SECANTUSD` is not set.
    pub fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("WSGATE_TEST_SECANTUSD") else {
            mongo_unavailable("WSGATE_TEST_SECANTUSD");
            return None;
        };
        let storage = std::env::temp_dir().join(wsgate_testkit::unique_name("secantus"));
        let mut db = Self {
            child: None,
            port: 0,
            storage,
            bin,
        };
        db.spawn();
        Some(db)
    }

    fn spawn(&mut self) {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--enable-test-commands")
            .arg("--storage-path")
            .arg(&self.storage)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("secantusd-py starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("secantusd exited before listening")
                .expect("readable log");
            if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                break rest.trim().parse().expect("port number");
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.port = port;
        self.child = Some(child);
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Stops the process the way an operator does (SIGTERM, then waiting for it to exit): the
    /// database closes cleanly and keeps every acknowledged write, whatever its write concern. An
    /// outage test must not depend on what a crash happened to leave on disk.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("secantusd did not exit within 20 s of SIGTERM");
    }

    /// Kills the process with SIGKILL, as abrupt as a crash: only what the database made durable
    /// before acknowledging survives.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage (after `stop` or `crash`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop or crash it first");
        self.spawn();
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

/// Whether the cluster tests must run (set by `scripts/test.sh`): then a missing Redis is a
/// failure, not a skip.
fn redis_required() -> bool {
    std::env::var("WSGATE_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// A private redis-server process on a free loopback port, no persistence: each cluster test has
/// its own (pub/sub channels are global to a Redis, so tests sharing one would see each other).
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
    bin: String,
}

impl RedisServer {
    /// Starts one, or `None` (a loud skip) when `WSGATE_TEST_REDIS_SERVER` is not set.
    pub async fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("WSGATE_TEST_REDIS_SERVER") else {
            if redis_required() {
                panic!("WSGATE_TEST_REDIS_SERVER is not set but WSGATE_REQUIRE_REDIS=1");
            }
            eprintln!("SKIPPED: WSGATE_TEST_REDIS_SERVER is not set (scripts/test.sh sets it)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            child: None,
            port,
            bin,
        };
        server.spawn().await;
        Some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = std::process::Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        // Ready when it answers PING (never a fixed sleep).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.pings().await {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pings(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Sends one command (its words, as RESP) and waits for its reply, which must not be an error.
    pub async fn command(&self, words: &[&str]) {
        self.strings(words).await;
    }

    /// Sends one command and reads its reply as strings: an array of bulk strings or integers
    /// (a nil is an empty string), or a single one.
    pub async fn strings(&self, words: &[&str]) -> Vec<String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut request = format!("*{}\r\n", words.len());
        for word in words {
            request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis answers");
        let mut stream = tokio::io::BufReader::new(stream);
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        assert!(!line.starts_with('-'), "redis refused {words:?}: {line}");
        let count = match line.strip_prefix('*') {
            Some(n) => n.trim().parse::<usize>().unwrap(),
            None => 1,
        };
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            if i > 0 || line.starts_with('*') {
                line.clear();
                stream.read_line(&mut line).await.unwrap();
            }
            let head = line.trim_end();
            if let Some(len) = head.strip_prefix('$') {
                let Ok(len) = len.parse::<usize>() else {
                    out.push(String::new()); // `$-1`: nil
                    continue;
                };
                let mut data = vec![0; len + 2];
                stream.read_exact(&mut data).await.unwrap();
                data.truncate(len);
                out.push(String::from_utf8(data).unwrap());
            } else {
                out.push(head.trim_start_matches([':', '+']).to_owned());
            }
        }
        out
    }

    /// Freezes the server for `pause`, as when its host is suspended (see `suspend`).
    pub async fn freeze(&self, pause: Duration) {
        self.suspend();
        tokio::time::sleep(pause).await;
        self.resume();
    }

    /// Stops the server (SIGSTOP) until `resume`: its clients' connections stay, their requests
    /// wait, and its clock runs on.
    pub fn suspend(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a suspended server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("redis-server runs").id() as libc::pid_t;
        // SAFETY: `kill` takes plain integers and touches no memory of ours; the pid is our own
        // child's, not yet reaped (`stop` reaps it).
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {signal} to redis"
        );
    }

    /// Kills it (its data goes: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test MongoDB's URI and a fresh database name, or `None` (a loud skip, or a failure when
/// MongoDB is required).
pub fn mongo_database() -> Option<(String, String)> {
    let Ok(uri) = std::env::var("WSGATE_TEST_MONGODB_URI") else {
        mongo_unavailable("WSGATE_TEST_MONGODB_URI");
        return None;
    };
    Some((uri, wsgate_testkit::unique_name("wsgate_test")))
}

/// Spawns a server built from its settings alone (`Application::build`: its own store, Redis).
pub async fn spawn_app_with_settings(extra: &[&str]) -> TestApp {
    let application = Application::build(settings(extra))
        .await
        .expect("server builds");
    serve(application)
}
