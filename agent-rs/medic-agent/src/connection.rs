//! The stream to the server: one `Connect` call at a time, reopened with back-off for as long
//! as the agent runs.
//!
//! # Design
//!
//! [`maintain`] loops: open a stream ([`session`]), and when it ends wait a back-off delay
//! (full jitter, 1 s up to 60 s, reset after a `Welcome`) and open the next. A session sends
//! `Hello` first, waits for the `Welcome`, lets the [`Agent`] replay what it remembers, sends a
//! heartbeat at once (so the server can tell which executions are still running) and then one
//! every interval; it hands `Execute` and `Cancel` to the agent, and sends a new `Hello`
//! whenever what it says has changed (kill switch, labels, allowlist), which it checks every few
//! seconds and after every request.
//!
//! Ending is explicit: when `closing` turns true, the session stops sending, lets the queued
//! messages (the final updates of killed executions) go out, half-closes the stream and waits
//! briefly for the server to end the call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use crate::agent::Agent;
use crate::backoff::Backoff;
use crate::config::Secret;
use crate::outbox::Link;
use crate::proto::agent_message::Body;
use crate::proto::agent_service_client::AgentServiceClient;
use crate::proto::server_message;
use crate::proto::{ServerMessage, Welcome};

/// How long the server has to answer `Hello` with `Welcome`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the kill switch, labels and allowlist are looked at between requests.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The heartbeat interval when the server names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// How long a closing stream waits for the server to end the call.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The `authorization` metadata for an API key (marked sensitive, so never printed).
pub fn authorization(key: &Secret) -> Result<AsciiMetadataValue, String> {
    let mut value = MetadataValue::try_from(format!("Bearer {}", key.expose()))
        .map_err(|_| "the API key cannot be sent as a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// How a session ended.
enum Ended {
    /// The agent is closing.
    Closing,
    /// The server ended the call, or the connection broke.
    Lost(String),
}

/// Keep a stream open until `closing` turns true.
pub async fn maintain(
    agent: Arc<Agent>,
    endpoint: Endpoint,
    authorization: AsciiMetadataValue,
    mut closing: watch::Receiver<bool>,
    seed: u64,
) {
    let mut backoff = Backoff::for_reconnects(seed);
    // When the current outage began: the end of the last welcomed stream, or the agent's start.
    let mut outage_since = Instant::now();
    let mut link_id = 0;
    loop {
        link_id += 1;
        let (welcomed, ended) =
            session(&agent, &endpoint, &authorization, link_id, &mut closing).await;
        if welcomed {
            backoff.reset();
            outage_since = Instant::now();
        }
        match ended {
            Ended::Closing => return,
            Ended::Lost(why) => {
                let delay = backoff.next_delay(outage_since.elapsed());
                warn!(
                    error = %why,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "no stream to the server; reconnecting"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = closing.changed() => return,
                }
            }
        }
        if *closing.borrow() {
            return;
        }
    }
}

/// One stream, from connecting to its end. Returns whether it was welcomed, and how it ended.
async fn session(
    agent: &Arc<Agent>,
    endpoint: &Endpoint,
    authorization: &AsciiMetadataValue,
    link_id: u64,
    closing: &mut watch::Receiver<bool>,
) -> (bool, Ended) {
    let channel = tokio::select! {
        channel = endpoint.connect() => match channel {
            Ok(channel) => channel,
            Err(error) => return (false, Ended::Lost(format!("connect: {}", error_chain(&error)))),
        },
        _ = closing.changed() => return (false, Ended::Closing),
    };
    let (link, outbound) = Link::new(link_id);
    agent.refresh();
    let mut last_hello = agent.hello();
    link.send(Body::Hello(last_hello.clone()));
    let mut request = tonic::Request::new(outbound);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    let mut client = AgentServiceClient::new(channel);
    let opening = async {
        let mut inbound = client.connect(request).await?.into_inner();
        let first = inbound.message().await?;
        Ok::<_, tonic::Status>((inbound, first))
    };
    let opened = tokio::select! {
        opened = tokio::time::timeout(WELCOME_TIMEOUT, opening) => opened,
        _ = closing.changed() => return (false, Ended::Closing),
    };
    let (mut inbound, welcome) = match opened {
        Ok(Ok((
            inbound,
            Some(ServerMessage {
                body: Some(server_message::Body::Welcome(welcome)),
            }),
        ))) => (inbound, welcome),
        Ok(Ok((_, Some(_)))) => {
            return (
                false,
                Ended::Lost("the server's first message is not a Welcome".into()),
            );
        }
        Ok(Ok((_, None))) => {
            return (
                false,
                Ended::Lost("the server ended the stream before a Welcome".into()),
            );
        }
        Ok(Err(status)) => return (false, Ended::Lost(describe(&status))),
        Err(_) => return (false, Ended::Lost("no Welcome within 60 s".into())),
    };
    let mut every = heartbeat_interval(&welcome);
    info!(
        session_id = %welcome.session_id,
        server_version = %welcome.server_version,
        heartbeat_seconds = every.as_secs(),
        "welcomed by the server"
    );
    agent.welcome(&link);
    link.send(Body::Heartbeat(agent.heartbeat()));
    let mut heartbeat = ticker(every);
    let mut refresh = ticker(REFRESH_INTERVAL);

    let ended = loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(ServerMessage { body: Some(body) })) => {
                    match body {
                        server_message::Body::Welcome(welcome) => {
                            debug!(session_id = %welcome.session_id, "welcomed again");
                            agent.welcome(&link);
                            let interval = heartbeat_interval(&welcome);
                            if interval != every {
                                every = interval;
                                heartbeat = ticker(every);
                            }
                        }
                        server_message::Body::Execute(execute) => agent.execute(execute),
                        server_message::Body::Cancel(cancel) => agent.cancel(cancel),
                    }
                    resend_hello_if_changed(agent, &link, &mut last_hello);
                }
                // A message kind from a newer protocol version: nothing to do with it.
                Ok(Some(ServerMessage { body: None })) => {}
                Ok(None) => break Ended::Lost("the server ended the stream".into()),
                Err(status) => break Ended::Lost(describe(&status)),
            },
            _ = heartbeat.tick() => {
                link.send(Body::Heartbeat(agent.heartbeat()));
            }
            _ = refresh.tick() => {
                agent.refresh();
                resend_hello_if_changed(agent, &link, &mut last_hello);
            }
            _ = closing.changed() => break Ended::Closing,
        }
    };
    agent.detach(&link);
    drop(link);
    if matches!(ended, Ended::Closing) {
        // The queue drains, then the stream half-closes; the server ends the call.
        let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Ok(Some(_)) = inbound.message().await {}
        });
        let _ = drained.await;
    }
    (true, ended)
}

