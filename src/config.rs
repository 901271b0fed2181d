//! Settings: read once at start, layered defaults < TOML file < `THE_EYE_*`
//! environment < flags, and parsed into typed sections that each component
//! takes on its own.
//!
//! The names are a public contract: every setting is one flat key in the file
//! and one variable `THE_EYE_<NAME>` (`workers` → `THE_EYE_WORKERS`). So the
//! layers are read into one flat shape ([`RawSettings`], all the names in one place),
//! then parsed into [`Settings`]: sections by concern, with host lists, rates,
//! URLs and durations as their own types. A bad value stops start-up with one
//! message naming the variable (or file key, or flag) that supplied it, and a
//! valid example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::hosts::AllowedHosts;
use crate::domain::Rules;
use crate::rate::Rate;

/// Every setting, in its sections.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The HTTP server and who it answers.
    pub http: HttpSettings,
    /// What the collector accepts.
    pub ingest: IngestSettings,
    /// Validation limits the workers apply.
    pub rules: Rules,
    /// The queue between ingest and the workers.
    pub queue: QueueSettings,
    /// The workers.
    pub worker: WorkerSettings,
    /// Where events live.
    pub store: StoreSettings,
    /// Log lines: text or JSON.
    pub log_format: LogFormat,
    /// The demo website at `/website/` and its `demo` application.
    pub demo: bool,
}

/// The HTTP server.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// Address the server binds.
    pub listen: SocketAddr,
    /// Host names this server answers to.
    pub allowed_hosts: AllowedHosts,
    /// Behind a reverse proxy: honour `X-Forwarded-Host`, `-For` and `-Proto`.
    pub trust_proxy: bool,
    /// A request from its head to its answer; then 503.
    pub request_timeout: Duration,
    /// Time to send a request's head; then the connection is closed.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// Open client connections at most.
    pub max_connections: usize,
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest set of request headers (431 beyond).
    pub max_header_bytes: usize,
    /// Each shutdown phase: requests in flight, then workers.
    pub shutdown_timeout: Duration,
    /// Serve `/metrics` without a token (on a network only Prometheus reaches).
    pub metrics_public: bool,
}

/// What the collector accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestSettings {
    /// Requests per application.
    pub rate_limit_app: Rate,
    /// Requests per client address.
    pub rate_limit_ip: Rate,
    /// Largest body on the wire (413 beyond).
    pub max_body_bytes: usize,
    /// Largest body after gzip (413 beyond).
    pub max_decompressed_bytes: usize,
    /// Most events in one request (413 beyond).
    pub max_events_per_request: usize,
    /// Largest single event, as compact JSON (413 beyond).
    pub max_event_bytes: usize,
    /// Deepest nesting, counting the outer array (400 beyond).
    pub max_json_depth: usize,
    /// How much of a body that is not JSON is kept in its event error.
    pub max_rejected_body_bytes: usize,
    /// `Retry-After` on 503.
    pub retry_after: Duration,
}

/// The queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSettings {
    /// Redis Streams when set; otherwise the embedded spool in the data dir.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys.
    pub redis_prefix: String,
    /// How long a Redis entry may stay with a silent consumer.
    pub redis_claim_idle: Duration,
    /// How long a spool claim may go without an ack or a release.
    pub spool_claim_idle: Duration,
    /// Start even when Redis can lose acknowledged events.
    pub allow_unsafe_redis: bool,
    /// Entries waiting before the collector answers 503.
    pub max_depth: u64,
}

/// The workers.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSettings {
    /// Worker tasks (0 in `serve`: ingest only).
    pub workers: usize,
    /// Entries per transaction.
    pub batch_size: usize,
    /// Wait for a partial batch to fill.
    pub linger: Duration,
    /// Failed attempts before an entry becomes an event error.
    pub max_attempts: u32,
    /// How long the catalog and the applications are cached.
    pub catalog_refresh: Duration,
    /// Where `the-eye worker` serves `/healthz` and `/readyz`.
    pub health_listen: Option<SocketAddr>,
}

/// Where events live.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreSettings {
    /// The spool and the default SQLite database.
    pub data_dir: PathBuf,
    /// The store.
    pub database: DatabaseUrl,
    /// How long data is kept (applied by the workers' upkeep).
    pub retention: Retention,
    /// How often the workers' upkeep runs.
    pub upkeep_interval: Duration,
}

