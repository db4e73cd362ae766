//! Configuration: every `WSGATE_*` variable and its matching flag, in groups (`net`, `auth`,
//! `limits`, `store`, `ops`), each parsed straight into the type the server runs with.
//!
//! Every setting is written once: a field with its clap attribute (flag, variable, default, value
//! parser). A value parser both converts and validates, so a bad value is an error that names the
//! variable and the server fails at startup, not at the first request. Secrets are `Secret`s,
//! which print as `<redacted>`: `Debug` is derived and still never shows one.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::edge::TrustedProxies;

/// Shortest accepted JWT secret: HS256 keys shorter than the hash output weaken the MAC.
pub const MIN_SECRET_BYTES: usize = 32;

/// Everything the server is configured with.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wsgate",
    version,
    about = "WebSocket authentication gateway",
    args_override_self = true
)]
pub struct Settings {
    /// Listening, clients and proxies.
    #[command(flatten)]
    pub net: Net,
    /// Credentials and sessions.
    #[command(flatten)]
    pub auth: Auth,
    /// Rate limits and per-socket bounds.
    #[command(flatten)]
    pub limits: Limits,
    /// Rooms, history, recovery and the server API.
    #[command(flatten)]
    pub rooms: Rooms,
    /// Where records live.
    #[command(flatten)]
    pub store: StoreSettings,
    /// Several nodes on Redis.
    #[command(flatten)]
    pub cluster: ClusterSettings,
    /// Logs and metrics.
    #[command(flatten)]
    pub ops: Ops,
}

/// Listening, clients and proxies.
#[derive(Debug, Clone, Args)]
pub struct Net {
    /// Address to listen on.
    #[arg(long, env = "WSGATE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Once listening, write the bound address (`127.0.0.1:PORT`) to this file, for scripts that
    /// start the server on port 0.
    #[arg(long, env = "WSGATE_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Comma-separated list of allowed `Origin` values for upgrades and state-changing requests.
    /// Default: the server's own http://localhost:PORT and http://127.0.0.1:PORT. Requests without
    /// `Origin` are allowed.
    #[arg(long, env = "WSGATE_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: OriginList,

    /// Comma list of reverse proxies (IP or IP/prefix) whose `X-Forwarded-For` names the client for
    /// rate limits and per-IP caps. Default: none (the TCP peer is the client).
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", default_value = "", value_parser = trusted_proxies)]
    pub trusted_proxies: TrustedProxies,

    /// Most simultaneous TCP connections (HTTP and WebSocket); further ones wait in the backlog.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value = "10000", value_parser = positive_usize)]
    pub max_connections: usize,

    /// Most simultaneous connections from one client IP (IPv6: one /64); 0 disables the cap.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_IP", default_value = "1000")]
    pub max_connections_per_ip: Limit,

    /// Time a client has to send a request's headers, and then its body, in milliseconds.
    #[arg(long = "request-timeout-ms", env = "WSGATE_REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = positive_millis)]
    pub request_timeout: Duration,

    /// Folder served at `/` (the web client).
    #[arg(long, env = "WSGATE_CLIENT_DIR", default_value = "client")]
    pub client_dir: PathBuf,
}

/// Credentials and sessions.
#[derive(Debug, Clone, Args)]
pub struct Auth {
    /// HS256 signing secret, at least 32 bytes. When unset a random per-process secret is used
    /// (tokens then die with the process and instances cannot share them).
    #[arg(long, env = "WSGATE_JWT_SECRET", hide_env_values = true, value_parser = signing_secret)]
    pub jwt_secret: Option<Secret>,

