//! The real agent binary against a real gRPC server speaking `medic.agent.v1`: the stream, the
//! executions, restarts, TLS. The harness (the fake server, the host, the agent process) is
//! `support/mod.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::fs;

use support::proto::server_message::Body as ServerBody;
use support::proto::{Execute, ExecutionState, ExecutionUpdate, OutputStream};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The sleeper script prints "<its pid> <its child's pid>".
fn sleeper_pids(output: &str) -> (u32, u32) {
    let mut pids = output.split_whitespace().map(|pid| pid.parse().unwrap());
    (pids.next().unwrap(), pids.next().unwrap())
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hello_welcome_then_an_allowlisted_script_runs_with_its_output_streamed() {
    let mut server = fake_server(None).await;
    let host = host(
        &format!("http://{}", server.address),
        "metrics_listen = \"127.0.0.1:0\"",
    );
    let agent = host.start_agent();

    let (mut session, hello, replay) = server.welcomed_session().await;
    assert!(is_uuid(&hello.agent_id), "{hello:?}");
    assert!(!hello.hostname.is_empty());
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.os, std::env::consts::OS);
    assert_eq!(hello.arch, std::env::consts::ARCH);
    assert_eq!(hello.labels, HashMap::from([("role".into(), "web".into())]));
    assert!(!hello.executions_paused);
    assert_eq!(hello.max_concurrent_executions, 16, "the default limit");
    let allowlist = hello.allowlist.unwrap();
    let mut names: Vec<&str> = allowlist.scripts.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["count", "echo", "sleeper", "slow"]);
    assert!(
        replay.is_empty(),
        "a new agent remembers nothing: {replay:?}"
    );

    session.send(ServerBody::Execute(Execute {
        execution_id: "e-1".into(),
        script: "echo".into(),
        args: vec!["hello world".into(), "s3cr3t-arg".into()],
        env: HashMap::from([("GREETING".into(), "env-s3cr3t".into())]),
        ..Execute::default()
    }));
    let updates = session.updates_until_final("e-1").await;
    let states: Vec<ExecutionState> = updates.iter().map(ExecutionUpdate::state).collect();
    assert_eq!(
        states,
        [
            ExecutionState::Accepted,
            ExecutionState::Running,
            ExecutionState::Succeeded
        ]
    );
    let done = updates.last().unwrap();
    assert_eq!(done.exit_code, Some(0));
    assert!(!done.output_truncated);
    assert_eq!(done.output_chunks, session.chunks.len() as u64);
    let mut sequences: Vec<u64> = session.chunks.iter().map(|c| c.sequence).collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (0..done.output_chunks).collect::<Vec<_>>());
    assert_eq!(session.stdout("e-1"), "out:hello world s3cr3t-arg\n");
    let stderr: Vec<u8> = session
        .chunks
        .iter()
        .filter(|c| c.stream() == OutputStream::Stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    assert_eq!(stderr, b"err:env-s3cr3t\n");

    // Metrics, on the address the agent logged.
    let line = agent.log_line("metrics endpoint listening").await;
    let address = line
        .split("\"address\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.contains(
            "medic_agent_script_executions_total{script=\"echo\",result=\"succeeded\"} 1\n"
        ),
        "{response}"
    );
    assert!(response.contains("medic_agent_connected 1\n"), "{response}");

    agent.log_line("execution ended").await;
    let logs = agent.logs();
    assert!(logs.contains("\"execution_id\":\"e-1\""), "{logs}");
    for secret in ["s3cr3t-arg", "env-s3cr3t", API_KEY] {
        assert!(!logs.contains(secret), "{secret} is in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn refused_requests_are_rejected_with_their_reason_and_nothing_runs() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let _agent = host.start_agent();
    let (mut session, hello, _) = server.welcomed_session().await;
    let count_sha = hello
        .allowlist
        .unwrap()
        .scripts
        .iter()
        .find(|s| s.name == "count")
        .unwrap()
        .sha256
        .clone();

    let cases: Vec<(Execute, &str)> = vec![
        (
            Execute {
                script: "rm-rf".into(),
                ..Execute::default()
            },
            "not_allowlisted",
        ),
        (
            Execute {
                script: "echo".into(),
                args: vec!["UPPER; rm -rf /".into()],
                ..Execute::default()
            },
            "arg_not_allowed",
        ),
        (
            Execute {
                script: "echo".into(),
                env: HashMap::from([("LD_PRELOAD".into(), "/x.so".into())]),
                ..Execute::default()
            },
            "env_not_allowed",
        ),
        (
            Execute {
                script: "count".into(),
                timeout_seconds: 31,
                ..Execute::default()
            },
            "timeout_too_long",
        ),
        (
            Execute {
                script: "count".into(),
                expected_sha256: "0".repeat(64),
                ..Execute::default()
            },
            "expected_hash_mismatch",
        ),
        (
            Execute {
                script: "count".into(),
                expected_sha256: "not-hex".into(),
                ..Execute::default()
            },
            "invalid_request",
        ),
    ];
    for (index, (mut execute, reason)) in cases.into_iter().enumerate() {
        let id = format!("r-{index}");
        execute.execution_id = id.clone();
        session.send(ServerBody::Execute(execute));
        let update = session.update(&id).await;
        assert_eq!(update.state(), ExecutionState::Rejected, "{update:?}");
        assert_eq!(update.reason, reason, "{update:?}");
    }
    session.execute("", "count", &[]);
    let update = session.update("").await;
    assert_eq!(
        (update.state(), update.reason.as_str()),
        (ExecutionState::Rejected, "invalid_request")
    );

    // The right expected hash passes.
    session.send(ServerBody::Execute(Execute {
        execution_id: "ok".into(),
        script: "count".into(),
        expected_sha256: count_sha,
        ..Execute::default()
    }));
    let updates = session.updates_until_final("ok").await;
    assert_eq!(updates.last().unwrap().state(), ExecutionState::Succeeded);
    assert_eq!(host.runs(), 1, "only the valid request ran");
}

#[tokio::test]
async fn the_kill_switch_file_pauses_executions_and_the_server_is_told() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let _agent = host.start_agent();
    let (mut session, hello, _) = server.welcomed_session().await;
    assert!(!hello.executions_paused);

    fs::write(host.path("agent.paused"), "disk migration\n").unwrap();
    session.execute("p-1", "count", &[]);
    let update = session.update("p-1").await;
    assert_eq!(update.state(), ExecutionState::Rejected);
    assert_eq!(update.reason, "paused");
    assert!(update.detail.contains("disk migration"), "{update:?}");
    let paused = session.hello_where(|hello| hello.executions_paused).await;
    assert_eq!(paused.paused_reason, "disk migration");
    assert_eq!(host.runs(), 0);

    fs::remove_file(host.path("agent.paused")).unwrap();
    // Noticed by the periodic check, without any request. (The first Hello is not among those
    // `hello_where` looks at, so an unpaused one can only be a new one.)
    let resumed = session.hello_where(|hello| !hello.executions_paused).await;
    assert!(resumed.paused_reason.is_empty());
    session.execute("p-2", "count", &[]);
    let updates = session.updates_until_final("p-2").await;
    assert_eq!(updates.last().unwrap().state(), ExecutionState::Succeeded);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let _agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;

    session.send(ServerBody::Execute(Execute {
        execution_id: "t-1".into(),
        script: "sleeper".into(),
        timeout_seconds: 1,
        ..Execute::default()
    }));
    let updates = session.updates_until_final("t-1").await;
    let done = updates.last().unwrap();
    assert_eq!(done.state(), ExecutionState::TimedOut, "{done:?}");
    assert_eq!(done.signal, Some(15));
    assert!(done.duration_ms >= 1000, "{done:?}");
    let (script, child) = sleeper_pids(&session.stdout("t-1"));
    wait_dead(script).await;
    wait_dead(child).await;
}

