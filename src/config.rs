//! Configuration: every `WSGATE_*` variable and its matching CLI flag, parsed and validated into `Settings`.
//!
//! `Config` is what the operator types (clap, flags with environment fallbacks); `Settings` is what the
//! server runs with (durations, decoded secrets, resolved origins). A bad value is a `ConfigError` that
//! names the variable, so a misconfigured deployment fails at startup instead of at the first request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Shortest accepted JWT secret: HS256 keys shorter than the hash output weaken the MAC.
pub const MIN_SECRET_BYTES: usize = 32;

/// The operator's view of the configuration. Each field is a flag with a `WSGATE_*` fallback.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wsgate",
    version,
    about = "WebSocket authentication gateway",
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "WSGATE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// HS256 signing secret, at least 32 bytes. When unset a random per-process secret is used
    /// (tokens then die with the process and instances cannot share them).
    #[arg(long, env = "WSGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Previous signing secret: still verifies tokens (never signs) during a key rotation.
    #[arg(long, env = "WSGATE_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "WSGATE_JWT_TTL_SECS", default_value_t = 900)]
    pub jwt_ttl_secs: u64,

    /// Lifetime of refresh tokens, in seconds (each rotation issues a new one with a fresh lifetime).
    #[arg(long, env = "WSGATE_REFRESH_TTL_SECS", default_value_t = 14 * 24 * 3600)]
    pub refresh_ttl_secs: u64,

    /// Live login sessions a user may hold; a login beyond it revokes the user's oldest session.
    #[arg(long, env = "WSGATE_MAX_SESSIONS_PER_USER", default_value_t = 50)]
    pub max_sessions_per_user: usize,

    /// How long before a socket's access token expires the server sends `token_expiring`, in seconds.
    #[arg(long, env = "WSGATE_TOKEN_EXPIRING_SECS", default_value_t = 60)]
    pub token_expiring_secs: u64,

    /// How often revocations made through other instances are picked up, in milliseconds.
    #[arg(long, env = "WSGATE_REVOCATION_POLL_MS", default_value_t = 2000)]
    pub revocation_poll_ms: u64,

    /// Clock-skew leeway applied when checking `exp`, in seconds.
    #[arg(long, env = "WSGATE_JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,

    /// Lifetime of WebSocket tickets, in seconds.
    #[arg(long, env = "WSGATE_TICKET_TTL_SECS", default_value_t = 30)]
    pub ticket_ttl_secs: u64,

    /// Time a new socket has to send its `auth` frame, in milliseconds.
    #[arg(long, env = "WSGATE_AUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub auth_timeout_ms: u64,

    /// Ping interval; a peer silent for two intervals is closed.
    #[arg(long, env = "WSGATE_HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,

    /// A socket whose pending frames cannot be written within this time is closed as a slow consumer.
    #[arg(long, env = "WSGATE_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,

    /// Comma-separated list of allowed `Origin` values for upgrades. Default: the server's own
    /// http://localhost:PORT and http://127.0.0.1:PORT. Requests without `Origin` are allowed.
    #[arg(long, env = "WSGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// bcrypt cost factor for password hashes (4 to 31).
    #[arg(long, env = "WSGATE_BCRYPT_COST", default_value_t = 12)]
    pub bcrypt_cost: u32,

    /// Registrations per minute per client IP (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_REGISTER_PER_MIN", default_value_t = 10)]
    pub rate_register_per_min: u32,

    /// Logins per minute per client IP (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_LOGIN_PER_MIN", default_value_t = 20)]
    pub rate_login_per_min: u32,

    /// Token refreshes per minute per client IP (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_REFRESH_PER_MIN", default_value_t = 60)]
    pub rate_refresh_per_min: u32,

    /// Ticket mints per minute per client IP (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_TICKET_PER_MIN", default_value_t = 60)]
    pub rate_ticket_per_min: u32,

    /// Upgrade attempts per minute per client IP (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_UPGRADE_PER_MIN", default_value_t = 60)]
    pub rate_upgrade_per_min: u32,

    /// Chat messages per second per socket, also the burst (0 disables the limit).
    #[arg(long, env = "WSGATE_RATE_MESSAGES_PER_SEC", default_value_t = 10)]
    pub rate_messages_per_sec: u32,

    /// Largest WebSocket frame or message accepted, in bytes; larger ones close the socket with 1009.
    #[arg(long, env = "WSGATE_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Broadcast messages a socket may fall behind before it is closed as a slow consumer (1013).
    #[arg(long, env = "WSGATE_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Most simultaneous TCP connections (HTTP and WebSocket); further ones wait in the backlog.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// MongoDB connection string; when set, every record lives there (otherwise: the embedded store).
    #[arg(long, env = "WSGATE_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,

    /// MongoDB database name.
    #[arg(long, env = "WSGATE_MONGODB_DB", default_value = "wsgate")]
    pub mongodb_db: String,

    /// Bound on MongoDB server selection, connection and each operation, in milliseconds; past it the
    /// request fails with 503 `store_unavailable`.
    #[arg(long, env = "WSGATE_MONGODB_TIMEOUT_MS", default_value_t = 2000)]
    pub mongodb_timeout_ms: u64,

    /// Comma list of reverse proxies (IP or IP/prefix) whose `X-Forwarded-For` names the client for
    /// rate limits and per-IP caps. Default: none (the TCP peer is the client).
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Time a client has to send a request's headers, and then its body, in milliseconds.
    #[arg(long, env = "WSGATE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Most simultaneous connections from one client IP (IPv6: one /64); 0 disables the cap.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,

    /// Address of a listener that serves only `GET /metrics` (bind it to a private interface). When
    /// unset, `/metrics` is served on the main listener only if that is bound to a loopback address
    /// and no trusted proxy is configured, so it is never public by default.
    #[arg(long, env = "WSGATE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Once listening, write the bound address (`127.0.0.1:PORT`) to this file, for scripts that
    /// start the server on port 0.
    #[arg(long, env = "WSGATE_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Folder served at `/` (the web client).
    #[arg(long, env = "WSGATE_CLIENT_DIR", default_value = "client")]
    pub client_dir: PathBuf,

    /// Log format.
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why the configuration was refused. Every variant names the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value failed to parse or is out of range.
    #[error("invalid {var} (--{flag}): {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// The matching CLI flag, without dashes.
        flag: &'static str,
        /// What is wrong, for a human.
        reason: String,
    },
    /// clap refused the command line or environment (unknown flag, unparsable number).
    #[error("{0}")]
    Cli(String),
    /// `--help` or `--version` was asked for: the text to print, not an error.
    #[error("{0}")]
    Help(String),
}

