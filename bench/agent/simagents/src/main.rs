//! `simagents`: N simulated Medic agents in one process, for the agent benchmarks.
//!
//! Every agent has its own TCP connection with the real agent's HTTP/2 settings (copied from
//! `agent-rs/medic-agent/src/transport.rs`: fixed 64 KiB stream / 128 KiB connection windows,
//! keepalive pings every 30 s), calls `AgentService/Connect` with `authorization: Bearer
//! TOKEN`, sends a `Hello` with a one-script allowlist, waits for the `Welcome`, then sends a
//! `Heartbeat` every `--heartbeat-seconds`. Agents connect `--batch` at a time: the next batch
//! starts once every agent of this one got its Welcome, failed, or 30 s passed.
//!
//! Prints `connected N failed M` on one line once every agent is answered (agents still
//! unanswered after 30 s count as neither), then holds the streams until stdin closes or a
//! SIGTERM/SIGINT arrives. Exits 0 if every agent connected, 1 if not, 2 on bad arguments.

mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/medic.agent.v1.rs"));
}

use pb::agent_service_client::AgentServiceClient;
use pb::{AgentMessage, AllowlistSummary, Heartbeat, Hello, ScriptRules, ServerMessage};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Streaming};

const USAGE: &str = "\
Usage: simagents --target URL --agents N --token T [options]

N simulated Medic agents in one process, each on its own HTTP/2 connection with the real
agent's settings: Connect (authorization: Bearer T), Hello, wait for the Welcome, then a
Heartbeat every --heartbeat-seconds. Prints `connected N failed M` once every agent is
answered, then holds the streams until stdin closes or SIGTERM/SIGINT.

Options:
  --target URL             the agent gRPC endpoint, plaintext (http://127.0.0.1:50051)
  --agents N               how many agents
  --token T                API key with the `agent` scope (any string for a bare server)
  --first-index K          first agent index (default 0); agent ids are
                           00000000-0000-4000-8000-{index:012x}, as in bench/agent/streams.py
  --batch B                agents connecting at once (default 100)
  --heartbeat-seconds S    heartbeat interval (default 30)
  -h, --help               this text

Exit status: 0 if every agent connected, 1 if not, 2 on bad arguments.";

/// Errors of the first few agents are printed; the rest are only counted.
const SHOWN_ERRORS: usize = 10;
/// How long one batch may take to be answered before the next one starts.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    target: String,
    agents: usize,
    token: String,
    first_index: usize,
    batch: usize,
    heartbeat: Duration,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut target, mut agents, mut token) = (None, None, None);
    let (mut first_index, mut batch, mut heartbeat) = (0usize, 100usize, 30u64);
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let mut value = || match inline.clone().or_else(|| argv.next()) {
            Some(v) => Ok(v),
            None => Err(format!("{name} needs a value")),
        };
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"));
        match name.as_str() {
            "--target" => target = Some(value()?),
            "--token" => token = Some(value()?),
            "--agents" => agents = Some(number(value()?)? as usize),
            "--first-index" => first_index = number(value()?)? as usize,
            "--batch" => batch = number(value()?)? as usize,
            "--heartbeat-seconds" => heartbeat = number(value()?)?,
            _ => return Err(format!("unknown argument: {name}")),
        }
    }
    if batch == 0 || heartbeat == 0 {
        return Err("--batch and --heartbeat-seconds must be at least 1".into());
    }
    Ok(Some(Args {
        target: target.ok_or("--target is required")?,
        agents: agents.ok_or("--agents is required")?,
        token: token.ok_or("--token is required")?,
        first_index,
        batch,
        heartbeat: Duration::from_secs(heartbeat),
    }))
}

/// The real agent's HTTP/2 settings (`agent-rs/medic-agent/src/transport.rs`), without TLS.
fn endpoint(target: &str) -> Result<Endpoint, String> {
    if !target.starts_with("http://") {
        return Err(format!("--target {target}: an http:// URL is needed (no TLS here)"));
    }
    Ok(Endpoint::from_shared(target.to_string())
        .map_err(|e| format!("--target {target}: {e}"))?
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .http2_adaptive_window(false)
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(128 * 1024)
        .buffer_size(64))
}