#[tokio::test]
async fn cancel_kills_a_running_execution_and_an_early_cancel_is_remembered() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "max_concurrent = 1");
    let _agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;

    session.execute("c-1", "sleeper", &[]);
    assert_eq!(
        session.update("c-1").await.state(),
        ExecutionState::Accepted
    );
    assert_eq!(session.update("c-1").await.state(), ExecutionState::Running);
    session
        .heartbeat_where(|beat| beat.running_execution_ids == ["c-1"])
        .await;

    // One may run at a time.
    session.execute("c-2", "count", &[]);
    let refused = session.update("c-2").await;
    assert_eq!(
        (refused.state(), refused.reason.as_str()),
        (ExecutionState::Rejected, "too_many_running")
    );

    // The script has printed its pids once its first chunk is in.
    while session.stdout("c-1").is_empty() {
        let body = session.next().await;
        session.keep(body);
    }
    let (script, child) = sleeper_pids(&session.stdout("c-1"));
    session.cancel("c-1", "operator asked");
    let cancelled = session.update("c-1").await;
    assert_eq!(
        cancelled.state(),
        ExecutionState::Cancelled,
        "{cancelled:?}"
    );
    assert!(cancelled.detail.contains("operator asked"), "{cancelled:?}");
    wait_dead(script).await;
    wait_dead(child).await;

    // A Cancel before its Execute: remembered, and the Execute is answered the same way.
    session.cancel("c-3", "changed my mind");
    let early = session.update("c-3").await;
    assert_eq!(
        (early.state(), early.reason.as_str()),
        (ExecutionState::Cancelled, "cancelled_before_start")
    );
    session.execute("c-3", "count", &[]);
    assert_eq!(session.update("c-3").await, early);
    // A Cancel for a finished execution repeats its final state.
    session.cancel("c-1", "again");
    assert_eq!(session.update("c-1").await, cancelled);
    assert_eq!(host.runs(), 0);
}

