//! The agent's configuration: a TOML file (default `/etc/medic/agent.toml`), then `MEDIC_AGENT_*`
//! environment variables over it.
//!
//! ```toml
//! server = "https://medic.example.com:8443"
//! api_key_file = "/etc/medic/agent.key"
//! allowlist = "/etc/medic/allowlist.toml"   # the default
//!
//! [tls]
//! ca = "/etc/medic/ca.pem"
//!
//! [labels]
//! role = "web"
//! ```
//!
//! `docs/agent.md` is the reference for every key and variable. The file names the allowlist, so
//! it is trusted like the allowlist: read through [`medic_allowlist::open_trusted_file`]
//! (owned by the trusted user, not writable by others, in trusted directories). Unknown keys are
//! errors, so a misspelt key never silently leaves a default in force. Files holding secrets
//! (the API key, the TLS client key) must not be readable by others.
//!
//! Environment variables are read through a function argument rather than `std::env`, so
//! parsing is tested without touching the process's environment.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use medic_allowlist::{FilePolicy, Refusal, open_trusted_file};
use serde::Deserialize;

use crate::containment::Setting as ContainmentSetting;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/medic/agent.toml";
const DEFAULT_ALLOWLIST: &str = "/etc/medic/allowlist.toml";
const DEFAULT_STATE_DIR: &str = "/var/lib/medic-agent";
const DEFAULT_KILL_SWITCH_FILE: &str = "/etc/medic/agent.paused";
const MAX_LEN: u64 = 64 * 1024;
const MAX_SECRET_LEN: u64 = 64 * 1024;
const MAX_LABELS: usize = 64;
const MAX_LABEL_LEN: usize = 256;
const MAX_API_KEY_LEN: usize = 1024;

/// A named source of environment variables (`std::env::var` in production, a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment, as [`Env`] expects it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Who must own the configuration file: it is checked before it is read, so this cannot come
/// from the file itself. `--owner-uid`, else `MEDIC_AGENT_OWNER_UID`, else root.
pub fn bootstrap_policy(owner_uid: Option<u32>, env: Env) -> FilePolicy {
    owner_uid
        .or_else(|| env("MEDIC_AGENT_OWNER_UID").and_then(|uid| uid.trim().parse().ok()))
        .map_or(FilePolicy::ROOT, FilePolicy::owned_by)
}

/// A valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's gRPC address, `https://host:port` (or `http://` for tests).
    pub server: String,
    /// A file holding the API key (`agent` scope). `MEDIC_AGENT_API_KEY` takes precedence.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// TLS settings for `https://` servers.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The allowlist file.
    #[serde(default = "default_allowlist")]
    pub allowlist: PathBuf,
    /// Where the agent keeps its id and its memory of executions.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Labels the server selects agents by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The kill switch in the file: while true, every execution is refused (`paused`).
    #[serde(default)]
    pub executions_paused: bool,
    /// Why executions are paused, shown to the server.
    #[serde(default)]
    pub paused_reason: String,
    /// A file whose existence pauses executions; its first line is the reason. Empty: none.
    #[serde(default = "default_kill_switch_file")]
    pub kill_switch_file: PathBuf,
    /// How many scripts may run at once.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// How many bytes of output (both streams) are sent per execution.
    #[serde(default = "default_output_cap")]
    pub output_cap_bytes: u64,
    /// How long a killed script gets between `SIGTERM` and `SIGKILL`.
    #[serde(default = "default_kill_grace")]
    pub kill_grace_seconds: u64,
    /// How every process a script starts is contained: `auto`, `cgroup`, `subreaper` or
    /// `process_group` (see [`crate::containment`]).
    #[serde(default)]
    pub containment: ContainmentSetting,
    /// `host:port` to serve Prometheus metrics on; empty: no metrics endpoint.
    #[serde(default)]
    pub metrics_listen: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Trust files owned by this uid instead of root (for tests and trials without root).
    #[serde(default)]
    pub owner_uid: Option<u32>,
    /// An OTLP/gRPC collector to export trace spans to (built with the `otel` feature only).
    #[serde(default)]
    pub otlp_endpoint: String,
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name to verify the server's certificate against, when not the URL's host.
    #[serde(default)]
    pub domain: Option<String>,
}