    /// Previous signing secret: still verifies tokens (never signs) during a key rotation.
    #[arg(long, env = "WSGATE_JWT_PREVIOUS_SECRET", hide_env_values = true, value_parser = signing_secret)]
    pub jwt_previous_secret: Option<Secret>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long = "jwt-ttl-secs", env = "WSGATE_JWT_TTL_SECS", default_value = "900", value_parser = positive_secs)]
    pub jwt_ttl: Duration,

    /// Clock-skew leeway applied when checking `exp`, in seconds.
    #[arg(long = "jwt-leeway-secs", env = "WSGATE_JWT_LEEWAY_SECS", default_value = "5", value_parser = secs)]
    pub jwt_leeway: Duration,

    /// Lifetime of refresh tokens, in seconds (each rotation issues a new one with a fresh lifetime).
    #[arg(long = "refresh-ttl-secs", env = "WSGATE_REFRESH_TTL_SECS", default_value = "1209600", value_parser = positive_secs)]
    pub refresh_ttl: Duration,

    /// Live login sessions a user may hold; a login beyond it revokes the user's oldest session.
    #[arg(long, env = "WSGATE_MAX_SESSIONS_PER_USER", default_value = "50", value_parser = positive_usize)]
    pub max_sessions_per_user: usize,

    /// How long before a socket's access token expires the server sends `token_expiring`, in seconds.
    #[arg(long = "token-expiring-secs", env = "WSGATE_TOKEN_EXPIRING_SECS", default_value = "60", value_parser = secs)]
    pub token_expiring: Duration,

    /// How often revocations made through other instances are picked up, in milliseconds.
    #[arg(long = "revocation-poll-ms", env = "WSGATE_REVOCATION_POLL_MS", default_value = "2000", value_parser = positive_millis)]
    pub revocation_poll: Duration,

    /// Lifetime of WebSocket tickets, in seconds.
    #[arg(long = "ticket-ttl-secs", env = "WSGATE_TICKET_TTL_SECS", default_value = "30", value_parser = positive_secs)]
    pub ticket_ttl: Duration,

    /// Time a new socket has to send its `auth` frame, in milliseconds.
    #[arg(long = "auth-timeout-ms", env = "WSGATE_AUTH_TIMEOUT_MS", default_value = "10000", value_parser = positive_millis)]
    pub auth_timeout: Duration,

    /// bcrypt cost factor for password hashes (4 to 31).
    #[arg(long, env = "WSGATE_BCRYPT_COST", default_value = "12", value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
}

/// Rate limits and per-socket bounds. A rate of 0 disables that limit.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Registrations per minute per client IP (0 disables the limit).
    #[arg(
        long = "rate-register-per-min",
        env = "WSGATE_RATE_REGISTER_PER_MIN",
        default_value = "10"
    )]
    pub register_per_min: Limit,

    /// Logins per minute per client IP (0 disables the limit).
    #[arg(
        long = "rate-login-per-min",
        env = "WSGATE_RATE_LOGIN_PER_MIN",
        default_value = "20"
    )]
    pub login_per_min: Limit,

    /// Token refreshes per minute per client IP (0 disables the limit).
    #[arg(
        long = "rate-refresh-per-min",
        env = "WSGATE_RATE_REFRESH_PER_MIN",
        default_value = "60"
    )]
    pub refresh_per_min: Limit,

    /// Ticket mints per minute per client IP (0 disables the limit).
    #[arg(
        long = "rate-ticket-per-min",
        env = "WSGATE_RATE_TICKET_PER_MIN",
        default_value = "60"
    )]
    pub ticket_per_min: Limit,

    /// Upgrade attempts per minute per client IP (0 disables the limit).
    #[arg(
        long = "rate-upgrade-per-min",
        env = "WSGATE_RATE_UPGRADE_PER_MIN",
        default_value = "60"
    )]
    pub upgrade_per_min: Limit,

    /// Chat messages per second per socket, also the burst (0 disables the limit).
    #[arg(
        long = "rate-messages-per-sec",
        env = "WSGATE_RATE_MESSAGES_PER_SEC",
        default_value = "10"
    )]
    pub messages_per_sec: Limit,

    /// Ping interval in seconds; a peer silent for two intervals is closed.
    #[arg(long = "heartbeat-secs", env = "WSGATE_HEARTBEAT_SECS", default_value = "30", value_parser = positive_secs)]
    pub heartbeat: Duration,

    /// A socket whose pending frames cannot be written within this time (milliseconds) is closed as
    /// a slow consumer.
    #[arg(long = "write-timeout-ms", env = "WSGATE_WRITE_TIMEOUT_MS", default_value = "10000", value_parser = positive_millis)]
    pub write_timeout: Duration,

    /// Largest WebSocket frame or message accepted, in bytes (at least 1024); larger ones close the
    /// socket with 1009.
    #[arg(long, env = "WSGATE_MAX_FRAME_BYTES", default_value = "65536", value_parser = frame_bytes)]
    pub max_frame_bytes: usize,

    /// Frames a socket's inbox may hold (it fell behind by that many) before it is closed as a slow
    /// consumer (1013). The replay of a recovery does not count.
    #[arg(long, env = "WSGATE_OUTBOUND_QUEUE", default_value = "1024", value_parser = positive_usize)]
    pub outbound_queue: usize,
}