fn invalid(var: &'static str, flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        flag,
        reason: reason.into(),
    }
}

/// Per-route rate limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Registrations per minute per IP.
    pub register_per_min: Option<u32>,
    /// Logins per minute per IP.
    pub login_per_min: Option<u32>,
    /// Token refreshes per minute per IP.
    pub refresh_per_min: Option<u32>,
    /// Ticket mints per minute per IP.
    pub ticket_per_min: Option<u32>,
    /// Upgrade attempts per minute per IP.
    pub upgrade_per_min: Option<u32>,
    /// Messages per second per socket.
    pub messages_per_sec: Option<u32>,
}

/// Where the MongoDB backend lives.
#[derive(Clone)]
pub struct MongoSettings {
    /// Connection string (may hold a password: never log it).
    pub uri: String,
    /// Database name.
    pub db: String,
    /// Bound on selection, connection and each operation.
    pub timeout: Duration,
}

impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &"<redacted>")
            .field("db", &self.db)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The validated configuration the server runs with.
#[derive(Clone)]
pub struct Settings {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Signing secret; `None` means "generate one at startup".
    pub jwt_secret: Option<Vec<u8>>,
    /// Verify-only secret kept during a key rotation.
    pub jwt_previous_secret: Option<Vec<u8>>,
    /// Access-token lifetime.
    pub jwt_ttl: Duration,
    /// Clock-skew leeway on `exp`.
    pub jwt_leeway: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Live sessions per user; the oldest go first.
    pub max_sessions_per_user: usize,
    /// Lead time of the `token_expiring` frame.
    pub token_expiring: Duration,
    /// Revocation feed poll interval.
    pub revocation_poll: Duration,
    /// Ticket lifetime.
    pub ticket_ttl: Duration,
    /// Deadline for the first (`auth`) frame.
    pub auth_timeout: Duration,
    /// Ping interval; silence for two intervals closes the socket.
    pub heartbeat: Duration,
    /// Longest a write may take before the socket is closed as a slow consumer.
    pub write_timeout: Duration,
    /// Explicitly allowed origins; empty means "the server's own address".
    pub allowed_origins: Vec<String>,
    /// bcrypt cost.
    pub bcrypt_cost: u32,
    /// Rate limits.
    pub rate: RateLimits,
    /// Largest accepted frame/message.
    pub max_frame_bytes: usize,
    /// Broadcast backlog per socket before it is closed as slow.
    pub outbound_queue: usize,
    /// Connection cap.
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::edge::TrustedProxies,
    /// Deadline for a request's headers, and separately for its body.
    pub request_timeout: Duration,
    /// Per-client-IP connection cap; `None` = off.
    pub max_connections_per_ip: Option<usize>,
    /// MongoDB backend, when configured.
    pub mongodb: Option<MongoSettings>,
    /// The metrics-only listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Where to write the bound address.
    pub addr_file: Option<PathBuf>,
    /// Static files served at `/`.
    pub client_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Settings {
    // Hand-written so that secrets can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "jwt_previous_secret",
                &self.jwt_previous_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_ttl", &self.jwt_ttl)
            .field("jwt_leeway", &self.jwt_leeway)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("token_expiring", &self.token_expiring)
            .field("revocation_poll", &self.revocation_poll)
            .field("ticket_ttl", &self.ticket_ttl)
            .field("auth_timeout", &self.auth_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("write_timeout", &self.write_timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .field("rate", &self.rate)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("outbound_queue", &self.outbound_queue)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("request_timeout", &self.request_timeout)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("mongodb", &self.mongodb)
            .field("metrics_addr", &self.metrics_addr)
            .field("addr_file", &self.addr_file)
            .field("client_dir", &self.client_dir)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    /// Parses the process's arguments and `WSGATE_*` environment.
    pub fn from_env_and_args() -> Result<Self, ConfigError> {
        Self::parse_with(Self::command(), std::env::args_os())
    }

    /// Parses only the given arguments, ignoring the environment: tests use this so that a stray
    /// `WSGATE_*` variable on the machine cannot change what they run.
    pub fn from_args_only<I, T>(args: I) -> Result<Self, ConfigError>
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
        let matches = cmd.clone().try_get_matches_from(args).map_err(|err| {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                return ConfigError::Help(err.render().to_string());
            }
            // clap names the flag; operators mostly set variables, so name both.
            let env = err
                .get(clap::error::ContextKind::InvalidArg)
                .and_then(|arg| {
                    // `--max-connections-per-ip <N>`: the flag is the first word, exactly (a
                    // prefix match would name `--max-connections` instead).
                    let arg = arg.to_string();
                    let flag = arg
                        .split([' ', '='])
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches('-');
                    // The declared command, not `cmd`: tests parse with the environment switched off.
                    Self::command()
                        .get_arguments()
                        .find(|a| a.get_long() == Some(flag))
                        .and_then(|a| a.get_env())
                        .map(|e| e.to_string_lossy().into_owned())
                });
            match env {
                Some(var) => ConfigError::Cli(format!("{var}: {}", err.render())),
                None => ConfigError::Cli(err.render().to_string()),
            }
        })?;
        Self::from_arg_matches(&matches).map_err(|e| ConfigError::Cli(e.render().to_string()))
    }

    /// Validates ranges and decodes secrets.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let secret = |value: Option<String>, var, flag| -> Result<Option<Vec<u8>>, ConfigError> {
            match value {
                None => Ok(None),
                Some(s) if s.len() < MIN_SECRET_BYTES => Err(invalid(
                    var,
                    flag,
                    format!(
                        "must be at least {MIN_SECRET_BYTES} bytes, got {} bytes",
                        s.len()
                    ),
                )),
                Some(s) => Ok(Some(s.into_bytes())),
            }
        };
        let positive = |value: u64, var, flag| -> Result<u64, ConfigError> {
            if value == 0 {
                Err(invalid(var, flag, "must be greater than 0"))
            } else {
                Ok(value)
            }
        };
        let limit = |v: u32| (v > 0).then_some(v);

