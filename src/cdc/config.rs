//! `-cdc-config`: rqlite's change data capture configuration, read as rqlite reads it.
//!
//! The flag is `stdout`, an `http://` or `https://` URL (every other setting at its default),
//! or the path of a JSON file with rqlite's keys. Durations are Go's `time.Duration` in JSON,
//! an integer of nanoseconds; a Go duration string (`"200ms"`) is accepted too. Zero or absent
//! settings take rqlite's defaults. Unlike rqlite, a key it does not know is refused rather
//! than ignored (a misspelt `table_filter` would otherwise send every table).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Stdout,
    Http(reqwest::Url),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Stdout => f.write_str("stdout"),
            Endpoint::Http(url) => f.write_str(url.as_str()),
        }
    }
}

/// How the wait between attempts grows (rqlite's `transmit_retry_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// The same wait every time: `transmit_min_backoff`.
    Linear,
    /// Doubling from `transmit_min_backoff` up to `transmit_max_backoff`.
    Exponential,
}

/// TLS towards the endpoint (rqlite's `tls` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The configuration, defaults applied.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub endpoint: Endpoint,
    pub service_id: String,
    pub row_ids_only: bool,
    pub table_filter: Option<regex::Regex>,
    pub tls: TlsSettings,
    /// Entries per request.
    pub max_batch_size: usize,
    /// How long a request waits for more entries once it has one.
    pub max_batch_delay: Duration,
    /// How often the leader records what was delivered.
    pub high_watermark_interval: Duration,
    pub transmit_timeout: Duration,
    /// Attempts after the first before a batch is given up; None: never given up.
    pub transmit_max_retries: Option<u64>,
    pub transmit_retry_policy: RetryPolicy,
    pub transmit_min_backoff: Duration,
    pub transmit_max_backoff: Duration,
}

pub const DEFAULT_MAX_BATCH_SIZE: usize = 10;
pub const DEFAULT_MAX_BATCH_DELAY: Duration = Duration::from_millis(200);
pub const DEFAULT_HIGH_WATERMARK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TRANSMIT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TRANSMIT_MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_TRANSMIT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The file's shape: rqlite's JSON keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoint: Option<String>,
    #[serde(default)]
    service_id: String,
    #[serde(default)]
    row_ids_only: bool,
    #[serde(default)]
    table_filter: Option<String>,
    #[serde(default)]
    tls: Option<TlsSettings>,
    #[serde(default)]
    max_batch_size: i64,
    #[serde(default)]
    max_batch_delay: GoDuration,
    #[serde(default)]
    high_watermark_interval: GoDuration,
    #[serde(default)]
    transmit_timeout: GoDuration,
    #[serde(default)]
    transmit_max_retries: Option<i64>,
    #[serde(default)]
    transmit_retry_policy: Option<PolicyValue>,
    #[serde(default)]
    transmit_min_backoff: GoDuration,
    #[serde(default)]
    transmit_max_backoff: GoDuration,
}

/// A Go `time.Duration` as JSON: nanoseconds, or a Go duration string.
#[derive(Debug, Default, Clone, Copy)]
struct GoDuration(Option<Duration>);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(i64),
            Text(String),
        }
        let nanos = match Raw::deserialize(d)? {
            Raw::Nanos(n) => n,
            Raw::Text(s) => {
                crate::flags::parse_go_duration_nanos(&s).map_err(serde::de::Error::custom)?
            }
        };
        // Go treats zero (and rqlite, for most keys, negatives) as "use the default".
        Ok(GoDuration(
            u64::try_from(nanos)
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_nanos),
        ))
    }
}

/// rqlite's `RetryPolicy` is an integer (0 linear, 1 exponential); names are accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PolicyValue {
    Number(i64),
    Name(String),
}

impl CdcConfig {
    /// Reads the flag's value: `stdout`, a URL, or a file (see the module documentation).
    pub fn from_flag(value: &str) -> anyhow::Result<CdcConfig> {
        if value == "stdout" {
            return Ok(CdcConfig::with_endpoint(Endpoint::Stdout));
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            return Ok(CdcConfig::with_endpoint(Endpoint::Http(parse_url(value)?)));
        }
        CdcConfig::from_file(Path::new(value))
    }