fn resend_hello_if_changed(agent: &Agent, link: &Link, last: &mut crate::proto::Hello) {
    let hello = agent.hello();
    if hello != *last {
        info!(
            executions_paused = hello.executions_paused,
            "what the agent advertises changed: sending a new Hello"
        );
        link.send(Body::Hello(hello.clone()));
        *last = hello;
    }
}

fn heartbeat_interval(welcome: &Welcome) -> Duration {
    match welcome.heartbeat_interval_seconds {
        0 => DEFAULT_HEARTBEAT,
        seconds => Duration::from_secs(u64::from(seconds.min(3600))),
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut interval = interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        // Wrappers often repeat their cause's message; say it once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|layer| layer as _)
        }
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        let error = Layer(
            "transport error",
            Some(Box::new(Layer(
                "invalid peer certificate",
                Some(Box::new(Layer("invalid peer certificate", None))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "transport error: invalid peer certificate"
        );
    }

    #[test]
    fn a_zero_heartbeat_interval_means_the_default_and_long_ones_are_capped() {
        let welcome = |seconds| Welcome {
            heartbeat_interval_seconds: seconds,
            ..Welcome::default()
        };
        assert_eq!(heartbeat_interval(&welcome(0)), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(&welcome(15)), Duration::from_secs(15));
        assert_eq!(
            heartbeat_interval(&welcome(100_000)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn the_api_key_travels_as_a_sensitive_bearer_header() {
        let value = authorization(&crate::config::Secret::new("medic_k_s")).unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer medic_k_s");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("medic_k_s"));
    }
}