/// Rooms, history, recovery and the server API.
#[derive(Debug, Clone, Args)]
pub struct Rooms {
    /// Rooms one socket may be subscribed to at once, `lobby` included.
    #[arg(long, env = "WSGATE_MAX_ROOMS_PER_SOCKET", default_value = "100", value_parser = positive_usize)]
    pub max_rooms_per_socket: usize,

    /// Messages per room kept in memory for exact recovery after a reconnect (0: no recovery).
    #[arg(long, env = "WSGATE_RECOVERY_MESSAGES", default_value = "1000", value_parser = whole_usize)]
    pub recovery_messages: usize,

    /// How old the `since` message of a recovery may be, in seconds.
    #[arg(long = "recovery-secs", env = "WSGATE_RECOVERY_SECS", default_value = "300", value_parser = positive_secs)]
    pub recovery_age: Duration,

    /// How long history is kept, in days (MongoDB: a TTL index; every read also filters by age).
    #[arg(long, env = "WSGATE_HISTORY_DAYS", default_value = "30", value_parser = positive_days)]
    pub history_days: Duration,

    /// Messages kept per room (and per direct conversation) by the embedded store.
    #[arg(long, env = "WSGATE_HISTORY_MAX_PER_ROOM", default_value = "10000", value_parser = positive_usize)]
    pub history_max_per_room: usize,

    /// Messages held for the history writer while the store is slow or down; what does not fit
    /// is counted (`wsgate_history_dropped_total`) and logged.
    #[arg(long, env = "WSGATE_HISTORY_BUFFER", default_value = "100000", value_parser = positive_usize)]
    pub history_buffer: usize,

    /// Enables the server API (`/api/server/*`) for the application's backend, with this key as
    /// its bearer token; at least 32 bytes. Unset: those routes are 404.
    #[arg(long, env = "WSGATE_API_KEY", hide_env_values = true, value_parser = signing_secret)]
    pub api_key: Option<Secret>,
}

/// Where records live.
#[derive(Debug, Clone, Args)]
pub struct StoreSettings {
    /// MongoDB connection string; when set, every record lives there (otherwise: the embedded store).
    #[arg(long = "mongodb-uri", env = "WSGATE_MONGODB_URI", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = mongodb_uri)]
    pub mongodb_uri: MongoUri,

    /// MongoDB database name.
    #[arg(long = "mongodb-db", env = "WSGATE_MONGODB_DB", default_value = "wsgate", value_parser = non_empty)]
    pub mongodb_db: String,

    /// Bound on MongoDB server selection, connection and each operation, in milliseconds; past it
    /// the request fails with 503 `store_unavailable`.
    #[arg(long = "mongodb-timeout-ms", env = "WSGATE_MONGODB_TIMEOUT_MS", default_value = "2000", value_parser = positive_millis)]
    pub mongodb_timeout: Duration,
}

