//! `medic-agent`: runs allow-listed scripts on a host for the Medic server.
//!
//! `run` connects to the server and runs what it asks for, within the local allowlist
//! (`docs/agent.md`, `docs/agent-protocol.md`); `check` validates the configuration and the
//! allowlist and prints what the server may ask for. Arguments are parsed by hand: three
//! commands do not justify an argument-parsing dependency in a binary that must stay small.
//!
//! Modules, from the ground up: [`config`], [`identity`], [`journal`], [`killswitch`],
//! [`output`], [`backoff`] and [`metrics`] are plain data and rules; [`sys`] holds the only
//! `unsafe` code (what a child does before `exec`); [`containment`] makes sure every process a
//! script starts ends with its execution; [`outbox`] and [`executor`] move bytes; [`agent`] is
//! the core that answers the server; [`connection`] keeps the stream open; [`run`] builds it
//! all. A fourth, hidden command, `__reap`, is the per-execution reaper of the `subreaper`
//! containment ([`containment::reaper`]): the agent runs its own binary with it.

#![deny(unsafe_code)]

mod agent;
mod backoff;
mod check;
mod config;
mod connection;
mod containment;
mod executor;
mod hello;
mod identity;
mod journal;
mod killswitch;
mod logging;
mod metrics;
mod outbox;
mod output;
mod proto;
mod run;
mod sys;
mod transport;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: medic-agent run [--config PATH] [--owner-uid UID]
       medic-agent check [--config PATH] [--owner-uid UID]
       medic-agent --version

commands:
  run          connect to the Medic server and run the allow-listed scripts it asks for, until
               SIGTERM or SIGINT. Logs are JSON lines on standard error.
  check        validate the configuration and the allowlist, verify every listed script file
               as an execution would, and print what the server may ask for. Exit status 0:
               everything verified; 1: some script would be refused; 2: nothing can run.

options:
  --config PATH    the configuration file (default /etc/medic/agent.toml)
  --owner-uid UID  trust files owned by UID (and directories owned by UID or root) instead of
                   root only: for trying an allowlist out without root
  --version, -V    print the version
  --help, -h       print this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Version,
    Help,
    Check {
        config: PathBuf,
        owner_uid: Option<u32>,
    },
    Run {
        config: PathBuf,
        owner_uid: Option<u32>,
    },
    /// The reaper of one execution (`subreaper` containment), with its arguments.
    Reap(Vec<OsString>),
}

fn parse(args: &[OsString]) -> Result<Command, String> {
    let mut args = args.iter();
    let Some(first) = args.next() else {
        return Err("a command is needed".into());
    };
    match first.to_str() {
        Some("--version" | "-V") => Ok(Command::Version),
        Some("--help" | "-h" | "help") => Ok(Command::Help),
        Some(containment::REAPER_COMMAND) => Ok(Command::Reap(args.cloned().collect())),
        Some(command @ ("check" | "run")) => {
            let mut config = PathBuf::from(config::DEFAULT_PATH);
            let mut owner_uid = None;
            while let Some(option) = args.next() {
                let value = args.next();
                match (option.to_str(), value) {
                    (Some("--config"), Some(value)) => config = PathBuf::from(value),
                    (Some("--owner-uid"), Some(value)) => {
                        let uid = value
                            .to_str()
                            .and_then(|text| text.parse().ok())
                            .ok_or("--owner-uid takes a numeric uid")?;
                        owner_uid = Some(uid);
                    }
                    (Some("--config" | "--owner-uid"), None) => {
                        return Err(format!("{} needs a value", option.to_string_lossy()));
                    }
                    _ => return Err(format!("unknown option {}", option.to_string_lossy())),
                }
            }
            Ok(if command == "run" {
                Command::Run { config, owner_uid }
            } else {
                Command::Check { config, owner_uid }
            })
        }
        _ => Err(format!("unknown command {}", first.to_string_lossy())),
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    argv.next(); // the program name
    let args: Vec<OsString> = argv.collect();
    let (text, status, to_stdout) = match parse(&args) {
        Ok(Command::Version) => (
            format!(
                "medic-agent {} (protocol medic.agent.v1)\n",
                env!("CARGO_PKG_VERSION")
            ),
            0,
            true,
        ),
        Ok(Command::Help) => (USAGE.to_owned(), 0, true),
        Ok(Command::Check { config, owner_uid }) => {
            let report = check::check(&config, owner_uid);
            let ok = report.status < 2;
            (report.text, report.status, ok)
        }
        Ok(Command::Run { config, owner_uid }) => {
            return ExitCode::from(run::run(config, owner_uid));
        }
        #[cfg(target_os = "linux")]
        Ok(Command::Reap(args)) => return ExitCode::from(containment::reaper::main(&args)),
        #[cfg(not(target_os = "linux"))]
        Ok(Command::Reap(_)) => (
            "medic-agent: no reaper on this system\n".to_owned(),
            2,
            false,
        ),
        Err(message) => (format!("medic-agent: {message}\n\n{USAGE}"), 2, false),
    };
    // A closed pipe is not worth a panic: the status still tells.
    let _ = if to_stdout {
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::io::stderr().write_all(text.as_bytes())
    };
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_options_parse() {
        assert_eq!(parsed(&["--version"]), Ok(Command::Version));
        assert_eq!(parsed(&["-V"]), Ok(Command::Version));
        assert_eq!(parsed(&["-h"]), Ok(Command::Help));
        assert_eq!(
            parsed(&["check"]),
            Ok(Command::Check {
                config: PathBuf::from("/etc/medic/agent.toml"),
                owner_uid: None
            })
        );
        assert_eq!(
            parsed(&["check", "--owner-uid", "1000", "--config", "/x.toml"]),
            Ok(Command::Check {
                config: PathBuf::from("/x.toml"),
                owner_uid: Some(1000)
            })
        );
        assert_eq!(
            parsed(&["run", "--config", "/a.toml", "--owner-uid", "7"]),
            Ok(Command::Run {
                config: PathBuf::from("/a.toml"),
                owner_uid: Some(7)
            })
        );
        assert_eq!(
            parsed(&["run"]),
            Ok(Command::Run {
                config: PathBuf::from("/etc/medic/agent.toml"),
                owner_uid: None
            })
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        for args in [
            &[][..],
            &["launch"],
            &["run", "--config"],
            &["run", "--verbose", "x"],
            &["check", "--config"],
            &["check", "--owner-uid", "root"],
            &["check", "--verbose", "x"],
        ] {
            assert!(parsed(args).is_err(), "{args:?}");
        }
    }
}