fn default_allowlist() -> PathBuf {
    PathBuf::from(DEFAULT_ALLOWLIST)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn default_kill_switch_file() -> PathBuf {
    PathBuf::from(DEFAULT_KILL_SWITCH_FILE)
}

fn default_max_concurrent() -> usize {
    16
}

fn default_output_cap() -> u64 {
    1024 * 1024
}

fn default_kill_grace() -> u64 {
    5
}

fn default_log_level() -> String {
    "info".into()
}

/// Why the configuration cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file failed the trust checks.
    Untrusted(Refusal),
    /// It could not be read, is too large, or is not UTF-8.
    Unreadable(String),
    /// Not valid TOML, or not the shape of a configuration.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Untrusted(refusal) => write!(f, "cannot trust the file: {refusal}"),
            ConfigError::Unreadable(message) => write!(f, "cannot read it: {message}"),
            ConfigError::Invalid(message) => write!(f, "invalid: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

impl Config {
    /// Parse configuration text (without environment overrides).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Read the trusted configuration file at `path` (without environment overrides).
    pub fn load(path: &Path, policy: &FilePolicy) -> Result<Self, ConfigError> {
        let file = open_trusted_file(path, policy).map_err(ConfigError::Untrusted)?;
        let bytes = read_bounded(file, MAX_LEN)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Unreadable("not UTF-8 text".into()))?;
        Self::from_toml(&text)
    }

    /// Read the file at `path`, then apply the `MEDIC_AGENT_*` variables of `env` over it.
    pub fn load_with_env(path: &Path, policy: &FilePolicy, env: Env) -> Result<Self, ConfigError> {
        let mut config = Self::load(path, policy)?;
        config.apply_env(env)?;
        Ok(config)
    }

    /// Apply the `MEDIC_AGENT_*` variables over the file's values, then validate the result.
    pub fn apply_env(&mut self, env: Env) -> Result<(), ConfigError> {
        let var = |name: &str| env(name).map(|value| value.trim().to_owned());
        if let Some(value) = var("MEDIC_AGENT_SERVER") {
            self.server = value;
        }
        if let Some(value) = var("MEDIC_AGENT_API_KEY_FILE") {
            self.api_key_file = non_empty_path(&value);
        }
        if let Some(value) = var("MEDIC_AGENT_TLS_CA") {
            self.tls.ca = non_empty_path(&value);
        }
        if let Some(value) = var("MEDIC_AGENT_TLS_CERT") {
            self.tls.cert = non_empty_path(&value);
        }
        if let Some(value) = var("MEDIC_AGENT_TLS_KEY") {
            self.tls.key = non_empty_path(&value);
        }
        if let Some(value) = var("MEDIC_AGENT_TLS_DOMAIN") {
            self.tls.domain = (!value.is_empty()).then_some(value);
        }
        if let Some(value) = var("MEDIC_AGENT_ALLOWLIST") {
            self.allowlist = PathBuf::from(value);
        }
        if let Some(value) = var("MEDIC_AGENT_STATE_DIR") {
            self.state_dir = PathBuf::from(value);
        }
        if let Some(value) = var("MEDIC_AGENT_LABELS") {
            self.labels = parse_labels(&value)?;
        }
        if let Some(value) = var("MEDIC_AGENT_EXECUTIONS_PAUSED") {
            self.executions_paused = parse_bool("MEDIC_AGENT_EXECUTIONS_PAUSED", &value)?;
        }
        if let Some(value) = env("MEDIC_AGENT_PAUSED_REASON") {
            self.paused_reason = value;
        }
        if let Some(value) = var("MEDIC_AGENT_KILL_SWITCH_FILE") {
            self.kill_switch_file = PathBuf::from(value);
        }
        if let Some(value) = var("MEDIC_AGENT_MAX_CONCURRENT") {
            self.max_concurrent = parse_number("MEDIC_AGENT_MAX_CONCURRENT", &value)?;
        }
        if let Some(value) = var("MEDIC_AGENT_OUTPUT_CAP_BYTES") {
            self.output_cap_bytes = parse_number("MEDIC_AGENT_OUTPUT_CAP_BYTES", &value)?;
        }
        if let Some(value) = var("MEDIC_AGENT_KILL_GRACE_SECONDS") {
            self.kill_grace_seconds = parse_number("MEDIC_AGENT_KILL_GRACE_SECONDS", &value)?;
        }
        if let Some(value) = var("MEDIC_AGENT_CONTAINMENT") {
            self.containment = value
                .parse()
                .map_err(|error: String| invalid(format!("MEDIC_AGENT_CONTAINMENT: {error}")))?;
        }
        if let Some(value) = var("MEDIC_AGENT_METRICS_LISTEN") {
            self.metrics_listen = value;
        }
        if let Some(value) = var("MEDIC_AGENT_LOG_LEVEL") {
            self.log_level = value;
        }
        if let Some(value) = var("MEDIC_AGENT_OWNER_UID") {
            self.owner_uid = if value.is_empty() {
                None
            } else {
                Some(parse_number("MEDIC_AGENT_OWNER_UID", &value)?)
            };
        }
        if let Some(value) = var("MEDIC_AGENT_OTLP_ENDPOINT") {
            self.otlp_endpoint = value;
        }
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.server.starts_with("https://") || self.server.starts_with("http://")) {
            return Err(invalid("server must be an http:// or https:// address"));
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid("state_dir must be an absolute path"));
        }
        if !(1..=1024).contains(&self.max_concurrent) {
            return Err(invalid("max_concurrent must be 1 to 1024"));
        }
        if self.output_cap_bytes > 256 * 1024 * 1024 {
            return Err(invalid(
                "output_cap_bytes must be at most 268435456 (256 MiB)",
            ));
        }
        if !(1..=300).contains(&self.kill_grace_seconds) {
            return Err(invalid("kill_grace_seconds must be 1 to 300"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid("tls.cert and tls.key go together"));
        }
        self.metrics_address()?;
        if self.level().is_none() {
            return Err(invalid(
                "log_level must be one of error, warn, info, debug, trace",
            ));
        }
        check_labels(&self.labels)
    }

    /// The metrics endpoint's address, if one is configured.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_listen.is_empty() || self.metrics_listen == "off" {
            return Ok(None);
        }
        self.metrics_listen
            .parse()
            .map(Some)
            .map_err(|_| invalid("metrics_listen must be host:port, e.g. 127.0.0.1:9464"))
    }

    /// The log level.
    pub fn level(&self) -> Option<tracing::Level> {
        match self.log_level.as_str() {
            "error" => Some(tracing::Level::ERROR),
            "warn" => Some(tracing::Level::WARN),
            "info" => Some(tracing::Level::INFO),
            "debug" => Some(tracing::Level::DEBUG),
            "trace" => Some(tracing::Level::TRACE),
            _ => None,
        }
    }

    /// Who must own the allowlist and the scripts: `--owner-uid`, else `owner_uid` (from the
    /// file or `MEDIC_AGENT_OWNER_UID`), else root.
    pub fn policy(&self, owner_uid: Option<u32>) -> FilePolicy {
        owner_uid
            .or(self.owner_uid)
            .map_or(FilePolicy::ROOT, FilePolicy::owned_by)
    }

    /// The kill switch file, if one is configured.
    pub fn kill_switch(&self) -> Option<&Path> {
        (!self.kill_switch_file.as_os_str().is_empty()).then_some(self.kill_switch_file.as_path())
    }

    /// The API key: `MEDIC_AGENT_API_KEY`, else the contents of `api_key_file`.
    pub fn api_key(&self, env: Env) -> Result<Secret, ConfigError> {
        let text = match (env("MEDIC_AGENT_API_KEY"), &self.api_key_file) {
            (Some(key), _) if !key.trim().is_empty() => key,
            (_, Some(path)) => {
                let bytes = read_secret(path)?;
                String::from_utf8(bytes).map_err(|_| {
                    ConfigError::Unreadable(format!("{}: not UTF-8 text", path.display()))
                })?
            }
            _ => {
                return Err(invalid(
                    "no API key: set api_key_file or MEDIC_AGENT_API_KEY",
                ));
            }
        };
        let key = text.trim();
        if key.is_empty()
            || key.len() > MAX_API_KEY_LEN
            || !key.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(invalid(
                "the API key must be one line of printable ASCII (medic_<id>_<secret>)",
            ));
        }
        Ok(Secret(key.to_owned()))
    }
}

