//! The agent's core: what it remembers, what runs, and how each server request is answered.
//!
//! # Design
//!
//! One [`Agent`] lives for the whole process and outlives every stream. It owns the
//! [`Journal`] (the memory of executions), the set of running executions, the "live" settings
//! re-read while running (labels, kill switch, allowlist) and the [`Outbox`]. Streams come and
//! go ([`crate::connection`]); executions keep running while none is open.
//!
//! Every state change is recorded in the journal and queued on the outbox under one lock, and
//! the replay after a `Welcome` takes its snapshot and attaches the stream under the same lock.
//! So an update is either in the replay or sent after it, never neither: the server always
//! learns an execution's final state. One refusal is not recorded: `too_many_running`. It
//! means "not now", not a final answer: the `Hello` advertises the limit, the server keeps the
//! execution and sends it again once a slot is free, and that second `Execute` must be judged
//! afresh. If the refusal is lost with a stream, the server still holds the execution as
//! unanswered and sends it again after the next `Welcome`.
//!
//! Handling an `Execute` is synchronous from the journal look-up to the spawn: the look-up
//! (never run an id twice), the kill switch, the limit, the allowlist verification, the
//! `ACCEPTED` record (synced before the process starts) and the spawn happen without an
//! `.await`, so nothing can interleave. Then a task supervises the process
//! ([`crate::executor`]) and records its final state.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medic_allowlist::{Allowlist, FilePolicy, Request, Sha256, Verified};
use tokio::sync::{oneshot, watch};
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::config::{Config, process_env};
use crate::containment::Containment;
use crate::executor::{self, Launch, Limits, Outcome, Stop};
use crate::hello::{self, Identity};
use crate::journal::{Durability, Journal, Recovery, Retention, is_final};
use crate::killswitch::{self, Pause};
use crate::metrics::{Metrics, UNKNOWN_SCRIPT};
use crate::outbox::{Link, Outbox};
use crate::proto::agent_message::Body;
use crate::proto::{Cancel, Execute, ExecutionState, ExecutionUpdate, Heartbeat, Hello};

/// The longest execution id accepted.
const MAX_ID_LEN: usize = 128;
/// How much of a `Cancel`'s reason is kept (it ends up in the execution's `detail`).
const MAX_CANCEL_REASON_LEN: usize = 256;
/// The refusal for want of a free slot: answered, never journaled (see the module's design).
const TOO_MANY_RUNNING: &str = "too_many_running";