#[tokio::test]
async fn the_hello_advertises_the_limit_and_a_refusal_for_it_is_not_remembered() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "max_concurrent = 1");
    let _agent = host.start_agent();
    let (mut session, hello, _) = server.welcomed_session().await;
    assert_eq!(hello.max_concurrent_executions, 1);

    session.execute("b-1", "sleeper", &[]);
    assert_eq!(
        session.update("b-1").await.state(),
        ExecutionState::Accepted
    );
    assert_eq!(session.update("b-1").await.state(), ExecutionState::Running);
    session.execute("b-2", "count", &[]);
    let refused = session.update("b-2").await;
    assert_eq!(
        (refused.state(), refused.reason.as_str()),
        (ExecutionState::Rejected, "too_many_running")
    );
    session.cancel("b-1", "free the slot");
    while session.update("b-1").await.state() != ExecutionState::Cancelled {}

    // The server sends the refused execution again once the slot is free: it runs, once.
    session.execute("b-2", "count", &[]);
    let done = session.updates_until_final("b-2").await.pop().unwrap();
    assert_eq!(done.state(), ExecutionState::Succeeded, "{done:?}");
    assert_eq!(host.runs(), 1);
}

#[tokio::test]
async fn a_redelivered_execute_never_runs_twice_across_reconnects_and_restarts() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let mut agent = host.start_agent();
    let (mut session, first_hello, _) = server.welcomed_session().await;

    session.execute("d-1", "count", &[]);
    let done = session.updates_until_final("d-1").await.pop().unwrap();
    assert_eq!(done.state(), ExecutionState::Succeeded);
    // Redelivered on the same stream.
    session.execute("d-1", "count", &[]);
    assert_eq!(session.update("d-1").await, done);

    // The stream breaks; the agent reconnects and replays what it remembers.
    drop(session);
    let (mut session, hello, replay) = server.welcomed_session().await;
    assert_eq!(hello.agent_id, first_hello.agent_id);
    assert_eq!(replay, std::slice::from_ref(&done));
    session.execute("d-1", "count", &[]);
    assert_eq!(session.update("d-1").await, done);

    // The agent restarts with the same state directory.
    agent.signal(rustix::process::Signal::TERM);
    assert!(agent.exited().await.success());
    drop(session);
    let _agent = host.start_agent();
    let (mut session, hello, replay) = server.welcomed_session().await;
    assert_eq!(
        hello.agent_id, first_hello.agent_id,
        "the id survives restarts"
    );
    assert_eq!(replay, std::slice::from_ref(&done));
    session.execute("d-1", "count", &[]);
    assert_eq!(session.update("d-1").await, done);
    assert_eq!(host.runs(), 1, "ran exactly once");
}

#[tokio::test]
async fn an_execution_outlives_a_broken_stream_and_its_end_is_delivered_after_reconnect() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let _agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;
    session.execute("b-1", "slow", &[]);
    assert_eq!(
        session.update("b-1").await.state(),
        ExecutionState::Accepted
    );
    assert_eq!(session.update("b-1").await.state(), ExecutionState::Running);
    drop(session);

    // Whether the script ended before or after the reconnect, its final state arrives: in the
    // replay, or (still running then, and listed in the first heartbeat) later on the stream.
    let (mut session, _, replay) = server.welcomed_session().await;
    let replayed = replay
        .into_iter()
        .find(|update| update.execution_id == "b-1")
        .unwrap();
    let done = if replayed.state() == ExecutionState::Running {
        assert_eq!(session.heartbeats[0].running_execution_ids, ["b-1"]);
        session.update("b-1").await
    } else {
        replayed
    };
    assert_eq!(done.state(), ExecutionState::Succeeded, "{done:?}");
    assert_eq!(done.exit_code, Some(0));
}