/// How long each kind of data is kept; `None` keeps it forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Events, by their own timestamp.
    pub events: Option<chrono::Duration>,
    /// Event errors, by when they were received.
    pub errors: Option<chrono::Duration>,
    /// Rollup counts, by their bucket.
    pub rollups: Option<chrono::Duration>,
}

/// A store URL, checked at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl DatabaseUrl {
    /// Reads a URL of a supported scheme.
    pub fn parse(url: &str) -> Result<Self, String> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Self::Sqlite(url.to_string())),
            Some("postgres" | "postgresql") => Ok(Self::Postgres(url.to_string())),
            _ => Err(format!("{url:?} is not a database URL: use sqlite://PATH or postgres://USER@HOST/DB")),
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(url) | Self::Postgres(url) => url,
        }
    }
}

impl StoreSettings {
    /// Path of the embedded spool database.
    pub fn spool_path(&self) -> PathBuf {
        self.data_dir.join("spool.db")
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The settings as the file and the environment spell them: one flat key
/// each, documented in the README. [`RawSettings::parse`] makes [`Settings`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub allowed_hosts: String,
    pub trust_proxy: bool,
    pub rate_limit_app: String,
    pub rate_limit_ip: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub redis_claim_idle_secs: u64,
    pub spool_claim_idle_secs: u64,
    pub allow_unsafe_redis: bool,
    pub worker_health_listen: Option<SocketAddr>,
    pub workers: usize,
    pub worker_batch_size: usize,
    pub worker_linger_ms: u64,
    pub max_attempts: u32,
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub max_events_per_request: usize,
    pub max_event_bytes: usize,
    pub max_json_depth: usize,
    pub max_text_chars: usize,
    pub max_clock_skew_secs: u64,
    pub max_rejected_body_bytes: usize,
    pub queue_max_depth: u64,
    pub retry_after_secs: u64,
    pub request_timeout_secs: u64,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub catalog_refresh_secs: u64,
    pub retention_days: u32,
    pub error_retention_days: u32,
    pub rollup_retention_days: u32,
    pub upkeep_interval_secs: u64,
    pub log_format: LogFormat,
    pub metrics_public: bool,
    pub demo: bool,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            allowed_hosts: "localhost,127.0.0.1,[::1]".into(),
            trust_proxy: false,
            rate_limit_app: "1000/s".into(),
            rate_limit_ip: "100/s".into(),
            redis_url: None,
            redis_prefix: "the-eye".into(),
            redis_claim_idle_secs: 30,
            spool_claim_idle_secs: 30,
            allow_unsafe_redis: false,
            worker_health_listen: None,
            workers: 2,
            worker_batch_size: 1000,
            // 5 rather than 20: smaller store commits at moderate load disturb
            // the spool's fsyncs less (a shorter ack tail), and under full load
            // batches fill while the previous one is written, so the rate is
            // the same (docs/benchmarks.md, twentieth session).
            worker_linger_ms: 5,
            max_attempts: 5,
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 1024 * 1024,
            max_events_per_request: 1000,
            max_event_bytes: 64 * 1024,
            max_json_depth: 32,
            max_text_chars: 255,
            max_clock_skew_secs: 300,
            max_rejected_body_bytes: 64 * 1024,
            queue_max_depth: 1_000_000,
            retry_after_secs: 1,
            request_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            shutdown_timeout_secs: 10,
            catalog_refresh_secs: 2,
            retention_days: 0,
            error_retention_days: 0,
            rollup_retention_days: 0,
            upkeep_interval_secs: 60,
            log_format: LogFormat::Text,
            metrics_public: false,
            demo: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        match RawSettings::default().parse() {
            Ok(settings) => settings,
            Err(e) => unreachable!("the defaults are valid: {e}"),
        }
    }
}

/// Values given as command-line flags; `None` leaves the lower layers in force.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--workers`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// `--redis-url`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// `--allow-unsafe-redis`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_unsafe_redis: Option<bool>,
    /// `--health-listen` of `the-eye worker`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_health_listen: Option<SocketAddr>,
}

