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
//!
//! `--reconnect` makes every agent behave like the real one when its stream ends or an attempt
//! fails (`agent-rs/medic-agent/src/connection.rs`): wait a back-off delay (`Backoff` below, the
//! same as `agent-rs/medic-agent/src/backoff.rs`: full jitter, from 1 s doubling to 60 s, but at
//! most 10 s while the outage is younger than 2 minutes; reset after a Welcome), then connect again with a new connection; an attempt may take 15 s to
//! connect and 60 s more for its Welcome. The agents' counters are then printed every
//! `--report-ms` (`at <unix ms> live L welcomes W attempts A failures F unreachable U waited
//! B0,B1,...`: U of the F failed attempts found no server; Bi welcomed attempts took under 2^i
//! ms from their start), so a benchmark can restart the server and see when every agent is
//! welcomed again, and how long the server kept each attempt waiting (`bench/agent/storm.py`).

mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/medic.agent.v1.rs"));
}

use pb::agent_service_client::AgentServiceClient;
use pb::{AgentMessage, AllowlistSummary, Heartbeat, Hello, ScriptRules, ServerMessage};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
  --reconnect              when a stream ends or an attempt fails, back off like the real
                           agent (full jitter from 1 s doubling to 60 s, reset after a
                           Welcome) and connect again, until stdin closes
  --report-ms MS           with --reconnect: print `at <unix ms> live L welcomes W attempts A
                           failures F unreachable U waited B0,B1,...` every MS milliseconds
                           (default 250); Bi: welcomed attempts that took under 2^i ms
  --backoff-cap S          with --reconnect: the longest back-off delay, s (default 60, the real
                           agent's); lower only to see what an agent with that cap would do
  -h, --help               this text

Exit status: 0 if every agent connected, 1 if not, 2 on bad arguments.";

/// Errors of the first few agents are printed; the rest are only counted.
const SHOWN_ERRORS: usize = 10;
/// How long one batch may take to be answered before the next one starts.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The real agent's limits on one attempt (`transport.rs`, `connection.rs`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    target: String,
    agents: usize,
    token: String,
    first_index: usize,
    batch: usize,
    heartbeat: Duration,
    reconnect: bool,
    report: Duration,
    backoff_cap: Duration,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut target, mut agents, mut token) = (None, None, None);
    let (mut first_index, mut batch, mut heartbeat) = (0usize, 100usize, 30u64);
    let (mut reconnect, mut report_ms, mut backoff_cap) = (false, 250u64, 60u64);
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        if arg == "--reconnect" {
            reconnect = true;
            continue;
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
            "--report-ms" => report_ms = number(value()?)?,
            "--backoff-cap" => backoff_cap = number(value()?)?,
            _ => return Err(format!("unknown argument: {name}")),
        }
    }
    if batch == 0 || heartbeat == 0 || report_ms == 0 || backoff_cap == 0 {
        return Err(
            "--batch, --heartbeat-seconds, --report-ms and --backoff-cap must be at least 1".into(),
        );
    }
    Ok(Some(Args {
        target: target.ok_or("--target is required")?,
        agents: agents.ok_or("--agents is required")?,
        token: token.ok_or("--token is required")?,
        first_index,
        batch,
        heartbeat: Duration::from_secs(heartbeat),
        reconnect,
        report: Duration::from_millis(report_ms),
        backoff_cap: Duration::from_secs(backoff_cap),
    }))
}