        let jwt_secret = secret(self.jwt_secret, "WSGATE_JWT_SECRET", "jwt-secret")?;
        let jwt_previous_secret = secret(
            self.jwt_previous_secret,
            "WSGATE_JWT_PREVIOUS_SECRET",
            "jwt-previous-secret",
        )?;
        if jwt_previous_secret.is_some() && jwt_secret.is_none() {
            return Err(invalid(
                "WSGATE_JWT_PREVIOUS_SECRET",
                "jwt-previous-secret",
                "needs WSGATE_JWT_SECRET to be set too",
            ));
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(invalid(
                "WSGATE_BCRYPT_COST",
                "bcrypt-cost",
                format!("must be between 4 and 31, got {}", self.bcrypt_cost),
            ));
        }
        if self.max_frame_bytes < 1024 {
            return Err(invalid(
                "WSGATE_MAX_FRAME_BYTES",
                "max-frame-bytes",
                "must be at least 1024",
            ));
        }
        let mut allowed_origins = Vec::new();
        for origin in self.allowed_origins {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin.is_empty() {
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "WSGATE_ALLOWED_ORIGINS",
                    "allowed-origins",
                    format!("`{origin}` is not an http(s) origin such as https://app.example.com"),
                ));
            }
            allowed_origins.push(origin);
        }
        Ok(Settings {
            addr: self.addr,
            jwt_secret,
            jwt_previous_secret,
            jwt_ttl: Duration::from_secs(positive(
                self.jwt_ttl_secs,
                "WSGATE_JWT_TTL_SECS",
                "jwt-ttl-secs",
            )?),
            jwt_leeway: Duration::from_secs(self.jwt_leeway_secs),
            refresh_ttl: Duration::from_secs(positive(
                self.refresh_ttl_secs,
                "WSGATE_REFRESH_TTL_SECS",
                "refresh-ttl-secs",
            )?),
            max_sessions_per_user: positive(
                self.max_sessions_per_user as u64,
                "WSGATE_MAX_SESSIONS_PER_USER",
                "max-sessions-per-user",
            )? as usize,
            token_expiring: Duration::from_secs(self.token_expiring_secs),
            revocation_poll: Duration::from_millis(positive(
                self.revocation_poll_ms,
                "WSGATE_REVOCATION_POLL_MS",
                "revocation-poll-ms",
            )?),
            ticket_ttl: Duration::from_secs(positive(
                self.ticket_ttl_secs,
                "WSGATE_TICKET_TTL_SECS",
                "ticket-ttl-secs",
            )?),
            auth_timeout: Duration::from_millis(positive(
                self.auth_timeout_ms,
                "WSGATE_AUTH_TIMEOUT_MS",
                "auth-timeout-ms",
            )?),
            heartbeat: Duration::from_secs(positive(
                self.heartbeat_secs,
                "WSGATE_HEARTBEAT_SECS",
                "heartbeat-secs",
            )?),
            write_timeout: Duration::from_millis(positive(
                self.write_timeout_ms,
                "WSGATE_WRITE_TIMEOUT_MS",
                "write-timeout-ms",
            )?),
            allowed_origins,
            bcrypt_cost: self.bcrypt_cost,
            rate: RateLimits {
                register_per_min: limit(self.rate_register_per_min),
                login_per_min: limit(self.rate_login_per_min),
                refresh_per_min: limit(self.rate_refresh_per_min),
                ticket_per_min: limit(self.rate_ticket_per_min),
                upgrade_per_min: limit(self.rate_upgrade_per_min),
                messages_per_sec: limit(self.rate_messages_per_sec),
            },
            max_frame_bytes: self.max_frame_bytes,
            outbound_queue: positive(
                self.outbound_queue as u64,
                "WSGATE_OUTBOUND_QUEUE",
                "outbound-queue",
            )? as usize,
            max_connections: positive(
                self.max_connections as u64,
                "WSGATE_MAX_CONNECTIONS",
                "max-connections",
            )? as usize,
            trusted_proxies: crate::edge::TrustedProxies::parse(&self.trusted_proxies)
                .map_err(|reason| invalid("WSGATE_TRUSTED_PROXIES", "trusted-proxies", reason))?,
            request_timeout: Duration::from_millis(positive(
                self.request_timeout_ms,
                "WSGATE_REQUEST_TIMEOUT_MS",
                "request-timeout-ms",
            )?),
            max_connections_per_ip: (self.max_connections_per_ip > 0)
                .then_some(self.max_connections_per_ip),
            mongodb: match self.mongodb_uri.filter(|u| !u.trim().is_empty()) {
                None => None,
                Some(uri) => {
                    if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                        return Err(invalid(
                            "WSGATE_MONGODB_URI",
                            "mongodb-uri",
                            "must start with mongodb:// or mongodb+srv://",
                        ));
                    }
                    if self.mongodb_db.is_empty() {
                        return Err(invalid(
                            "WSGATE_MONGODB_DB",
                            "mongodb-db",
                            "must not be empty",
                        ));
                    }
                    Some(MongoSettings {
                        uri,
                        db: self.mongodb_db,
                        timeout: Duration::from_millis(positive(
                            self.mongodb_timeout_ms,
                            "WSGATE_MONGODB_TIMEOUT_MS",
                            "mongodb-timeout-ms",
                        )?),
                    })
                }
            },
            metrics_addr: self.metrics_addr,
            addr_file: self.addr_file,
            client_dir: self.client_dir,
            log_format: self.log_format,
        })
    }
}

