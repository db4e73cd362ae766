//! The scenario suite from `wsgate-testkit`, one test per scenario and backend, each against its own
//! in-process server (so presence and chat assertions see no other scenario's users): `memory::*` on
//! the embedded store, `mongodb::*` on a fresh database of the test MongoDB server, `cluster::*` on
//! the Redis engine (a node with a private redis-server, on MongoDB).

use std::sync::Arc;
use std::time::Duration;

use wsgate_testkit::scenarios::{self, Ctx, Needs, Outcome};

use wsgate::store::{MemoryStore, Store};

use crate::helpers::{
    mongo_database, mongo_store, spawn_app_with_settings, spawn_app_with_store, RedisServer,
};

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    MongoDb,
    /// One node of a cluster: the Redis engine, on MongoDB.
    Cluster,
}

/// Access-token lifetime for scenarios that wait for expiry, and the `token_expiring` lead time.
const SHORT_JWT: &str = "3";
const SHORT_WARNING: &str = "2";
/// The server API key of the in-process servers.
const API_KEY: &str = "scenario-api-key-scenario-api-key-0123";

async fn run(name: &str, backend: Backend) {
    let scenario = scenarios::all()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists");
    // Registration is limited to 10 a minute per IP by default; the contract scenario alone makes more
    // (its invalid attempts count too). The limit itself is tested in `server`.
    let mut extra = vec![
        "--rate-register-per-min",
        "100",
        "--api-key",
        API_KEY,
        "--recovery-messages",
        "20",
        "--max-rooms-per-socket",
        "8",
    ];
    if scenario.needs == Needs::ShortJwt {
        extra.extend([
            "--jwt-ttl-secs",
            SHORT_JWT,
            "--token-expiring-secs",
            SHORT_WARNING,
        ]);
    }
    // Kept until the scenario ends.
    let mut _redis = None;
    let server = match backend {
        Backend::Memory => spawn_app_with_store(&extra, Arc::new(MemoryStore::new())).await,
        Backend::MongoDb => match mongo_store().await {
            Some(store) => spawn_app_with_store(&extra, store as Arc<dyn Store>).await,
            None => return,
        },
        Backend::Cluster => {
            let (Some(redis), Some((uri, db))) = (RedisServer::start().await, mongo_database())
            else {
                return;
            };
            let url = redis.url();
            let mut args: Vec<&str> = extra.clone();
            args.extend([
                "--redis-url",
                &url,
                "--mongodb-uri",
                &uri,
                "--mongodb-db",
                &db,
            ]);
            let server = spawn_app_with_settings(&args).await;
            _redis = Some(redis);
            server
        }
    };
    let ctx = Arc::new(Ctx {
        gw: server.gw.clone(),
        auth_timeout: Duration::from_millis(1000),
        leeway: Duration::ZERO,
        max_wait: Duration::from_secs(15),
        api_key: Some(API_KEY.into()),
        recovery_messages: 20,
        max_rooms: 8,
    });
    match (scenario.run)(ctx).await {
        Ok(Outcome::Pass) => {}
        Ok(Outcome::Skip(why)) => panic!("{name} skipped in-process, where it must run: {why}"),
        Err(err) => panic!("{name} failed: {err:#}"),
    }
}

macro_rules! scenario_tests {
    ($($name:ident $([$needs:ident])?),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(stringify!($name), super::Backend::Memory).await;
                }
            )*
        }

        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(stringify!($name), super::Backend::MongoDb).await;
                }
            )*
        }

        /// The same contract on the cluster engine (one node, its own Redis).
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(stringify!($name), super::Backend::Cluster).await;
                }
            )*
        }
    };
}

wsgate_testkit::with_scenarios!(scenario_tests);