/// A setting that is missing, malformed or out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file named does not exist.
    #[error("the config file {0} does not exist")]
    NoFile(PathBuf),
    /// A value is malformed or out of range. `name` says where it came from
    /// (`THE_EYE_WORKERS`, a key in a file, or a flag).
    #[error("{name}: {problem}; for example {example}")]
    Invalid {
        /// Where the value came from.
        name: String,
        /// What is wrong with it.
        problem: String,
        /// A valid value.
        example: String,
    },
    /// A key in the file that is not a setting.
    #[error("{0}")]
    Unknown(String),
}

/// A valid value of each setting, for error messages.
fn example(key: &str) -> &'static str {
    match key {
        "listen" | "worker_health_listen" => "0.0.0.0:8000",
        "data_dir" => "/var/lib/the-eye",
        "database_url" => "postgres://the_eye@db.internal/the_eye",
        "allowed_hosts" => "events.example.com,.example.org",
        "rate_limit_app" | "rate_limit_ip" => "100/s (or 6000/min, or off)",
        "redis_url" => "redis://127.0.0.1:6379",
        "redis_prefix" => "the-eye",
        "log_format" => "json",
        "trust_proxy" | "allow_unsafe_redis" | "metrics_public" => "true",
        "demo" => "false",
        "max_json_depth" => "32 (at most 120)",
        k if k.ends_with("_secs") || k.ends_with("_ms") => "10",
        k if k.ends_with("_days") => "90 (0 keeps forever)",
        k if k.ends_with("_bytes") => "1048576",
        _ => "4",
    }
}

/// Where the value of `key` came from, as a person would look for it.
fn source_of(figment: &Figment, key: &str) -> String {
    use figment::Source;
    let env = format!("THE_EYE_{}", key.to_ascii_uppercase());
    match figment.find_metadata(key) {
        Some(md) if md.name.contains("environment") => env,
        Some(md) => match &md.source {
            Some(Source::File(path)) => format!("{key} (in {})", path.display()),
            // A `Serialized` provider is named after its type: the flags are `Overrides`.
            _ if md.name.ends_with("Overrides") => format!("--{}", key.replace('_', "-")),
            _ => format!("{key} (or {env})"),
        },
        None => format!("{key} (or {env})"),
    }
}