impl Settings {
    /// Parses flags only (no environment) and validates: the entry point for tests and embedders.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::from_args_only(args)?.into_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::from_args(["wsgate"]).unwrap();
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.jwt_ttl, Duration::from_secs(900));
        assert_eq!(s.jwt_leeway, Duration::from_secs(5));
        assert_eq!(s.ticket_ttl, Duration::from_secs(30));
        assert_eq!(s.auth_timeout, Duration::from_millis(10_000));
        assert_eq!(s.heartbeat, Duration::from_secs(30));
        assert_eq!(s.bcrypt_cost, 12);
        assert_eq!(s.max_sessions_per_user, 50);
        assert_eq!(s.max_frame_bytes, 65536);
        assert!(s.allowed_origins.is_empty());
        assert!(s.jwt_secret.is_none());
    }

    #[test]
    fn a_later_flag_overrides_an_earlier_one() {
        let s =
            Settings::from_args(["wsgate", "--bcrypt-cost", "5", "--bcrypt-cost", "6"]).unwrap();
        assert_eq!(s.bcrypt_cost, 6);
    }

    #[test]
    fn short_secret_is_refused_naming_the_variable() {
        let err = Settings::from_args(["wsgate", "--jwt-secret", "short"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("WSGATE_JWT_SECRET"), "{text}");
        assert!(text.contains("32 bytes"), "{text}");
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
        assert_eq!(s.rate.login_per_min, None);
        assert_eq!(s.rate.register_per_min, Some(10));
        assert_eq!(
            s.allowed_origins,
            vec!["https://app.example.com", "http://x.test"]
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::from_args(["wsgate", "--jwt-secret", &"s".repeat(40)]).unwrap();
        let text = format!("{s:?}");
        assert!(!text.contains("ssss"), "{text}");
    }
}
