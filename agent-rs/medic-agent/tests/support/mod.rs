//! The harness of the tests that run the real agent binary against a real gRPC server speaking
//! `medic.agent.v1` (`agent_stream.rs`, `containment.rs`).
//!
//! Each test starts a tonic server built from the generated server stubs, and the
//! `medic-agent run` binary pointed at it, with a configuration, an allowlist and scripts in a
//! temporary directory owned by the test's user (trusted through `--owner-uid`). The test plays
//! the server's part message by message. Every wait is for an event (a message, a log line, a
//! process exit), bounded by a generous deadline, so a slow machine makes tests slower, not red.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/server/medic.agent.v1.rs"));
}

use std::fs::{self, Permissions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medic_allowlist::Sha256;
use proto::agent_message::Body;
use proto::agent_service_server::{AgentService, AgentServiceServer};
use proto::server_message::Body as ServerBody;
use proto::{
    AgentMessage, Cancel, Execute, ExecutionState, ExecutionUpdate, Heartbeat, Hello, OutputChunk,
    OutputStream, ServerMessage, Welcome,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

pub const API_KEY: &str = "medic_k1_testsecret";
/// The longest any single expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The server side
// ---------------------------------------------------------------------------------------------

pub type Outbound = mpsc::UnboundedSender<Result<ServerMessage, Status>>;

/// One `Connect` call, as the test drives it.
pub struct Session {
    pub inbound: Streaming<AgentMessage>,
    pub outbound: Outbound,
    pub client_certificates: usize,
    pub chunks: Vec<OutputChunk>,
    pub hellos: Vec<Hello>,
    pub heartbeats: Vec<Heartbeat>,
}

pub struct FakeService {
    pub sessions: mpsc::UnboundedSender<Session>,
}

#[tonic::async_trait]
impl AgentService for FakeService {
    type ConnectStream = UnboundedReceiverStream<Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        if authorization.as_deref() != Some(&format!("Bearer {API_KEY}")) {
            return Err(Status::unauthenticated("wrong key"));
        }
        let client_certificates = request.peer_certs().map_or(0, |certs| certs.len());
        let (outbound, receiver) = mpsc::unbounded_channel();
        let _ = self.sessions.send(Session {
            inbound: request.into_inner(),
            outbound,
            client_certificates,
            chunks: Vec::new(),
            hellos: Vec::new(),
            heartbeats: Vec::new(),
        });
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }
}

pub struct FakeServer {
    pub address: SocketAddr,
    pub sessions: mpsc::UnboundedReceiver<Session>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn fake_server(tls: Option<ServerTlsConfig>) -> FakeServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sessions_tx, sessions) = mpsc::unbounded_channel();
    let service = AgentServiceServer::new(FakeService {
        sessions: sessions_tx,
    });
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let task = tokio::spawn(async move {
        builder
            .serve_with_incoming(service, TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    FakeServer {
        address,
        sessions,
        task,
    }
}

impl FakeServer {
    pub async fn next_session(&mut self) -> Session {
        tokio::time::timeout(DEADLINE, self.sessions.recv())
            .await
            .expect("the agent did not connect in time")
            .unwrap()
    }

    /// The next session, welcomed; its `Hello` and the replay that followed the `Welcome`.
    pub async fn welcomed_session(&mut self) -> (Session, Hello, Vec<ExecutionUpdate>) {
        let mut session = self.next_session().await;
        let hello = session.hello().await;
        session.welcome();
        let replay = session.replay().await;
        (session, hello, replay)
    }
}

impl Session {
    pub async fn next(&mut self) -> Body {
        let message = tokio::time::timeout(DEADLINE, self.inbound.message())
            .await
            .expect("no message from the agent in time")
            .expect("the stream failed")
            .expect("the agent ended the stream");
        message.body.expect("an empty envelope")
    }

    /// The first message, which must be a `Hello`.
    pub async fn hello(&mut self) -> Hello {
        match self.next().await {
            Body::Hello(hello) => hello,
            other => panic!("the first message is not a Hello: {other:?}"),
        }
    }

    pub fn send(&self, body: ServerBody) {
        self.outbound
            .send(Ok(ServerMessage { body: Some(body) }))
            .unwrap();
    }

    pub fn welcome(&self) {
        self.send(ServerBody::Welcome(Welcome {
            session_id: "s-1".into(),
            heartbeat_interval_seconds: 1,
            server_version: "test".into(),
        }));
    }

    pub fn execute(&self, id: &str, script: &str, args: &[&str]) {
        self.send(ServerBody::Execute(Execute {
            execution_id: id.into(),
            script: script.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            ..Execute::default()
        }));
    }

    pub fn cancel(&self, id: &str, reason: &str) {
        self.send(ServerBody::Cancel(Cancel {
            execution_id: id.into(),
            reason: reason.into(),
        }));
    }

    /// Everything before the first heartbeat after a `Welcome`: the replayed updates.
    pub async fn replay(&mut self) -> Vec<ExecutionUpdate> {
        let mut replay = Vec::new();
        loop {
            match self.next().await {
                Body::ExecutionUpdate(update) => replay.push(update),
                Body::Heartbeat(heartbeat) => {
                    self.heartbeats.push(heartbeat);
                    return replay;
                }
                other => self.keep(other),
            }
        }
    }

    pub fn keep(&mut self, body: Body) {
        match body {
            Body::OutputChunk(chunk) => self.chunks.push(chunk),
            Body::Hello(hello) => self.hellos.push(hello),
            Body::Heartbeat(heartbeat) => self.heartbeats.push(heartbeat),
            Body::ExecutionUpdate(update) => {
                panic!("unexpected update {update:?}")
            }
        }
    }

    /// The next update of execution `id`.
    pub async fn update(&mut self, id: &str) -> ExecutionUpdate {
        loop {
            match self.next().await {
                Body::ExecutionUpdate(update) if update.execution_id == id => return update,
                Body::ExecutionUpdate(update) => {
                    panic!("an update of another execution: {update:?}")
                }
                other => self.keep(other),
            }
        }
    }

    /// Updates of `id` up to and including its final one.
    pub async fn updates_until_final(&mut self, id: &str) -> Vec<ExecutionUpdate> {
        let mut updates = Vec::new();
        loop {
            let update = self.update(id).await;
            let state = update.state();
            updates.push(update);
            if !matches!(state, ExecutionState::Accepted | ExecutionState::Running) {
                return updates;
            }
        }
    }

    /// Wait for a `Hello` satisfying `test` (one already received counts).
    pub async fn hello_where(&mut self, test: impl Fn(&Hello) -> bool) -> Hello {
        loop {
            if let Some(hello) = self.hellos.iter().find(|hello| test(hello)) {
                return hello.clone();
            }
            let body = self.next().await;
            self.keep(body);
        }
    }

    /// Wait for a heartbeat satisfying `test`.
    pub async fn heartbeat_where(&mut self, test: impl Fn(&Heartbeat) -> bool) -> Heartbeat {
        loop {
            if let Some(heartbeat) = self.heartbeats.iter().find(|beat| test(beat)) {
                return heartbeat.clone();
            }
            let body = self.next().await;
            self.keep(body);
        }
    }

    /// The standard output of `id` received so far, in sequence order.
    pub fn stdout(&self, id: &str) -> String {
        let mut chunks: Vec<&OutputChunk> = self
            .chunks
            .iter()
            .filter(|chunk| chunk.execution_id == id)
            .collect();
        chunks.sort_by_key(|chunk| chunk.sequence);
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|chunk| chunk.stream() == OutputStream::Stdout)
            .flat_map(|chunk| chunk.data.clone())
            .collect();
        String::from_utf8(bytes).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The host: configuration, allowlist, scripts, and the agent process
// ---------------------------------------------------------------------------------------------

pub struct Host {
    pub dir: TempDir,
    pub config: PathBuf,
    pub uid: u32,
}

pub fn write(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// A new, private directory for a host.
fn host_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("agent-stream-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A host whose agent talks to `server` (a URL), with `extra` appended to its configuration.
pub fn host(server: &str, extra: &str) -> Host {
    let dir = host_dir();
    let runs = dir.path().join("runs.txt");
    let scripts: [(&str, String, &str); 4] = [
        (
            "echo",
            "#!/bin/sh\necho \"out:$*\"\necho \"err:$GREETING\" >&2\n".into(),
            "timeout = 30\nrest = { pattern = \"[a-z0-9 -]+\", max_len = 64, max_count = 4 }\n\
             env = [\"GREETING\"]\n",
        ),
        (
            "sleeper",
            "#!/bin/sh\nsleep 300 &\necho \"$$ $!\"\nwait\n".into(),
            "timeout = 60\n",
        ),
        (
            "count",
            format!("#!/bin/sh\necho run >> {}\n", runs.display()),
            "timeout = 30\n",
        ),
        (
            "slow",
            "#!/bin/sh\nsleep 2\necho done\n".into(),
            "timeout = 30\n",
        ),
    ];
    host_in(dir, server, extra, &scripts)
}

/// A host with only `scripts` (name, body, TOML rules of the entry) in its allowlist.
pub fn host_with(server: &str, extra: &str, scripts: &[(&str, String, &str)]) -> Host {
    host_in(host_dir(), server, extra, scripts)
}

fn host_in(dir: TempDir, server: &str, extra: &str, scripts: &[(&str, String, &str)]) -> Host {
    let uid = fs::metadata(dir.path()).unwrap().uid();
    let mut allowlist = String::from("version = 1\n");
    for (name, body, rules) in scripts {
        let path = dir.path().join(format!("{name}.sh"));
        write(&path, body.as_bytes(), 0o755);
        allowlist.push_str(&format!(
            "\n[[script]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{}\"\n{rules}",
            path.display(),
            Sha256::of(body.as_bytes())
        ));
    }
    write(
        &dir.path().join("allowlist.toml"),
        allowlist.as_bytes(),
        0o644,
    );
    write(&dir.path().join("agent.key"), API_KEY.as_bytes(), 0o600);
    let config = dir.path().join("agent.toml");
    let text = format!(
        "server = \"{server}\"\napi_key_file = \"{dir}/agent.key\"\n\
         allowlist = \"{dir}/allowlist.toml\"\nstate_dir = \"{dir}/state\"\n\
         kill_switch_file = \"{dir}/agent.paused\"\nkill_grace_seconds = 2\n{extra}\n\
         [labels]\nrole = \"web\"\n",
        dir = dir.path().display()
    );
    write(&config, text.as_bytes(), 0o600);
    Host { dir, config, uid }
}

impl Host {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn runs(&self) -> usize {
        fs::read_to_string(self.path("runs.txt"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    pub fn start_agent(&self) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_medic-agent"))
            .args([
                "run",
                "--config",
                self.config.to_str().unwrap(),
                "--owner-uid",
                &self.uid.to_string(),
            ])
            .env_remove("MEDIC_AGENT_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Agent { child, logs }
    }
}

/// The `medic-agent run` process.
pub struct Agent {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Wait for a log line containing `needle`.
    pub async fn log_line(&self, needle: &str) -> String {
        self.log_lines(needle, 1).await.remove(0)
    }

    /// Wait for `count` log lines containing `needle`.
    pub async fn log_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let lines: Vec<String> = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line.contains(needle))
                .cloned()
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no log line with {needle:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Wait for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "the agent did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is gone (a zombie nobody reaped is dead all the same).
pub fn is_dead(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

pub async fn wait_dead(pid: u32) {
    let started = Instant::now();
    while !is_dead(pid) {
        assert!(started.elapsed() < DEADLINE, "process {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