/// The names of all settings, as their environment variables spell them after the prefix.
fn setting_names() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl RawSettings {
    /// Parses every value into its type (settings built in code, as tests do).
    pub fn parse(self) -> Result<Settings, ConfigError> {
        self.parse_from(&Figment::new())
    }

    /// Parses every value into its type, naming the source of the first bad one.
    fn parse_from(self, figment: &Figment) -> Result<Settings, ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Invalid {
            name: source_of(figment, key),
            problem,
            example: example(key).to_string(),
        };
        let positive = [
            ("worker_batch_size", self.worker_batch_size as u64),
            ("max_attempts", u64::from(self.max_attempts)),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_decompressed_bytes", self.max_decompressed_bytes as u64),
            ("max_events_per_request", self.max_events_per_request as u64),
            ("max_event_bytes", self.max_event_bytes as u64),
            ("max_json_depth", self.max_json_depth as u64),
            ("max_text_chars", self.max_text_chars as u64),
            ("queue_max_depth", self.queue_max_depth),
            ("redis_claim_idle_secs", self.redis_claim_idle_secs),
            ("spool_claim_idle_secs", self.spool_claim_idle_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_connections", self.max_connections as u64),
            ("max_uri_bytes", self.max_uri_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("upkeep_interval_secs", self.upkeep_interval_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(bad(key, "must be greater than 0".into()));
        }
        // serde_json refuses deeper documents itself; past that our limit would be a lie.
        if self.max_json_depth > 120 {
            return Err(bad("max_json_depth", "must be at most 120".into()));
        }
        let allowed_hosts = AllowedHosts::parse(&self.allowed_hosts).map_err(|e| bad("allowed_hosts", e))?;
        let rate_limit_app = Rate::parse(&self.rate_limit_app).map_err(|e| bad("rate_limit_app", e))?;
        let rate_limit_ip = Rate::parse(&self.rate_limit_ip).map_err(|e| bad("rate_limit_ip", e))?;
        let database = match &self.database_url {
            Some(url) => DatabaseUrl::parse(url).map_err(|e| bad("database_url", e))?,
            None => DatabaseUrl::Sqlite(format!("sqlite://{}", self.data_dir.join("the-eye.db").display())),
        };
        if let Some(url) = &self.redis_url {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") && !url.starts_with("unix://") {
                return Err(bad("redis_url", format!("{url:?} is not a Redis URL")));
            }
        }
        let days = |n: u32| (n > 0).then(|| chrono::Duration::days(i64::from(n)));
        let retention = Retention {
            events: days(self.retention_days),
            errors: days(self.error_retention_days),
            rollups: days(self.rollup_retention_days),
        };
        let secs = Duration::from_secs;
        Ok(Settings {
            http: HttpSettings {
                listen: self.listen,
                allowed_hosts,
                trust_proxy: self.trust_proxy,
                request_timeout: secs(self.request_timeout_secs),
                header_read_timeout: secs(self.header_read_timeout_secs),
                idle_timeout: secs(self.idle_timeout_secs),
                max_connections: self.max_connections,
                max_uri_bytes: self.max_uri_bytes,
                max_header_bytes: self.max_header_bytes,
                shutdown_timeout: secs(self.shutdown_timeout_secs),
                metrics_public: self.metrics_public,
            },
            ingest: IngestSettings {
                rate_limit_app,
                rate_limit_ip,
                max_body_bytes: self.max_body_bytes,
                max_decompressed_bytes: self.max_decompressed_bytes,
                max_events_per_request: self.max_events_per_request,
                max_event_bytes: self.max_event_bytes,
                max_json_depth: self.max_json_depth,
                max_rejected_body_bytes: self.max_rejected_body_bytes,
                retry_after: secs(self.retry_after_secs.max(1)),
            },
            rules: Rules {
                max_text_chars: self.max_text_chars,
                max_clock_skew: chrono::Duration::seconds(self.max_clock_skew_secs.min(i64::MAX as u64) as i64),
            },
            queue: QueueSettings {
                redis_url: self.redis_url,
                redis_prefix: self.redis_prefix,
                redis_claim_idle: secs(self.redis_claim_idle_secs),
                spool_claim_idle: secs(self.spool_claim_idle_secs),
                allow_unsafe_redis: self.allow_unsafe_redis,
                max_depth: self.queue_max_depth,
            },
            worker: WorkerSettings {
                workers: self.workers,
                batch_size: self.worker_batch_size,
                linger: Duration::from_millis(self.worker_linger_ms),
                max_attempts: self.max_attempts,
                catalog_refresh: secs(self.catalog_refresh_secs),
                health_listen: self.worker_health_listen,
            },
            store: StoreSettings {
                data_dir: self.data_dir,
                database,
                retention,
                upkeep_interval: secs(self.upkeep_interval_secs),
            },
            log_format: self.log_format,
            demo: self.demo,
        })
    }
}

/// One figment error as a sentence naming its source.
fn describe(figment: &Figment, e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let Some(key) = e.path.last().cloned() else { return ConfigError::Unknown(e.to_string()) };
    // Serde names Rust types; say what a person would type instead.
    let plain = |expected: &str| match expected {
        "usize" | "u64" | "u32" | "u16" => "a whole number".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        other => other.to_string(),
    };
    let problem = match &e.kind {
        Kind::InvalidType(actual, expected) => format!("{actual} is not {}", plain(expected)),
        Kind::InvalidValue(actual, expected) => format!("{actual} is not {}", plain(expected)),
        Kind::UnknownVariant(v, known) => format!("{v:?} is not one of {}", known.join(", ")),
        _ => e.kind.to_string(),
    };
    if let Kind::UnknownField(field, _) = &e.kind {
        return ConfigError::Unknown(format!(
            "{field:?} is not a setting (a typo?); the settings are listed in the README"
        ));
    }
    ConfigError::Invalid { name: source_of(figment, &key), problem, example: example(&key).to_string() }
}

impl Settings {
    /// Loads the layers: defaults, the TOML file if given, the environment, then the flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from_env(file, overrides, Env::prefixed("THE_EYE_"))
    }

    fn load_from_env(file: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::NoFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only settings are read from the environment: THE_EYE_CONFIG, THE_EYE_LOG
        // and the test suite's THE_EYE_TEST_* share the prefix but are not settings.
        let known = setting_names();
        let env = env.filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        let figment = figment.merge(env).merge(Serialized::globals(overrides));
        let raw: RawSettings = figment.extract().map_err(|e| describe(&figment, e))?;
        raw.parse_from(&figment)
    }

    /// `THE_EYE_*` variables that are neither settings nor read elsewhere:
    /// probably typos, worth a warning.
    pub fn unknown_env_vars() -> Vec<String> {
        let known = setting_names();
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("THE_EYE_").map(str::to_ascii_lowercase))
            .filter(|k| !known.contains(k) && !["config", "log"].contains(&k.as_str()) && !k.starts_with("test_"))
            .map(|k| format!("THE_EYE_{}", k.to_ascii_uppercase()))
            .collect()
    }
}