fn hello(index: usize) -> AgentMessage {
    AgentMessage {
        body: Some(pb::agent_message::Body::Hello(Hello {
            agent_id: format!("00000000-0000-4000-8000-{index:012x}"),
            hostname: format!("bench-{index}"),
            agent_version: "0.1.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: [("role".to_string(), "bench".to_string())].into(),
            allowlist: Some(AllowlistSummary {
                sha256: "0".repeat(64),
                scripts: vec![ScriptRules {
                    name: "restart-nginx".into(),
                    sha256: "1".repeat(64),
                    timeout_seconds: 30,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        })),
    }
}

/// An error with its sources (tonic's transport errors say little at the top level).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// One connected agent: its client (which owns the connection), outbox and inbound stream.
struct Held {
    _client: AgentServiceClient<Channel>,
    outbox: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ServerMessage>,
}

async fn connect(
    index: usize,
    endpoint: Endpoint,
    auth: MetadataValue<Ascii>,
) -> Result<Held, String> {
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {}", chain(&e)))?;
    let mut client = AgentServiceClient::new(channel);
    let (outbox, rx) = mpsc::channel(4);
    outbox.send(hello(index)).await.map_err(|_| "outbox closed".to_string())?;
    let mut request = Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", auth);
    let mut inbound = client
        .connect(request)
        .await
        .map_err(|s| format!("Connect: {s}"))?
        .into_inner();
    match inbound.message().await {
        Ok(Some(ServerMessage { body: Some(pb::server_message::Body::Welcome(_)) })) => {
            Ok(Held { _client: client, outbox, inbound })
        }
        Ok(Some(other)) => Err(format!("expected a Welcome, got {other:?}")),
        Ok(None) => Err("the stream ended before the Welcome".into()),
        Err(status) => Err(format!("waiting for the Welcome: {status}")),
    }
}

/// One agent: connects, reports the outcome on `answered`, then heartbeats until the stream ends.
async fn agent(
    index: usize,
    endpoint: Endpoint,
    auth: MetadataValue<Ascii>,
    heartbeat: Duration,
    answered: oneshot::Sender<Result<(), String>>,
) {
    let mut held = match connect(index, endpoint, auth).await {
        Ok(held) => {
            let _ = answered.send(Ok(()));
            held
        }
        Err(e) => {
            let _ = answered.send(Err(format!("agent {index}: {e}")));
            return;
        }
    };
    let mut tick = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = AgentMessage { body: Some(pb::agent_message::Body::Heartbeat(Heartbeat::default())) };
    loop {
        tokio::select! {
            message = held.inbound.message() => {
                if !matches!(message, Ok(Some(_))) {
                    return;
                }
            }
            _ = tick.tick() => {
                if held.outbox.send(beat.clone()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resolves once stdin reaches end of file (or fails). A plain thread, so a read still blocked
/// at exit never holds up the runtime's shutdown.
fn stdin_closed() -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

async fn run(args: Args) -> Result<bool, String> {
    let endpoint = endpoint(&args.target)?;
    let auth: MetadataValue<Ascii> = format!("Bearer {}", args.token)
        .parse()
        .map_err(|_| "--token: not valid in an HTTP header".to_string())?;
    let (mut connected, mut failed, mut unanswered) = (0usize, 0usize, 0usize);
    let end = args.first_index + args.agents;
    for start in (args.first_index..end).step_by(args.batch) {
        let mut waits = Vec::with_capacity(args.batch);
        for index in start..(start + args.batch).min(end) {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(agent(index, endpoint.clone(), auth.clone(), args.heartbeat, tx));
            waits.push(rx);
        }
        // Bounded connection rate: this batch is answered (or 30 s pass) before the next starts.
        let deadline = Instant::now() + BATCH_TIMEOUT;
        for wait in waits {
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(Ok(Ok(()))) => connected += 1,
                Ok(Ok(Err(e))) => {
                    if failed < SHOWN_ERRORS {
                        eprintln!("simagents: {e}");
                    }
                    failed += 1;
                }
                Ok(Err(_)) => failed += 1, // the task ended without answering
                Err(_) => unanswered += 1,
            }
        }
    }
    println!("connected {connected} failed {failed}");
    std::io::stdout().flush().map_err(|e| format!("stdout: {e}"))?;
    if failed > SHOWN_ERRORS {
        eprintln!("simagents: ... {} more failures", failed - SHOWN_ERRORS);
    }
    if unanswered > 0 {
        eprintln!("simagents: {unanswered} agents unanswered after {BATCH_TIMEOUT:?}");
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    tokio::select! {
        _ = stdin_closed() => {}
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(connected == args.agents)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("simagents: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("simagents: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(args));
    // Don't wait for 10,000 connections to close gracefully: the process is exiting.
    runtime.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("simagents: {e}");
            ExitCode::from(2)
        }
    }
}
