//! The HTTP/2 connection to the server: TLS (rustls with ring; mutual TLS optional), keepalive
//! pings, and small flow-control windows.
//!
//! The agent receives little (requests of a few hundred bytes), so its receive windows are kept
//! small and fixed rather than adaptive: they bound what a server can make it buffer. Keepalive
//! pings every 30 s (also while idle) detect a dead connection; the server allows pings every
//! 10 s at most, so 30 s stays well clear of its "too many pings" limit.

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{Config, read_secret};

/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 128 * 1024;

/// The server's endpoint, ready to connect (again and again: one per stream).
pub fn endpoint(config: &Config) -> Result<Endpoint, String> {
    let mut endpoint = Endpoint::from_shared(config.server.clone())
        .map_err(|error| format!("server {:?}: {error}", config.server))?
        .user_agent(concat!("medic-agent/", env!("CARGO_PKG_VERSION")))
        .map_err(|error| error.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(false)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .buffer_size(64);
    if config.server.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls(config)?)
            .map_err(|error| format!("TLS: {error}"))?;
    }
    Ok(endpoint)
}

fn tls(config: &Config) -> Result<ClientTlsConfig, String> {
    let mut tls = ClientTlsConfig::new();
    tls = match &config.tls.ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|error| format!("tls.ca {}: {error}", path.display()))?;
            tls.ca_certificate(Certificate::from_pem(pem))
        }
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        let cert =
            std::fs::read(cert).map_err(|error| format!("tls.cert {}: {error}", cert.display()))?;
        let key = read_secret(key).map_err(|error| format!("tls.key: {error}"))?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &config.tls.domain {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}