#[cfg(test)]
// figment's Jail closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("eye.toml", "listen = \"0.0.0.0:9000\"\nworkers = 7\nmax_text_chars = 10\n")?;
            jail.set_env("THE_EYE_WORKERS", "3");
            jail.set_env("THE_EYE_DATA_DIR", "/env/dir");
            let overrides = Overrides { data_dir: Some("/flag/dir".into()), ..Default::default() };
            let s = Settings::load(Some(Path::new("eye.toml")), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(s.http.listen.to_string(), "0.0.0.0:9000"); // file
            assert_eq!(s.worker.workers, 3); // env beats file
            assert_eq!(s.store.data_dir, PathBuf::from("/flag/dir")); // flag beats env
            assert_eq!(s.rules.max_text_chars, 10);
            assert_eq!(s.ingest.max_body_bytes, Settings::default().ingest.max_body_bytes); // default
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("eye.toml", "lisen = \"x\"\n")?;
            let err = Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("\"lisen\" is not a setting"), "{err}");
            jail.create_file("eye.toml", "")?;
            jail.set_env("THE_EYE_MAX_BODY_BYTES", "0");
            let err = Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("THE_EYE_MAX_BODY_BYTES: must be greater than 0"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_variable_and_shows_a_valid_one() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("THE_EYE_WORKERS", "many");
            let err = Settings::load(None, &Overrides::default()).unwrap_err().to_string();
            assert!(err.starts_with("THE_EYE_WORKERS: "), "{err}");
            assert!(err.contains("for example 4"), "{err}");
            jail.set_env("THE_EYE_WORKERS", "2");
            jail.set_env("THE_EYE_RATE_LIMIT_IP", "lots");
            let err = Settings::load(None, &Overrides::default()).unwrap_err().to_string();
            assert!(err.starts_with("THE_EYE_RATE_LIMIT_IP: "), "{err}");
            assert!(err.contains("100/s"), "{err}");
            jail.set_env("THE_EYE_RATE_LIMIT_IP", "10/s");
            jail.create_file("eye.toml", "allowed_hosts = \"bad host:80\"\n")?;
            let err = Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).unwrap_err().to_string();
            assert!(err.starts_with("allowed_hosts (in "), "{err}");
            jail.create_file("eye.toml", "")?;
            jail.set_env("THE_EYE_DATABASE_URL", "mysql://x");
            let err = Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).unwrap_err().to_string();
            assert!(err.starts_with("THE_EYE_DATABASE_URL: ") && err.contains("postgres://"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn other_the_eye_variables_do_not_stop_start_up() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("THE_EYE_CONFIG", "/etc/the-eye.toml");
            jail.set_env("THE_EYE_LOG", "debug");
            jail.set_env("THE_EYE_TEST_POSTGRES_URL", "postgres://x");
            jail.set_env("THE_EYE_LISTN", "typo");
            jail.set_env("THE_EYE_LISTEN", "127.0.0.1:9");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.http.listen.to_string(), "127.0.0.1:9");
            assert_eq!(Settings::unknown_env_vars(), vec!["THE_EYE_LISTN".to_string()]);
            Ok(())
        });
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let raw = RawSettings { data_dir: "/var/eye".into(), ..Default::default() };
        let s = raw.parse().unwrap();
        assert_eq!(s.store.database, DatabaseUrl::Sqlite("sqlite:///var/eye/the-eye.db".into()));
    }
}