/// Several nodes behind a load balancer, on Redis.
#[derive(Debug, Clone, Args)]
pub struct ClusterSettings {
    /// Redis connection string (`redis://` or `rediss://`, with `user:password@` when Redis asks
    /// for it). Set: this node is one of a cluster (which needs WSGATE_MONGODB_URI, shared by
    /// every node). Unset: a single node, with nothing to install.
    #[arg(long = "redis-url", env = "WSGATE_REDIS_URL", hide_env_values = true, value_parser = redis_url)]
    pub redis_url: Option<Secret>,

    /// A node that has not renewed its heartbeat in Redis for this long is dead: its users are
    /// reported `left` everywhere.
    #[arg(long = "node-timeout-secs", env = "WSGATE_NODE_TIMEOUT_SECS", default_value = "15", value_parser = positive_secs)]
    pub node_timeout: Duration,
}

/// Logs and metrics.
#[derive(Debug, Clone, Args)]
pub struct Ops {
    /// Log format.
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Address of a listener that serves only `GET /metrics` (bind it to a private interface). When
    /// unset, `/metrics` is served on the main listener only if that is bound to a loopback address
    /// and no trusted proxy is configured, so it is never public by default.
    #[arg(long, env = "WSGATE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// A secret (a signing key, a connection string with a password): its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself: pass it on, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A limit where 0 means "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(Option<NonZeroU32>);

impl Limit {
    /// The limit, or `None` when it is off.
    pub fn get(self) -> Option<u32> {
        self.0.map(NonZeroU32::get)
    }
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let n: u32 = text
            .trim()
            .parse()
            .map_err(|e| format!("`{text}` is not a whole number: {e}"))?;
        Ok(Self(NonZeroU32::new(n)))
    }
}

/// Allowed origins, normalised (lower case, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginList(pub Vec<String>);

impl FromStr for OriginList {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut origins = Vec::new();
        for origin in text.split(',') {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin.is_empty() {
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(format!(
                    "`{origin}` is not an http(s) origin such as https://app.example.com"
                ));
            }
            origins.push(origin);
        }
        Ok(Self(origins))
    }
}

/// The MongoDB connection string, when one is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoUri(pub Option<Secret>);

fn mongodb_uri(text: &str) -> Result<MongoUri, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(MongoUri(None));
    }
    if !(text.starts_with("mongodb://") || text.starts_with("mongodb+srv://")) {
        return Err("must start with mongodb:// or mongodb+srv://".into());
    }
    Ok(MongoUri(Some(Secret(text.to_owned()))))
}

fn redis_url(text: &str) -> Result<Secret, String> {
    let text = text.trim();
    if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
        return Err("must start with redis:// or rediss://".into());
    }
    Ok(Secret(text.to_owned()))
}

fn signing_secret(text: &str) -> Result<Secret, String> {
    if text.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_SECRET_BYTES} bytes, got {} bytes",
            text.len()
        ));
    }
    Ok(Secret(text.to_owned()))
}

fn whole(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a whole number: {e}"))
}

fn positive(text: &str) -> Result<u64, String> {
    match whole(text)? {
        0 => Err("must be greater than 0".into()),
        n => Ok(n),
    }
}

fn secs(text: &str) -> Result<Duration, String> {
    whole(text).map(Duration::from_secs)
}

fn positive_secs(text: &str) -> Result<Duration, String> {
    positive(text).map(Duration::from_secs)
}

fn positive_days(text: &str) -> Result<Duration, String> {
    match positive(text)? {
        n if n > 36_500 => Err("must be at most 36500 (a century)".into()),
        n => Ok(Duration::from_secs(n * 86_400)),
    }
}

fn whole_usize(text: &str) -> Result<usize, String> {
    whole(text).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
}

fn positive_millis(text: &str) -> Result<Duration, String> {
    positive(text).map(Duration::from_millis)
}

fn positive_usize(text: &str) -> Result<usize, String> {
    positive(text).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
}

fn frame_bytes(text: &str) -> Result<usize, String> {
    match positive_usize(text)? {
        n if n < 1024 => Err("must be at least 1024".into()),
        n => Ok(n),
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("must not be empty".into()),
        text => Ok(text.to_owned()),
    }
}