/// Why a request is refused before the allowlist looked at it: a reason code and a detail.
type Refused = (&'static str, String);

/// Where the agent reads its configuration again while it runs.
#[derive(Debug, Clone)]
pub struct Source {
    /// The configuration file.
    pub path: PathBuf,
    /// Who must own it.
    pub policy: FilePolicy,
}

/// The agent's state, shared by the streams and the executions.
pub struct Agent {
    config: Config,
    source: Source,
    policy: FilePolicy,
    identity: Identity,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    containment: Containment,
    state: Mutex<State>,
    running_count: watch::Sender<usize>,
}

struct State {
    journal: Journal,
    running: HashMap<String, Running>,
    live: Live,
    stopping: bool,
}

struct Running {
    stop: Option<oneshot::Sender<Stop>>,
}

/// What is re-read while the agent runs.
struct Live {
    labels: BTreeMap<String, String>,
    config_paused: bool,
    config_reason: String,
    pause: Pause,
    allowlist: Result<Arc<Allowlist>, String>,
    config_error: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn update(id: &str, state: ExecutionState, reason: &str, detail: String) -> ExecutionUpdate {
    ExecutionUpdate {
        execution_id: id.to_owned(),
        state: state.into(),
        reason: reason.to_owned(),
        detail,
        ..ExecutionUpdate::default()
    }
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// The metric label of a final state.
fn result_label(state: ExecutionState) -> &'static str {
    match state {
        ExecutionState::Succeeded => "succeeded",
        ExecutionState::TimedOut => "timed_out",
        ExecutionState::Cancelled => "cancelled",
        _ => "failed",
    }
}

impl Agent {
    /// Open the state directory (id, journal) and read the live settings once. Executions run
    /// inside `containment`.
    pub fn start(
        config: Config,
        source: Source,
        policy: FilePolicy,
        metrics: Arc<Metrics>,
        containment: Containment,
    ) -> Result<Self, String> {
        let state_dir = &config.state_dir;
        crate::identity::ensure_state_dir(state_dir)
            .map_err(|error| format!("state directory {}: {error}", state_dir.display()))?;
        let agent_id = crate::identity::agent_id(state_dir)
            .map_err(|error| format!("agent id in {}: {error}", state_dir.display()))?;
        let (journal, recovery) = Journal::open(state_dir, Retention::default(), now())
            .map_err(|error| format!("journal in {}: {error}", state_dir.display()))?;
        log_recovery(&recovery, journal.len());
        let reclaimed = containment.reclaim(&recovery.interrupted);
        if reclaimed > 0 {
            warn!(
                processes = reclaimed,
                "killed what executions interrupted by the last stop left running"
            );
            metrics.contained(containment.mode(), reclaimed);
        }
        let live = Live {
            labels: config.labels.clone(),
            config_paused: config.executions_paused,
            config_reason: config.paused_reason.clone(),
            pause: Pause::default(),
            allowlist: Err("not loaded yet".into()),
            config_error: None,
        };
        let agent = Self {
            identity: Identity {
                agent_id,
                hostname: crate::identity::hostname(),
            },
            config,
            source,
            policy,
            outbox: Outbox::default(),
            metrics,
            containment,
            state: Mutex::new(State {
                journal,
                running: HashMap::new(),
                live,
                stopping: false,
            }),
            running_count: watch::Sender::new(0),
        };
        agent.refresh();
        info!(
            agent_id = %agent.identity.agent_id,
            hostname = %agent.identity.hostname,
            version = env!("CARGO_PKG_VERSION"),
            containment = %agent.containment.mode(),
            "agent started"
        );
        Ok(agent)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover rather than spread a poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-read the live settings: the configuration's labels and pause flag, the kill switch
    /// file, the allowlist.
    pub fn refresh(&self) {
        let mut state = self.lock();
        self.refresh_live(&mut state.live);
    }

    fn refresh_live(&self, live: &mut Live) {
        match Config::load_with_env(&self.source.path, &self.source.policy, &process_env) {
            Ok(config) => {
                if live.config_error.take().is_some() {
                    info!("the configuration file is valid again");
                }
                live.labels = config.labels;
                live.config_paused = config.executions_paused;
                live.config_reason = config.paused_reason;
            }
            Err(error) => {
                let error = format!("{}: {error}", self.source.path.display());
                if live.config_error.as_ref() != Some(&error) {
                    warn!(%error, "cannot re-read the configuration; keeping the last good one");
                    live.config_error = Some(error);
                }
            }
        }
        let pause = killswitch::current(
            live.config_paused,
            &live.config_reason,
            self.config.kill_switch(),
        );
        if pause != live.pause {
            if pause.paused {
                warn!(reason = %pause.reason, "kill switch on: executions are paused");
            } else {
                info!("kill switch off: executions resume");
            }
            live.pause = pause;
        }
        let allowlist = Allowlist::load(&self.config.allowlist, &self.policy)
            .map(Arc::new)
            .map_err(|error| {
                format!(
                    "{}: {error} ({})",
                    self.config.allowlist.display(),
                    error.code()
                )
            });
        match (&live.allowlist, &allowlist) {
            (Ok(old), Ok(new)) if old.sha256() == new.sha256() => return,
            (Err(old), Err(new)) if old == new => return,
            (_, Ok(new)) => info!(
                sha256 = %new.sha256(),
                scripts = new.len(),
                "allowlist loaded"
            ),
            (_, Err(error)) => error!(%error, "allowlist unavailable: nothing will run"),
        }
        live.allowlist = allowlist;
    }

    /// The `Hello` for the current state (as of the last refresh).
    pub fn hello(&self) -> Hello {
        let state = self.lock();
        let live = &state.live;
        hello::hello(
            &self.identity,
            &live.labels,
            live.allowlist.as_deref().ok(),
            &live.pause,
            self.containment.mode(),
            self.config.max_concurrent,
        )
    }

    /// A `Welcome` arrived on `link`: replay the latest update of every remembered execution,
    /// then send everything new through it.
    pub fn welcome(&self, link: &Link) {
        let state = self.lock();
        let replay = state.journal.latest();
        let count = replay.len();
        for update in replay {
            link.send(Body::ExecutionUpdate(update));
        }
        self.outbox.attach(link);
        self.metrics.set_connected(true);
        drop(state);
        info!(executions = count, "replayed the remembered executions");
    }

    /// The stream of `link` ended.
    pub fn detach(&self, link: &Link) {
        self.outbox.detach(link.id());
        self.metrics.set_connected(self.outbox.is_attached());
    }

    /// A heartbeat listing what runs now.
    pub fn heartbeat(&self) -> Heartbeat {
        let state = self.lock();
        let mut running: Vec<String> = state.running.keys().cloned().collect();
        running.sort();
        Heartbeat {
            running_execution_ids: running,
        }
    }

    /// Record `update` and send it (under the caller's lock).
    fn publish(&self, state: &mut State, update: ExecutionUpdate, durability: Durability) {
        if let Err(error) = state.journal.record(&update, durability, now()) {
            error!(
                execution_id = %update.execution_id,
                %error,
                "cannot record the execution's state in the journal"
            );
        }
        self.outbox.send(Body::ExecutionUpdate(update));
    }

    fn reject(&self, state: &mut State, id: &str, script: &str, reason: &str, detail: String) {
        warn!(execution_id = %id, script, reason, %detail, "execution rejected");
        self.metrics.skipped(script, reason);
        let rejected = update(id, ExecutionState::Rejected, reason, detail);
        if reason == TOO_MANY_RUNNING {
            // Not journaled: the Hello advertises `max_concurrent`, so the server treats this
            // refusal as "not now" and sends the same execution again once a slot is free; a
            // remembered refusal would answer that second send with the first one's.
            self.outbox.send(Body::ExecutionUpdate(rejected));
            return;
        }
        self.publish(state, rejected, Durability::Synced);
    }

    /// Answer an `Execute`: run it, refuse it, or (when its id is known) repeat its state.
    pub fn execute(self: &Arc<Self>, request: Execute) {
        let id = request.execution_id.clone();
        if !valid_id(&id) {
            warn!(
                reason = "invalid_request",
                "execution rejected: malformed execution id"
            );
            self.metrics.skipped(UNKNOWN_SCRIPT, "invalid_request");
            let detail =
                format!("the execution id must be 1 to {MAX_ID_LEN} printable ASCII characters");
            let rejected = update(&id, ExecutionState::Rejected, "invalid_request", detail);
            self.outbox.send(Body::ExecutionUpdate(rejected));
            return;
        }
        let mut state = self.lock();
        if let Some(latest) = state.journal.get(&id) {
            info!(
                execution_id = %id,
                state = latest.state().as_str_name(),
                "execution already known: answering with its latest state"
            );
            let latest = latest.clone();
            self.outbox.send(Body::ExecutionUpdate(latest));
            return;
        }
        if state.stopping {
            // Unanswered, so the server sends it again to the next agent process.
            info!(execution_id = %id, "the agent is stopping: execution left for later");
            return;
        }
        self.refresh_live(&mut state.live);
        let script = match &state.live.allowlist {
            Ok(allowlist) if allowlist.get(&request.script).is_some() => request.script.clone(),
            _ => UNKNOWN_SCRIPT.to_owned(),
        };
        let (allowlist, expected_sha256) = match self.admit(&state, &request) {
            Ok(admitted) => admitted,
            Err((reason, detail)) => return self.reject(&mut state, &id, &script, reason, detail),
        };
        let verify = Request {
            script: request.script,
            args: request.args,
            env: request.env.into_iter().collect(),
            timeout: (request.timeout_seconds > 0)
                .then(|| Duration::from_secs(request.timeout_seconds.into())),
            expected_sha256,
        };
        match allowlist.verify(&verify, &self.policy) {
            Ok(verified) => self.launch(state, &id, script, verified),
            Err(refusal) => {
                let detail = refusal.detail().to_owned();
                self.reject(&mut state, &id, &script, refusal.reason().as_str(), detail);
            }
        }
    }

    /// The checks before the allowlist's: the kill switch, an allowlist in force, the limit of
    /// concurrent executions, a well-formed expected hash.
    fn admit(
        &self,
        state: &State,
        request: &Execute,
    ) -> Result<(Arc<Allowlist>, Option<Sha256>), Refused> {
        let live = &state.live;
        if live.pause.paused {
            return Err((
                "paused",
                format!("executions are paused: {}", live.pause.reason),
            ));
        }
        let allowlist = match &live.allowlist {
            Ok(allowlist) => Arc::clone(allowlist),
            Err(error) => return Err(("allowlist_unavailable", error.clone())),
        };
        if state.running.len() >= self.config.max_concurrent {
            return Err((
                TOO_MANY_RUNNING,
                format!(
                    "{} executions are running, the limit is {}",
                    state.running.len(),
                    self.config.max_concurrent
                ),
            ));
        }
        let expected_sha256 = match request.expected_sha256.as_str() {
            "" => None,
            text => Some(Sha256::from_str(text).map_err(|_| {
                (
                    "invalid_request",
                    "expected_sha256 is not 64 hexadecimal digits".to_owned(),
                )
            })?),
        };
        Ok((allowlist, expected_sha256))
    }

    /// Record `ACCEPTED` durably, start the verified script, and hand it to a supervising task.
    fn launch(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        id: &str,
        script: String,
        verified: Verified<'_>,
    ) {
        let accepted = update(id, ExecutionState::Accepted, "", String::new());
        if let Err(error) = state.journal.record(&accepted, Durability::Synced, now()) {
            // Without the record, a crash could run it twice: better not at all.
            error!(execution_id = %id, %error, "cannot record the execution; not running it");
            self.metrics.executed(&script, "failed", Duration::ZERO);
            let detail = format!("cannot record the execution in the state directory: {error}");
            let failed = update(id, ExecutionState::Failed, "spawn_failed", detail);
            self.outbox.send(Body::ExecutionUpdate(failed));
            return;
        }
        self.outbox.send(Body::ExecutionUpdate(accepted));
        let timeout = verified.timeout();
        let kill_grace = Duration::from_secs(self.config.kill_grace_seconds);
        let spawned = {
            let program = verified.exec_path();
            let launch = Launch {
                program: &program,
                arg0: verified.script().path(),
                script_fd: Some(verified.file().as_fd()),
                args: verified.args(),
                env: verified.env(),
            };
            executor::spawn(&launch, &self.containment, id, kill_grace)
        };
        // Closes the descriptor that was made inheritable for this child only.
        drop(verified);
        let (child, jail) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                error!(execution_id = %id, script, %error, "cannot start the script");
                self.metrics.executed(&script, "failed", Duration::ZERO);
                let detail = format!("cannot start {script}: {error}");
                let failed = update(id, ExecutionState::Failed, "spawn_failed", detail);
                return self.publish(&mut state, failed, Durability::Synced);
            }
        };
        info!(
            execution_id = %id,
            script,
            pid = child.id().unwrap_or(0),
            timeout_seconds = timeout.as_secs(),
            containment = %jail.mode(),
            "execution started"
        );
        let running = update(id, ExecutionState::Running, "", String::new());
        self.publish(&mut state, running, Durability::Buffered);
        let (stop, stopped) = oneshot::channel();
        state
            .running
            .insert(id.to_owned(), Running { stop: Some(stop) });
        self.running_count.send_replace(state.running.len());
        drop(state);

        let limits = Limits {
            timeout,
            kill_grace,
            output_cap: self.config.output_cap_bytes,
        };
        let agent = Arc::clone(self);
        let id = id.to_owned();
        let span = info_span!("execution", execution_id = %id, script = %script);
        tokio::spawn(
            async move {
                let outbox = agent.outbox.clone();
                let outcome = executor::supervise(child, jail, &id, limits, stopped, outbox).await;
                agent.finish(&id, &script, outcome, timeout);
            }
            .instrument(span),
        );
    }

    fn finish(&self, id: &str, script: &str, outcome: Outcome, timeout: Duration) {
        let duration = outcome.duration;
        let cleanup = outcome.cleanup;
        let update = executor::final_update(id, outcome, timeout);
        let result = result_label(update.state());
        info!(
            execution_id = %id,
            script,
            result,
            exit_code = update.exit_code,
            signal = update.signal,
            duration_ms = update.duration_ms,
            output_chunks = update.output_chunks,
            output_truncated = update.output_truncated,
            containment = %cleanup.mode,
            processes_killed = cleanup.killed,
            survivors = cleanup.survivors,
            "execution ended"
        );
        if cleanup.survivors > 0 {
            warn!(
                execution_id = %id,
                survivors = cleanup.survivors,
                "some processes of the execution could not be killed"
            );
        }
        self.metrics.executed(script, result, duration);
        self.metrics
            .contained(cleanup.mode, cleanup.killed.unwrap_or(0));
        let mut state = self.lock();
        self.publish(&mut state, update, Durability::Synced);
        state.running.remove(id);
        self.running_count.send_replace(state.running.len());
    }

    /// Answer a `Cancel`: stop the execution, repeat its final state, or remember the id.
    pub fn cancel(&self, cancel: Cancel) {
        let id = cancel.execution_id;
        if !valid_id(&id) {
            warn!("ignoring a Cancel with a malformed execution id");
            return;
        }
        let mut state = self.lock();
        if let Some(running) = state.running.get_mut(&id) {
            if let Some(stop) = running.stop.take() {
                info!(execution_id = %id, "cancelling: ending its processes");
                let _ = stop.send(Stop::Cancel(bounded(&cancel.reason, MAX_CANCEL_REASON_LEN)));
            }
            return;
        }
        if let Some(latest) = state.journal.get(&id) {
            let latest = latest.clone();
            if !is_final(latest.state()) {
                warn!(execution_id = %id, "cancel for an execution that is neither running nor finished");
            }
            self.outbox.send(Body::ExecutionUpdate(latest));
            return;
        }
        info!(execution_id = %id, "cancel before the execute: remembered");
        self.metrics
            .skipped(UNKNOWN_SCRIPT, "cancelled_before_start");
        let cancelled = update(
            &id,
            ExecutionState::Cancelled,
            "cancelled_before_start",
            "a Cancel arrived before the Execute; it will not run".into(),
        );
        self.publish(&mut state, cancelled, Durability::Synced);
    }

    /// Refuse new executions and kill every running one (each ends `FAILED`, `agent_stopped`).
    pub fn stop_all(&self) {
        let mut state = self.lock();
        state.stopping = true;
        for running in state.running.values_mut() {
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(Stop::Shutdown);
            }
        }
    }

    /// Wait until nothing runs, at most `timeout`; whether that happened.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut count = self.running_count.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|running| *running == 0))
            .await
            .is_ok_and(|result| result.is_ok())
    }
}

fn log_recovery(recovery: &Recovery, remembered: usize) {
    for id in &recovery.interrupted {
        warn!(
            execution_id = %id,
            "the agent stopped while this execution ran: recorded as failed (agent_stopped)"
        );
    }
    if recovery.unreadable_lines > 0 {
        warn!(
            lines = recovery.unreadable_lines,
            "ignored unreadable journal lines (a crash tears at most the last one)"
        );
    }
    info!(executions = remembered, "journal opened");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_bounded_printable_text() {
        assert!(valid_id("0b0e3c9a-6a1f-4c52-8d7e-1f2a3b4c5d6e"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(!valid_id("has space"));
        assert!(!valid_id("nul\0"));
    }

    #[test]
    fn texts_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("abc", 2), "ab");
        assert_eq!(bounded("é", 1), "");
        assert_eq!(bounded("short", 256), "short");
    }

    #[test]
    fn final_states_map_to_metric_results() {
        assert_eq!(result_label(ExecutionState::Succeeded), "succeeded");
        assert_eq!(result_label(ExecutionState::Failed), "failed");
        assert_eq!(result_label(ExecutionState::TimedOut), "timed_out");
        assert_eq!(result_label(ExecutionState::Cancelled), "cancelled");
    }
}