/// A secret that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    #[cfg(test)]
    pub fn new(secret: &str) -> Self {
        Self(secret.to_owned())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Read a file holding a secret: at most 64 KiB, and neither readable by others nor writable by
/// its group (a key anyone on the host can read is no key).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let unreadable =
        |error: std::io::Error| ConfigError::Unreadable(format!("{}: {error}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.mode();
    if mode & 0o026 != 0 {
        return Err(invalid(format!(
            "{} holds a secret but is readable by others or writable by its group (mode {:04o}); \
             chmod 600 it",
            path.display(),
            mode & 0o7777
        )));
    }
    read_bounded(file, MAX_SECRET_LEN)
        .map_err(|error| ConfigError::Unreadable(format!("{}: {error}", path.display())))
}

fn read_bounded(file: std::fs::File, max: u64) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| ConfigError::Unreadable(error.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(ConfigError::Unreadable(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

fn non_empty_path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// `role=web,env=prod`: the whole label set (an empty value clears it).
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(invalid(format!(
                "MEDIC_AGENT_LABELS: {pair:?} is not key=value"
            )));
        };
        labels.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    check_labels(&labels)?;
    Ok(labels)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_LEN || value.len() > MAX_LABEL_LEN {
            return Err(invalid(format!(
                "label {key:?}: names are 1 to {MAX_LABEL_LEN} bytes, values at most {MAX_LABEL_LEN}"
            )));
        }
    }
    Ok(())
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(format!("{name} must be true or false"))),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(format!("{name} must be a whole number")))
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const MINIMAL: &str = "server = \"https://medic:8443\"\n";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn everything_but_the_server_has_a_default() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.allowlist, PathBuf::from(DEFAULT_ALLOWLIST));
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(
            config.kill_switch(),
            Some(Path::new(DEFAULT_KILL_SWITCH_FILE))
        );
        assert!(config.labels.is_empty());
        assert!(!config.executions_paused);
        assert_eq!(config.max_concurrent, 16);
        assert_eq!(config.output_cap_bytes, 1024 * 1024);
        assert_eq!(config.metrics_address().unwrap(), None);
        assert_eq!(config.level(), Some(tracing::Level::INFO));
        assert_eq!(config.owner_uid, None);
        assert_eq!(config.containment, ContainmentSetting::Auto);
    }

    #[test]
    fn unknown_keys_missing_server_and_odd_values_are_invalid() {
        for text in [
            "",
            "server = \"https://m\"\ntypo = 1\n",
            "server = \"ftp://m\"\n",
            "server = \"https://m\"\nlabels = 3\n",
            "server = \"https://m\"\nmax_concurrent = 0\n",
            "server = \"https://m\"\nmetrics_listen = \"localhost\"\n",
            "server = \"https://m\"\nlog_level = \"chatty\"\n",
            "server = \"https://m\"\nstate_dir = \"relative\"\n",
            "server = \"https://m\"\n[tls]\ncert = \"/c.pem\"\n",
            "server = \"https://m\"\n[tls]\nroots = \"/c.pem\"\n",
            "server = \"https://m\"\ncontainment = \"jail\"\n",
        ] {
            assert!(
                matches!(Config::from_toml(text), Err(ConfigError::Invalid(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn environment_variables_override_the_file() {
        let mut config = Config::from_toml(
            "server = \"https://file:1\"\nexecutions_paused = true\n[labels]\nrole = \"db\"\n",
        )
        .unwrap();
        config
            .apply_env(&env_of(&[
                ("MEDIC_AGENT_SERVER", "http://127.0.0.1:50051"),
                ("MEDIC_AGENT_LABELS", "role=web, env = prod"),
                ("MEDIC_AGENT_EXECUTIONS_PAUSED", "false"),
                ("MEDIC_AGENT_PAUSED_REASON", "maintenance"),
                ("MEDIC_AGENT_KILL_SWITCH_FILE", ""),
                ("MEDIC_AGENT_MAX_CONCURRENT", "2"),
                ("MEDIC_AGENT_OUTPUT_CAP_BYTES", "4096"),
                ("MEDIC_AGENT_METRICS_LISTEN", "127.0.0.1:9464"),
                ("MEDIC_AGENT_OWNER_UID", "1000"),
                ("MEDIC_AGENT_STATE_DIR", "/tmp/state"),
                ("MEDIC_AGENT_TLS_CA", "/etc/ca.pem"),
                ("MEDIC_AGENT_LOG_LEVEL", "debug"),
                ("MEDIC_AGENT_CONTAINMENT", "subreaper"),
            ]))
            .unwrap();
        assert_eq!(config.server, "http://127.0.0.1:50051");
        assert_eq!(
            config.labels,
            BTreeMap::from([
                ("env".to_owned(), "prod".to_owned()),
                ("role".to_owned(), "web".to_owned())
            ])
        );
        assert!(!config.executions_paused);
        assert_eq!(config.paused_reason, "maintenance");
        assert_eq!(config.kill_switch(), None);
        assert_eq!(config.max_concurrent, 2);
        assert_eq!(config.output_cap_bytes, 4096);
        assert_eq!(
            config.metrics_address().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(config.owner_uid, Some(1000));
        assert_eq!(config.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(config.tls.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(config.level(), Some(tracing::Level::DEBUG));
        assert_eq!(config.containment, ContainmentSetting::Subreaper);
        let config = Config::from_toml(&format!("{MINIMAL}containment = \"process_group\"\n"));
        assert_eq!(
            config.unwrap().containment,
            ContainmentSetting::ProcessGroup
        );
    }

    #[test]
    fn malformed_environment_values_are_errors() {
        for (name, value) in [
            ("MEDIC_AGENT_EXECUTIONS_PAUSED", "maybe"),
            ("MEDIC_AGENT_MAX_CONCURRENT", "many"),
            ("MEDIC_AGENT_LABELS", "role"),
            ("MEDIC_AGENT_SERVER", "medic:8443"),
            ("MEDIC_AGENT_OWNER_UID", "-1"),
            ("MEDIC_AGENT_CONTAINMENT", "docker"),
        ] {
            let mut config = Config::from_toml(MINIMAL).unwrap();
            assert!(
                config.apply_env(&env_of(&[(name, value)])).is_err(),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn the_api_key_comes_from_the_environment_first_then_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "medic_k1_filesecret\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let mut config = Config::from_toml(MINIMAL).unwrap();
        assert!(config.api_key(&env_of(&[])).is_err());
        config.api_key_file = Some(path.clone());
        assert_eq!(
            config.api_key(&env_of(&[])).unwrap().expose(),
            "medic_k1_filesecret"
        );
        assert_eq!(
            config
                .api_key(&env_of(&[("MEDIC_AGENT_API_KEY", "medic_k2_envsecret")]))
                .unwrap()
                .expose(),
            "medic_k2_envsecret"
        );
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let error = config.api_key(&env_of(&[])).unwrap_err().to_string();
        assert!(error.contains("readable by others"), "{error}");
        assert!(!error.contains("filesecret"), "{error}");
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret("medic_k_s3cr3t".into());
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}