/// The real agent's HTTP/2 settings (`agent-rs/medic-agent/src/transport.rs`), without TLS.
fn endpoint(target: &str) -> Result<Endpoint, String> {
    if !target.starts_with("http://") {
        return Err(format!("--target {target}: an http:// URL is needed (no TLS here)"));
    }
    Ok(Endpoint::from_shared(target.to_string())
        .map_err(|e| format!("--target {target}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
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
    let mut inbound =
        client.connect(request).await.map_err(|s| format!("Connect: {s}"))?.into_inner();
    match inbound.message().await {
        Ok(Some(ServerMessage { body: Some(pb::server_message::Body::Welcome(_)) })) => {
            Ok(Held { _client: client, outbox, inbound })
        }
        Ok(Some(other)) => Err(format!("expected a Welcome, got {other:?}")),
        Ok(None) => Err("the stream ended before the Welcome".into()),
        Err(status) => Err(format!("waiting for the Welcome: {status}")),
    }
}

/// What every agent adds to, printed by `--report-ms` (with `--reconnect`).
#[derive(Default)]
struct Counters {
    /// Agents welcomed whose stream is still open.
    live: AtomicU64,
    /// Welcomes received, over all agents and attempts.
    welcomes: AtomicU64,
    /// Connection attempts started.
    attempts: AtomicU64,
    /// Attempts that ended without a Welcome.
    failures: AtomicU64,
    /// Of those, attempts that found no server to connect to (it is down).
    unreachable: AtomicU64,
    /// Failures printed so far (those with a server to answer).
    shown: AtomicU64,
    /// Welcomed attempts by how long they took from the attempt's start: bucket `i` counts
    /// those under `2^i` ms (the last one, the rest).
    waited: [AtomicU64; WAIT_BUCKETS],
}

/// Buckets of `Counters::waited`: under 1, 2, 4, ... 2^22 ms (70 minutes), and the rest.
const WAIT_BUCKETS: usize = 24;

impl Counters {
    fn waited(&self, took: Duration) {
        let millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - millis.leading_zeros()) as usize;
        self.waited[bucket.min(WAIT_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Failures of reconnect attempts the server answered that are printed (to stderr); the rest,
/// and attempts that found no server, are only counted.
const SHOWN_RECONNECT_ERRORS: u64 = 20;

/// Reconnect delays, as `agent-rs/medic-agent/src/backoff.rs` draws them (copied: that crate is
/// a binary, and this project stands alone): the n-th delay is uniform in
/// `0 ..= min(cap, 1 s * 2^n)`, the cap 60 s as in the agent unless `--backoff-cap` says
/// otherwise, and at most 10 s (`YOUNG_CAP`) while the outage is younger than `YOUNG`; a Welcome
/// starts over from 1 s.
struct Backoff {
    attempt: u32,
    state: u64,
    cap: Duration,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const YOUNG: Duration = Duration::from_secs(120);
    const YOUNG_CAP: Duration = Duration::from_secs(10);

    fn new(seed: u64, cap: Duration) -> Self {
        Self { attempt: 0, state: seed, cap }
    }

    /// The next delay, `outage` after the last welcomed stream ended (or the agent started).
    fn next_delay(&mut self, outage: Duration) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        let doubled = Self::BASE.saturating_mul(factor);
        let cap = if outage < Self::YOUNG { Self::YOUNG_CAP.min(self.cap) } else { self.cap };
        let ceiling = doubled.min(cap);
        if doubled < self.cap {
            self.attempt = self.attempt.saturating_add(1);
        }
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.random() % millis.saturating_add(1))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// SplitMix64, as the agent uses.
    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Send heartbeats on a welcomed stream until it ends.
async fn hold(mut held: Held, heartbeat: Duration) {
    let mut tick = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat =
        AgentMessage { body: Some(pb::agent_message::Body::Heartbeat(Heartbeat::default())) };
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

/// One agent: connects, reports the outcome of its first attempt on `answered`, then
/// heartbeats until the stream ends; with `reconnect` (the back-off's cap), backs off and
/// starts again, forever.
async fn agent(
    index: usize,
    endpoint: Endpoint,
    auth: MetadataValue<Ascii>,
    heartbeat: Duration,
    reconnect: Option<Duration>,
    counters: Arc<Counters>,
    answered: oneshot::Sender<Result<(), String>>,
) {
    let mut answered = Some(answered);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let cap = reconnect.unwrap_or(Duration::from_secs(60));
    let mut backoff = Backoff::new((index as u64) << 32 ^ u64::from(nanos), cap);
    let mut outage_since = Instant::now();
    loop {
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let attempt = tokio::time::timeout(
            WELCOME_TIMEOUT + CONNECT_TIMEOUT,
            connect(index, endpoint.clone(), auth.clone()),
        )
        .await
        .unwrap_or_else(|_| Err("no Welcome in time".into()));
        match attempt {
            Ok(held) => {
                counters.waited(started.elapsed());
                counters.welcomes.fetch_add(1, Ordering::Relaxed);
                counters.live.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = answered.take() {
                    let _ = tx.send(Ok(()));
                }
                backoff.reset();
                hold(held, heartbeat).await;
                outage_since = Instant::now();
                counters.live.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                let shown = if e.starts_with("connect: ") {
                    counters.unreachable.fetch_add(1, Ordering::Relaxed);
                    SHOWN_RECONNECT_ERRORS
                } else {
                    counters.shown.fetch_add(1, Ordering::Relaxed)
                };
                match answered.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(format!("agent {index}: {e}")));
                    }
                    None if shown < SHOWN_RECONNECT_ERRORS => {
                        eprintln!("simagents: reconnecting agent {index}: {e}");
                    }
                    None => {}
                }
            }
        }
        if reconnect.is_none() {
            return;
        }
        tokio::time::sleep(backoff.next_delay(outage_since.elapsed())).await;
    }
}

/// Print the counters every `every` (with `--reconnect`), until the process exits.
async fn report(counters: Arc<Counters>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let waited: Vec<String> =
            counters.waited.iter().map(|b| b.load(Ordering::Relaxed).to_string()).collect();
        println!(
            "at {at} live {} welcomes {} attempts {} failures {} unreachable {} waited {}",
            counters.live.load(Ordering::Relaxed),
            counters.welcomes.load(Ordering::Relaxed),
            counters.attempts.load(Ordering::Relaxed),
            counters.failures.load(Ordering::Relaxed),
            counters.unreachable.load(Ordering::Relaxed),
            waited.join(","),
        );
        if std::io::stdout().flush().is_err() {
            return;
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
    let counters = Arc::new(Counters::default());
    let end = args.first_index + args.agents;
    for start in (args.first_index..end).step_by(args.batch) {
        let mut waits = Vec::with_capacity(args.batch);
        for index in start..(start + args.batch).min(end) {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(agent(
                index,
                endpoint.clone(),
                auth.clone(),
                args.heartbeat,
                args.reconnect.then_some(args.backoff_cap),
                Arc::clone(&counters),
                tx,
            ));
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
    if args.reconnect {
        tokio::spawn(report(Arc::clone(&counters), args.report));
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