    fn with_endpoint(endpoint: Endpoint) -> CdcConfig {
        CdcConfig {
            endpoint,
            service_id: String::new(),
            row_ids_only: false,
            table_filter: None,
            tls: TlsSettings::default(),
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_batch_delay: DEFAULT_MAX_BATCH_DELAY,
            high_watermark_interval: DEFAULT_HIGH_WATERMARK_INTERVAL,
            transmit_timeout: DEFAULT_TRANSMIT_TIMEOUT,
            transmit_max_retries: None,
            transmit_retry_policy: RetryPolicy::Linear,
            transmit_min_backoff: DEFAULT_TRANSMIT_MIN_BACKOFF,
            transmit_max_backoff: DEFAULT_TRANSMIT_MAX_BACKOFF,
        }
    }

    fn from_file(path: &Path) -> anyhow::Result<CdcConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the CDC configuration file {}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .with_context(|| format!("the CDC configuration file {}", path.display()))?;
        CdcConfig::from_parsed(file)
            .with_context(|| format!("the CDC configuration file {}", path.display()))
    }

    fn from_parsed(file: File) -> anyhow::Result<CdcConfig> {
        let endpoint = match file.endpoint.as_deref() {
            None | Some("") => bail!("endpoint is required"),
            Some("stdout") => Endpoint::Stdout,
            Some(url) => Endpoint::Http(parse_url(url)?),
        };
        let mut config = CdcConfig::with_endpoint(endpoint);
        config.service_id = file.service_id;
        config.row_ids_only = file.row_ids_only;
        config.table_filter = match file.table_filter.as_deref() {
            None | Some("") => None,
            Some(pattern) => Some(
                regex::Regex::new(pattern)
                    .with_context(|| format!("table_filter {pattern:?} is not a valid regex"))?,
            ),
        };
        config.tls = file.tls.unwrap_or_default();
        if config.tls.cert_file.is_some() != config.tls.key_file.is_some() {
            bail!("tls: cert_file and key_file go together");
        }
        if let Ok(n) = usize::try_from(file.max_batch_size) {
            if n > 0 {
                config.max_batch_size = n;
            }
        }
        let or = |d: GoDuration, default: Duration| d.0.unwrap_or(default);
        config.max_batch_delay = or(file.max_batch_delay, DEFAULT_MAX_BATCH_DELAY);
        config.high_watermark_interval = or(
            file.high_watermark_interval,
            DEFAULT_HIGH_WATERMARK_INTERVAL,
        );
        config.transmit_timeout = or(file.transmit_timeout, DEFAULT_TRANSMIT_TIMEOUT);
        config.transmit_min_backoff = or(file.transmit_min_backoff, DEFAULT_TRANSMIT_MIN_BACKOFF);
        config.transmit_max_backoff = or(file.transmit_max_backoff, DEFAULT_TRANSMIT_MAX_BACKOFF);
        config.transmit_max_retries = match file.transmit_max_retries {
            None => None,
            Some(n) if n < 0 => bail!("transmit_max_retries must not be negative"),
            Some(n) => Some(n as u64),
        };
        config.transmit_retry_policy = match file.transmit_retry_policy {
            None | Some(PolicyValue::Number(0)) => RetryPolicy::Linear,
            Some(PolicyValue::Number(1)) => RetryPolicy::Exponential,
            Some(PolicyValue::Name(n)) if n.eq_ignore_ascii_case("linear") => RetryPolicy::Linear,
            Some(PolicyValue::Name(n)) if n.eq_ignore_ascii_case("exponential") => {
                RetryPolicy::Exponential
            }
            Some(other) => {
                bail!("transmit_retry_policy must be 0 (linear) or 1 (exponential), not {other:?}")
            }
        };
        // Settings that would not be used are a mistake to report, not to ignore: with an
        // http:// endpoint the events would go in the clear.
        let is_https = matches!(&config.endpoint, Endpoint::Http(url) if url.scheme() == "https");
        if !is_https && config.tls != TlsSettings::default() {
            bail!(
                "tls settings need an https:// endpoint, not {}",
                config.endpoint
            );
        }
        Ok(config)
    }

    /// The wait before attempt `attempt` (1 for the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        match self.transmit_retry_policy {
            RetryPolicy::Linear => self.transmit_min_backoff,
            RetryPolicy::Exponential => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                self.transmit_min_backoff
                    .saturating_mul(factor)
                    .min(self.transmit_max_backoff)
            }
        }
    }
}

