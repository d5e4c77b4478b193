//! The `medic-agent` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const SCRIPT: &[u8] = b"#!/bin/sh\necho restarted\n";

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic-agent"))
        .args(args)
        .output()
        .unwrap()
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// `medic-agent check` of `config`, trusting files owned by `uid`.
fn check(config: &Path, uid: &str) -> Output {
    agent(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--owner-uid",
        uid,
    ])
}

/// A config, an allowlist with one good and one tampered script, all owned by the test's user.
fn host() -> (TempDir, PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix("agent-cli-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    let uid = fs::metadata(dir.path()).unwrap().uid().to_string();
    let script = dir.path().join("restart.sh");
    write(&script, SCRIPT, 0o755);
    let digest = medic_allowlist::Sha256::of(SCRIPT);
    let allowlist = dir.path().join("allowlist.toml");
    let text = format!(
        "version = 1\n[[script]]\nname = \"restart\"\npath = \"{}\"\nsha256 = \"{digest}\"\n\
         timeout = 30\nargs = [{{ one_of = [\"nginx\"] }}]\nenv = [\"LOG_LEVEL\"]\n",
        script.display()
    );
    write(&allowlist, text.as_bytes(), 0o644);
    let config = dir.path().join("agent.toml");
    let text = format!(
        "server = \"https://medic.test:8443\"\nallowlist = \"{}\"\n[labels]\nrole = \"web\"\n",
        allowlist.display()
    );
    write(&config, text.as_bytes(), 0o600);
    (dir, config, uid)
}

#[test]
fn version_names_the_agent_and_the_protocol() {
    let output = agent(&["--version"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "medic-agent {} (protocol medic.agent.v1)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn check_prints_what_the_server_may_ask_for() {
    let (_dir, config, uid) = host();
    let output = check(&config, &uid);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("server     https://medic.test:8443"),
        "{text}"
    );
    assert!(text.contains("labels     role=web"), "{text}");
    assert!(text.contains("1 script(s)"), "{text}");
    assert!(text.contains("\nrestart  ok\n"), "{text}");
    assert!(text.contains("  args     one of [\"nginx\"]\n"), "{text}");
    assert!(text.contains("  env      LOG_LEVEL\n"), "{text}");
    assert!(text.contains("  timeout  30 s\n"), "{text}");
}

#[test]
fn check_reports_a_script_that_would_be_refused_and_exits_1() {
    let (dir, config, uid) = host();
    write(
        &dir.path().join("restart.sh"),
        b"#!/bin/sh\nrm -rf /\n",
        0o755,
    );
    let output = check(&config, &uid);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("restart  REFUSED hash_mismatch: "), "{text}");
    assert!(text.contains("1 script(s) would be refused"), "{text}");
}

#[test]
fn check_reports_an_untrusted_interpreter_and_shows_trusted_ones() {
    let (dir, config, uid) = host();
    let checked = || {
        let output = check(&config, &uid);
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (status, text) = checked();
    assert_eq!(status, Some(0), "{text}");
    let sh = fs::canonicalize("/bin/sh").unwrap();
    assert!(
        text.contains(&format!("  interp   {}\n", sh.display())),
        "{text}"
    );

    // The listed script (unchanged, so its hash still holds) names an interpreter in a
    // directory others can write to.
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
    write(&open.join("interp"), b"#!/bin/sh\n", 0o755);
    let script = format!("#!{}\necho restarted\n", open.join("interp").display());
    write(&dir.path().join("restart.sh"), script.as_bytes(), 0o755);
    let allowlist = dir.path().join("allowlist.toml");
    let text = fs::read_to_string(&allowlist).unwrap().replace(
        &medic_allowlist::Sha256::of(SCRIPT).to_string(),
        &medic_allowlist::Sha256::of(script.as_bytes()).to_string(),
    );
    write(&allowlist, text.as_bytes(), 0o644);
    let (status, text) = checked();
    assert_eq!(status, Some(1), "{text}");
    assert!(
        text.contains("restart  REFUSED interpreter_untrusted: "),
        "{text}"
    );
}

#[test]
fn check_refuses_an_untrusted_config_or_allowlist_and_exits_2() {
    let (dir, config, uid) = host();
    fs::set_permissions(&config, Permissions::from_mode(0o666)).unwrap();
    let output = check(&config, &uid);
    let text = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("writable_by_others"), "{text}");

    fs::set_permissions(&config, Permissions::from_mode(0o600)).unwrap();
    write(&dir.path().join("allowlist.toml"), b"version = 2\n", 0o644);
    let output = check(&config, &uid);
    let text = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("(unsupported_version)"), "{text}");
}

#[test]
fn a_bad_command_line_prints_usage_and_exits_2() {
    let output = agent(&["launch"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("usage: medic-agent")
    );
}

#[test]
fn run_refuses_an_unusable_configuration_and_exits_2() {
    let (_dir, config, uid) = host();
    write(&config, b"server = \"medic.test:8443\"\n", 0o600);
    let output = agent(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--owner-uid",
        &uid,
    ]);
    let text = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("server must be an http:// or https:// address"),
        "{text}"
    );
}

#[test]
fn run_without_an_api_key_says_so_and_exits_1() {
    let (_dir, config, uid) = host();
    let output = Command::new(env!("CARGO_BIN_EXE_medic-agent"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--owner-uid",
            &uid,
        ])
        .env_remove("MEDIC_AGENT_API_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("no API key"), "{text}");
    assert!(
        text.contains("\"level\":\"ERROR\""),
        "logs are JSON: {text}"
    );
}