fn trusted_proxies(text: &str) -> Result<TrustedProxies, String> {
    let entries: Vec<String> = text.split(',').map(str::to_owned).collect();
    TrustedProxies::parse(&entries)
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap refused the command line or environment (unknown flag, bad value); the message names
    /// the variable as well as the flag.
    #[error("{0}")]
    Cli(String),
    /// `--help` or `--version` was asked for: the text to print, not an error.
    #[error("{0}")]
    Help(String),
}

impl Settings {
    /// Parses the process's arguments and `WSGATE_*` environment.
    pub fn from_env_and_args() -> Result<Self, ConfigError> {
        Self::parse_with(Self::command(), std::env::args_os())
    }

    /// Parses only the given arguments, ignoring the environment: tests use this so that a stray
    /// `WSGATE_*` variable on the machine cannot change what they run.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cmd = Self::command().mut_args(|arg| arg.env(None::<&str>));
        Self::parse_with(cmd, args)
    }

    fn parse_with<I, T>(cmd: clap::Command, args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = cmd.try_get_matches_from(args).map_err(|err| {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                return ConfigError::Help(err.render().to_string());
            }
            // clap names the flag; operators mostly set variables, so name both.
            match err
                .get(clap::error::ContextKind::InvalidArg)
                .and_then(|arg| variable_of(&arg.to_string()))
            {
                Some(var) => ConfigError::Cli(format!("{var}: {}", err.render())),
                None => ConfigError::Cli(err.render().to_string()),
            }
        })?;
        let settings = Self::from_arg_matches(&matches)
            .map_err(|e| ConfigError::Cli(e.render().to_string()))?;
        settings.validate()
    }

    /// What no single value parser can see: settings that only make sense together.
    fn validate(self) -> Result<Self, ConfigError> {
        if self.auth.jwt_previous_secret.is_some() && self.auth.jwt_secret.is_none() {
            return Err(ConfigError::Cli(
                "WSGATE_JWT_PREVIOUS_SECRET (--jwt-previous-secret): needs WSGATE_JWT_SECRET \
                 (--jwt-secret) to be set too"
                    .into(),
            ));
        }
        if self.cluster.redis_url.is_some() && self.store.mongodb_uri.0.is_none() {
            return Err(ConfigError::Cli(
                "WSGATE_REDIS_URL (--redis-url): needs WSGATE_MONGODB_URI (--mongodb-uri) too: \
                 the nodes of a cluster share accounts, tickets and rooms there"
                    .into(),
            ));
        }
        Ok(self)
    }

    /// The MongoDB backend's connection string, database and timeout, when one is configured.
    pub fn mongodb(&self) -> Option<(&Secret, &str, Duration)> {
        let store = &self.store;
        store
            .mongodb_uri
            .0
            .as_ref()
            .map(|uri| (uri, store.mongodb_db.as_str(), store.mongodb_timeout))
    }
}

