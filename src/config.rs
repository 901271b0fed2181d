//! One typed [`Settings`], layered: defaults < TOML file < `THE_EYE_*` environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Every setting of the service. Each field is also an environment variable:
/// `THE_EYE_` followed by the field name in capitals (`listen` → `THE_EYE_LISTEN`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Directory for the spool and the default SQLite database.
    pub data_dir: PathBuf,
    /// Store URL; unset means `sqlite://<data_dir>/the-eye.db`.
    pub database_url: Option<String>,
    /// Host names this server answers to, comma-separated; `.example.com` also
    /// matches every subdomain, `*` matches anything (Django's `ALLOWED_HOSTS`).
    pub allowed_hosts: String,
    /// Behind a reverse proxy: honour `X-Forwarded-Host` and `X-Forwarded-For`.
    pub trust_proxy: bool,
    /// Events requests per application, like `1000/s` or `60000/min`; `off` for none.
    pub rate_limit_app: String,
    /// Events requests per client address, like `100/s`; `off` for none.
    pub rate_limit_ip: String,
    /// Redis URL for the queue; unset means the embedded spool in the data dir.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (the stream is `<prefix>:events`).
    pub redis_prefix: String,
    /// Seconds an entry may stay pending with a consumer before another takes it over.
    pub redis_claim_idle_secs: u64,
    /// Seconds a spool entry may stay claimed by a worker without an ack or a
    /// release before it is handed out again (the spool's `redis_claim_idle_secs`).
    pub spool_claim_idle_secs: u64,
    /// Start even when Redis is configured so that it can lose acknowledged events.
    pub allow_unsafe_redis: bool,
    /// Address for `the-eye worker` to serve `/healthz` and `/readyz` on; unset: none.
    pub worker_health_listen: Option<SocketAddr>,
    /// Worker tasks inside `serve` or `worker` (0 in `serve`: ingest only, no processing).
    pub workers: usize,
    /// Queue entries a worker takes, validates and writes in one transaction.
    pub worker_batch_size: usize,
    /// Milliseconds a worker waits for a partial batch to fill before writing it.
    pub worker_linger_ms: u64,
    /// Failed processing attempts before an entry becomes an event error.
    pub max_attempts: u32,
    /// Largest request body on the wire, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest body after gzip decoding, in bytes (413 beyond).
    pub max_decompressed_bytes: usize,
    /// Most events in one request (413 beyond).
    pub max_events_per_request: usize,
    /// Largest single event, in bytes of compact JSON (413 beyond).
    pub max_event_bytes: usize,
    /// Deepest nesting of arrays and objects in a body, counting the outer one (400 beyond).
    pub max_json_depth: usize,
    /// Longest `session_id`, `category` and `name`, in characters.
    pub max_text_chars: usize,
    /// How far in the future an event timestamp may lie, in seconds.
    pub max_clock_skew_secs: u64,
    /// How much of a body that is not JSON is kept in its event error, in bytes.
    pub max_rejected_body_bytes: usize,
    /// Queue entries waiting for a worker before the collector answers 503.
    pub queue_max_depth: u64,
    /// Seconds a client is told to wait (`Retry-After`) when the queue is full or down.
    pub retry_after_secs: u64,
    /// Seconds a request may take before it is answered 503.
    pub request_timeout_secs: u64,
    /// Seconds a client has to send a request's head (line and headers), from
    /// its connection or its first byte; then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    pub idle_timeout_secs: u64,
    /// Open client connections at most. At the cap, the connection idle the
    /// longest (or still sending its head) is closed for a new one; when every
    /// connection is busy, the new one gets 503. Kept under the file limit.
    pub max_connections: usize,
    /// Longest request target (path and query), in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest request head (all header lines together), in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Seconds a shutdown waits for in-flight requests, then for workers.
    pub shutdown_timeout_secs: u64,
    /// Seconds the worker keeps a copy of categories and event types before reloading.
    pub catalog_refresh_secs: u64,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
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

impl Default for Settings {
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
            worker_linger_ms: 20,
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
            log_format: LogFormat::Text,
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
    /// A layer could not be read or a value has the wrong type.
    #[error(transparent)]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its range.
    #[error("{0}")]
    Invalid(String),
}

/// The names of all settings, as their environment variables spell them after the prefix.
fn setting_names() -> Vec<String> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Settings {
    /// Loads the layers: defaults, the TOML file if given, the environment, then the flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from_env(file, overrides, Env::prefixed("THE_EYE_"))
    }

    fn load_from_env(file: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only settings are read from the environment: THE_EYE_CONFIG, THE_EYE_LOG
        // and the test suite's THE_EYE_TEST_* share the prefix but are not settings.
        let known = setting_names();
        let env = env.filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        let settings: Settings =
            figment.merge(env).merge(Serialized::globals(overrides)).extract().map_err(Box::new)?;
        settings.check()?;
        Ok(settings)
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

    fn check(&self) -> Result<(), ConfigError> {
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
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be greater than 0")));
        }
        crate::domain::hosts::AllowedHosts::parse(&self.allowed_hosts).map_err(ConfigError::Invalid)?;
        crate::rate::Rate::parse(&self.rate_limit_app)
            .map_err(|e| ConfigError::Invalid(format!("rate_limit_app: {e}")))?;
        crate::rate::Rate::parse(&self.rate_limit_ip)
            .map_err(|e| ConfigError::Invalid(format!("rate_limit_ip: {e}")))?;
        // serde_json refuses deeper documents itself; past that our limit would be a lie.
        if self.max_json_depth > 120 {
            return Err(ConfigError::Invalid("max_json_depth must be at most 120".into()));
        }
        Ok(())
    }

    /// The store URL in force.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("the-eye.db").display()))
    }

    /// Path of the embedded spool database.
    pub fn spool_path(&self) -> PathBuf {
        self.data_dir.join("spool.db")
    }

    /// `Retry-After` for 503 answers.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.retry_after_secs.max(1))
    }

    /// The validation rules derived from these settings.
    pub fn rules(&self) -> crate::domain::Rules {
        crate::domain::Rules {
            max_text_chars: self.max_text_chars,
            max_clock_skew: chrono::Duration::seconds(self.max_clock_skew_secs.min(i64::MAX as u64) as i64),
        }
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
            assert_eq!(s.listen.to_string(), "0.0.0.0:9000"); // file
            assert_eq!(s.workers, 3); // env beats file
            assert_eq!(s.data_dir, PathBuf::from("/flag/dir")); // flag beats env
            assert_eq!(s.max_text_chars, 10);
            assert_eq!(s.max_body_bytes, Settings::default().max_body_bytes); // default
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("eye.toml", "lisen = \"x\"\n")?;
            assert!(Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).is_err());
            jail.create_file("eye.toml", "")?;
            jail.set_env("THE_EYE_MAX_BODY_BYTES", "0");
            let err = Settings::load(Some(Path::new("eye.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("max_body_bytes"), "{err}");
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
            assert_eq!(s.listen.to_string(), "127.0.0.1:9");
            assert_eq!(Settings::unknown_env_vars(), vec!["THE_EYE_LISTN".to_string()]);
            Ok(())
        });
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let s = Settings { data_dir: "/var/eye".into(), ..Default::default() };
        assert_eq!(s.database_url(), "sqlite:///var/eye/the-eye.db");
    }
}