#[tokio::test]
async fn stopping_the_agent_kills_running_scripts_and_reports_them_failed() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let mut agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;

    session.execute("s-1", "sleeper", &[]);
    assert_eq!(
        session.update("s-1").await.state(),
        ExecutionState::Accepted
    );
    assert_eq!(session.update("s-1").await.state(), ExecutionState::Running);
    while session.stdout("s-1").is_empty() {
        let body = session.next().await;
        session.keep(body);
    }
    let (script, child) = sleeper_pids(&session.stdout("s-1"));

    agent.signal(rustix::process::Signal::TERM);
    let stopped = session.update("s-1").await;
    assert_eq!(
        (stopped.state(), stopped.reason.as_str()),
        (ExecutionState::Failed, "agent_stopped")
    );
    assert!(agent.exited().await.success());
    wait_dead(script).await;
    wait_dead(child).await;
}

#[tokio::test]
async fn an_execution_running_when_the_agent_dies_is_reported_failed_after_restart() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    let mut agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;

    session.execute("k-1", "sleeper", &[]);
    assert_eq!(
        session.update("k-1").await.state(),
        ExecutionState::Accepted
    );
    assert_eq!(session.update("k-1").await.state(), ExecutionState::Running);
    while session.stdout("k-1").is_empty() {
        let body = session.next().await;
        session.keep(body);
    }
    let (script, child) = sleeper_pids(&session.stdout("k-1"));

    agent.signal(rustix::process::Signal::KILL);
    agent.exited().await;
    // Under systemd the service's cgroup goes with it; here the orphans are the test's to end.
    let group = rustix::process::Pid::from_raw(script as i32).unwrap();
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    wait_dead(child).await;

    drop(session);
    let _agent = host.start_agent();
    let (mut session, _, replay) = server.welcomed_session().await;
    let failed = replay
        .iter()
        .find(|update| update.execution_id == "k-1")
        .unwrap();
    assert_eq!(
        (failed.state(), failed.reason.as_str()),
        (ExecutionState::Failed, "agent_stopped")
    );
    session.execute("k-1", "sleeper", &[]);
    assert_eq!(&session.update("k-1").await, failed, "not started again");
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_and_retried_with_backoff() {
    let mut server = fake_server(None).await;
    let host = host(&format!("http://{}", server.address), "");
    write(&host.path("agent.key"), b"medic_k1_wrong", 0o600);
    let agent = host.start_agent();
    agent.log_lines("Unauthenticated", 2).await;
    assert!(server.sessions.try_recv().is_err());
    let logs = agent.logs();
    assert!(!logs.contains("medic_k1_wrong"), "{logs}");
}

#[tokio::test]
async fn mutual_tls_with_a_private_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue("medic.test", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = issue("agent.test", ExtendedKeyUsagePurpose::ClientAuth);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(server_cert, server_key))
        .client_ca_root(Certificate::from_pem(ca.pem()));
    let mut server = fake_server(Some(tls)).await;

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let cert_path = dir.path().join("agent.pem");
    let key_path = dir.path().join("agent-key.pem");
    write(&ca_path, ca.pem().as_bytes(), 0o644);
    write(&cert_path, client_cert.as_bytes(), 0o644);
    write(&key_path, client_key.as_bytes(), 0o600);
    let host = host(
        &format!("https://127.0.0.1:{}", server.address.port()),
        &format!(
            "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ndomain = \"medic.test\"",
            ca_path.display(),
            cert_path.display(),
            key_path.display()
        ),
    );
    let _agent = host.start_agent();
    let (mut session, _, _) = server.welcomed_session().await;
    assert_eq!(
        session.client_certificates, 1,
        "the agent presented its certificate"
    );
    session.execute("tls-1", "count", &[]);
    let done = session.updates_until_final("tls-1").await.pop().unwrap();
    assert_eq!(done.state(), ExecutionState::Succeeded);
}
