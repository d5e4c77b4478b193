//! The agent's configuration file (TOML, default `/etc/medic/agent.toml`).
//!
//! So far it says where the server and the allowlist are, and the host's labels:
//!
//! ```toml
//! server = "https://medic.example.com:8443"
//! allowlist = "/etc/medic/allowlist.toml"   # the default
//!
//! [labels]
//! role = "web"
//! ```
//!
//! The file names the allowlist, so it is trusted like the allowlist: read through
//! [`medic_allowlist::open_trusted_file`] (root-owned, not writable by others, in trusted
//! directories). Unknown keys are errors.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use medic_allowlist::{FilePolicy, Refusal, open_trusted_file};
use serde::Deserialize;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/medic/agent.toml";
const DEFAULT_ALLOWLIST: &str = "/etc/medic/allowlist.toml";
const MAX_LEN: u64 = 64 * 1024;

/// A valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's gRPC address, `https://host:port`.
    pub server: String,
    /// The allowlist file.
    #[serde(default = "default_allowlist")]
    pub allowlist: PathBuf,
    /// Labels the server selects agents by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_allowlist() -> PathBuf {
    PathBuf::from(DEFAULT_ALLOWLIST)
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

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Untrusted(refusal) => write!(f, "cannot trust the file: {refusal}"),
            ConfigError::Unreadable(message) => write!(f, "cannot read it: {message}"),
            ConfigError::Invalid(message) => write!(f, "invalid: {message}"),
        }
    }
}

impl Config {
    /// Parse configuration text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if !(config.server.starts_with("https://") || config.server.starts_with("http://")) {
            return Err(ConfigError::Invalid(
                "server must be an http:// or https:// address".into(),
            ));
        }
        Ok(config)
    }

    /// Read the trusted configuration file at `path`.
    pub fn load(path: &Path, policy: &FilePolicy) -> Result<Self, ConfigError> {
        let file = open_trusted_file(path, policy).map_err(ConfigError::Untrusted)?;
        let mut bytes = Vec::new();
        file.take(MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| ConfigError::Unreadable(error.to_string()))?;
        if bytes.len() as u64 > MAX_LEN {
            return Err(ConfigError::Unreadable(format!(
                "larger than {MAX_LEN} bytes"
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Unreadable("not UTF-8 text".into()))?;
        Self::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_path_has_a_default_and_labels_are_optional() {
        let config = Config::from_toml("server = \"https://medic:8443\"\n").unwrap();
        assert_eq!(config.allowlist, PathBuf::from(DEFAULT_ALLOWLIST));
        assert!(config.labels.is_empty());
    }

    #[test]
    fn unknown_keys_missing_server_and_odd_addresses_are_invalid() {
        for text in [
            "",
            "server = \"https://m\"\ntypo = 1\n",
            "server = \"ftp://m\"\n",
            "server = \"https://m\"\nlabels = 3\n",
        ] {
            assert!(
                matches!(Config::from_toml(text), Err(ConfigError::Invalid(_))),
                "{text}"
            );
        }
    }
}
