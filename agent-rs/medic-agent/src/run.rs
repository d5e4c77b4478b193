//! `medic-agent run`: the composition root. Reads the configuration, builds every component,
//! and runs until `SIGTERM` or `SIGINT`.
//!
//! Everything runs on one thread (a current-thread tokio runtime): the agent mostly waits, and
//! one thread keeps its memory small and makes the spawn of each script free of races (see
//! [`crate::executor::spawn`]).
//!
//! Before anything else the agent marks every descriptor it inherited close-on-exec (so none
//! reaches a script), and chooses its containment ([`crate::containment`]), which may move it
//! into its own cgroup leaf.
//!
//! Stopping is explicit and ordered: refuse new executions, kill the running ones (each ends
//! `FAILED`, `agent_stopped`, recorded and queued), then close the stream so those final
//! updates go out, then exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use medic_allowlist::FilePolicy;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::agent::{Agent, Source};
use crate::config::{Config, bootstrap_policy, process_env};
use crate::containment::Containment;
use crate::metrics::Metrics;
use crate::{connection, logging, metrics, sys, transport};

/// How long the stream may take to close after the executions ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the agent; the process's exit status.
pub fn run(config_path: PathBuf, owner_uid: Option<u32>) -> u8 {
    // First, before the runtime or anything else opens descriptors of its own.
    let inherited = sys::cloexec_inherited();
    let bootstrap = bootstrap_policy(owner_uid, &process_env);
    let config = match Config::load_with_env(&config_path, &bootstrap, &process_env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("medic-agent: {}: {error}", config_path.display());
            return 2;
        }
    };
    let policy = config.policy(owner_uid);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("medic-agent: cannot start the runtime: {error}");
            return 1;
        }
    };
    let source = Source {
        path: config_path,
        policy: bootstrap,
    };
    runtime.block_on(async move {
        let guard = match logging::init(&config) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("medic-agent: cannot set up logging: {error}");
                return 1;
            }
        };
        match inherited {
            Ok(0) => {}
            Ok(count) => info!(count, "marked inherited descriptors close-on-exec"),
            Err(error) => warn!(
                %error,
                "cannot list inherited descriptors; each script still closes them before exec"
            ),
        }
        let status = match serve(config, source, policy).await {
            Ok(()) => 0,
            Err(message) => {
                error!(error = %message, "medic-agent cannot run");
                1
            }
        };
        guard.shutdown().await;
        status
    })
}

async fn serve(config: Config, source: Source, policy: FilePolicy) -> Result<(), String> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|error| format!("SIGTERM handler: {error}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|error| format!("SIGINT handler: {error}"))?;
    let authorization =
        connection::authorization(&config.api_key(&process_env).map_err(|e| e.to_string())?)?;
    let endpoint = transport::endpoint(&config)?;
    let metrics_address = config.metrics_address().map_err(|e| e.to_string())?;
    let kill_grace = Duration::from_secs(config.kill_grace_seconds);
    let (containment, why) = Containment::start(config.containment)?;
    info!(mode = %containment.mode(), reason = %why, "containment chosen");
    let metrics = Arc::new(Metrics::default());
    metrics.set_containment(containment.mode());
    let agent = Arc::new(Agent::start(
        config,
        source,
        policy,
        Arc::clone(&metrics),
        containment,
    )?);
    if let Some(address) = metrics_address {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| format!("metrics endpoint {address}: {error}"))?;
        let bound = listener.local_addr().map_err(|error| error.to_string())?;
        info!(address = %bound, "metrics endpoint listening");
        tokio::spawn(metrics::serve(listener, metrics));
    }
    let seed = u64::from_le_bytes(crate::identity::random_bytes::<8>().map_err(|e| e.to_string())?);
    let (closing, closing_seen) = watch::channel(false);
    let mut connection = tokio::spawn(connection::maintain(
        Arc::clone(&agent),
        endpoint,
        authorization,
        closing_seen,
        seed,
    ));

    let received = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        _ = &mut connection => return Err("the connection task ended unexpectedly".into()),
    };
    info!(signal = received, "stopping: killing running executions");
    agent.stop_all();
    if !agent.wait_idle(kill_grace + Duration::from_secs(10)).await {
        warn!("some executions did not end in time");
    }
    closing.send_replace(true);
    if tokio::time::timeout(CLOSE_TIMEOUT, connection)
        .await
        .is_err()
    {
        warn!("the stream did not close in time");
    }
    info!("stopped");
    Ok(())
}
