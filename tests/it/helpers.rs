//! `spawn_app`: a real wsgate on an ephemeral port with short test durations, and a handle to stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wsgate::state::App;
use wsgate::store::{MemoryStore, Store};
use wsgate::{Application, Settings};
use wsgate_testkit::Gateway;

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
    let addr = application.local_addr();
    let app = application.app();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    TestApp {
        gw: Gateway::new(&url).expect("valid url"),
        addr,
        url,
        app,
        stop: Some(stop),
        handle,
    }
}