/// The variable of a flag as clap names it in errors (`--max-connections-per-ip <N>`): the first
/// word, exactly (a prefix match would name `--max-connections` instead).
fn variable_of(arg: &str) -> Option<String> {
    let flag = arg
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .trim_start_matches('-');
    // The declared command: tests parse with the environment switched off.
    Settings::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(flag))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::from_args(["wsgate"]).unwrap();
        assert_eq!(s.net.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.auth.jwt_ttl, Duration::from_secs(900));
        assert_eq!(s.auth.jwt_leeway, Duration::from_secs(5));
        assert_eq!(s.auth.ticket_ttl, Duration::from_secs(30));
        assert_eq!(s.auth.auth_timeout, Duration::from_millis(10_000));
        assert_eq!(s.limits.heartbeat, Duration::from_secs(30));
        assert_eq!(s.auth.bcrypt_cost, 12);
        assert_eq!(s.auth.max_sessions_per_user, 50);
        assert_eq!(s.limits.max_frame_bytes, 65536);
        assert_eq!(s.net.max_connections_per_ip.get(), Some(1000));
        assert!(s.net.allowed_origins.0.is_empty());
        assert!(s.net.trusted_proxies.is_empty());
        assert!(s.auth.jwt_secret.is_none());
        assert!(s.mongodb().is_none());
        assert_eq!(s.rooms.max_rooms_per_socket, 100);
        assert_eq!(s.rooms.recovery_messages, 1000);
        assert_eq!(s.rooms.recovery_age, Duration::from_secs(300));
        assert_eq!(s.rooms.history_days, Duration::from_secs(30 * 86_400));
        assert_eq!(s.rooms.history_max_per_room, 10_000);
        assert!(s.rooms.api_key.is_none());
    }

    #[test]
    fn a_later_flag_overrides_an_earlier_one() {
        let s =
            Settings::from_args(["wsgate", "--bcrypt-cost", "5", "--bcrypt-cost", "6"]).unwrap();
        assert_eq!(s.auth.bcrypt_cost, 6);
    }

    #[test]
    fn short_secret_is_refused_naming_the_variable() {
        let err = Settings::from_args(["wsgate", "--jwt-secret", "short"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("WSGATE_JWT_SECRET"), "{text}");
        assert!(text.contains("32 bytes"), "{text}");
    }

    #[test]
    fn a_previous_secret_needs_a_current_one() {
        let err =
            Settings::from_args(["wsgate", "--jwt-previous-secret", &"p".repeat(40)]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("WSGATE_JWT_PREVIOUS_SECRET"), "{text}");
        assert!(text.contains("WSGATE_JWT_SECRET "), "{text}");
    }

    #[test]
    fn unparsable_number_names_the_variable() {
        let err = Settings::from_args(["wsgate", "--jwt-ttl-secs", "soon"]).unwrap_err();
        assert!(err.to_string().contains("WSGATE_JWT_TTL_SECS"), "{err}");
        // Not the variable of a flag that is a prefix of this one.
        let err = Settings::from_args(["wsgate", "--max-connections-per-ip="]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("WSGATE_MAX_CONNECTIONS_PER_IP:"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (flag, value, var) in [
            ("--bcrypt-cost", "3", "WSGATE_BCRYPT_COST"),
            ("--ticket-ttl-secs", "0", "WSGATE_TICKET_TTL_SECS"),
            ("--heartbeat-secs", "0", "WSGATE_HEARTBEAT_SECS"),
            ("--allowed-origins", "ftp://x", "WSGATE_ALLOWED_ORIGINS"),
            ("--max-frame-bytes", "100", "WSGATE_MAX_FRAME_BYTES"),
            ("--mongodb-uri", "postgres://x", "WSGATE_MONGODB_URI"),
            ("--mongodb-db", "", "WSGATE_MONGODB_DB"),
            ("--trusted-proxies", "nope", "WSGATE_TRUSTED_PROXIES"),
        ] {
            let err = Settings::from_args(["wsgate", flag, value]).unwrap_err();
            assert!(err.to_string().contains(var), "{flag}: {err}");
        }
    }

    #[test]
    fn zero_disables_a_rate_limit_and_origins_are_normalised() {
        let s = Settings::from_args([
            "wsgate",
            "--rate-login-per-min",
            "0",
            "--allowed-origins",
            "https://App.example.com/, http://x.test",
        ])
        .unwrap();
        assert_eq!(s.limits.login_per_min.get(), None);
        assert_eq!(s.limits.register_per_min.get(), Some(10));
        assert_eq!(
            s.net.allowed_origins.0,
            vec!["https://app.example.com", "http://x.test"]
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::from_args([
            "wsgate",
            "--jwt-secret",
            &"s".repeat(40),
            "--mongodb-uri",
            "mongodb://wsgate:hunter2secret@db:27017",
        ])
        .unwrap();
        let text = format!("{s:?}");
        assert!(!text.contains("ssss"), "{text}");
        assert!(!text.contains("hunter2secret"), "{text}");
        assert_eq!(s.mongodb().unwrap().1, "wsgate");
    }
}