fn parse_url(value: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(value)
        .with_context(|| format!("the CDC endpoint {value:?} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("the CDC endpoint {value:?} must be an http:// or https:// URL with a host");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> anyhow::Result<CdcConfig> {
        CdcConfig::from_parsed(serde_json::from_str(json)?)
    }

    #[test]
    fn a_url_or_stdout_takes_every_default() {
        let c = CdcConfig::from_flag("http://127.0.0.1:9/cdc").unwrap();
        assert_eq!(c.endpoint.to_string(), "http://127.0.0.1:9/cdc");
        assert_eq!(c.max_batch_size, 10);
        assert_eq!(c.max_batch_delay, Duration::from_millis(200));
        assert_eq!(c.high_watermark_interval, Duration::from_secs(1));
        assert_eq!(c.transmit_timeout, Duration::from_secs(5));
        assert_eq!(c.transmit_max_retries, None);
        assert_eq!(c.transmit_retry_policy, RetryPolicy::Linear);
        assert_eq!(
            CdcConfig::from_flag("stdout").unwrap().endpoint,
            Endpoint::Stdout
        );
    }

    #[test]
    fn a_file_has_rqlites_keys_with_go_durations() {
        let c = file(
            r#"{"endpoint":"https://sink:8443/e","service_id":"s1","row_ids_only":true,
                "table_filter":"^users$","max_batch_size":0,"max_batch_delay":50000000,
                "high_watermark_interval":"250ms","transmit_timeout":0,
                "transmit_max_retries":3,"transmit_retry_policy":1,
                "transmit_min_backoff":"100ms","transmit_max_backoff":"1s",
                "tls":{"insecure_skip_verify":true,"server_name":"sink"}}"#,
        )
        .unwrap();
        assert_eq!(c.service_id, "s1");
        assert!(c.row_ids_only);
        assert!(c.table_filter.as_ref().unwrap().is_match("users"));
        assert!(!c.table_filter.as_ref().unwrap().is_match("users2"));
        assert_eq!(c.max_batch_size, 10, "zero takes the default");
        assert_eq!(c.max_batch_delay, Duration::from_millis(50));
        assert_eq!(c.high_watermark_interval, Duration::from_millis(250));
        assert_eq!(c.transmit_timeout, Duration::from_secs(5));
        assert_eq!(c.transmit_max_retries, Some(3));
        assert_eq!(c.transmit_retry_policy, RetryPolicy::Exponential);
        assert!(c.tls.insecure_skip_verify);
        let waits: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        let linear = file(r#"{"endpoint":"stdout","transmit_retry_policy":"linear"}"#).unwrap();
        assert_eq!(linear.backoff(5), Duration::from_secs(1));
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let err = |json: &str| format!("{:#}", file(json).unwrap_err());
        assert!(err(r#"{"service_id":"x"}"#).contains("endpoint is required"));
        assert!(err(r#"{"endpoint":"stdout","tabel_filter":"x"}"#).contains("unknown field"));
        assert!(err(r#"{"endpoint":"stdout","table_filter":"("}"#).contains("not a valid regex"));
        assert!(err(r#"{"endpoint":"ftp://x/"}"#).contains("http:// or https://"));
        assert!(err(r#"{"endpoint":"stdout","transmit_retry_policy":2}"#).contains("0 (linear)"));
        assert!(err(r#"{"endpoint":"stdout","transmit_max_retries":-1}"#).contains("negative"));
        assert!(err(r#"{"endpoint":"https://h/","tls":{"cert_file":"c"}}"#).contains("together"));
        assert!(
            err(r#"{"endpoint":"http://h/","tls":{"insecure_skip_verify":true}}"#)
                .contains("need an https:// endpoint")
        );
        assert!(
            err(r#"{"endpoint":"stdout","tls":{"ca_cert_file":"ca.pem"}}"#)
                .contains("need an https:// endpoint")
        );
        assert!(err(r#"{"endpoint":"stdout","max_batch_delay":"5 parsecs"}"#).contains("time:"));
        let missing = CdcConfig::from_flag("/nonexistent/cdc.json").unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/cdc.json"));
    }
}
