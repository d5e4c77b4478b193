//! The interpreters a script's `#!` line leads to: held to the trust rules of scripts, resolved
//! one component at a time, `env NAME` only when listed, hashes pinned by `[[interpreter]]`.
//!
//! Interpreters here are small `#!/bin/sh` scripts in the sandbox (so nesting can be tested) or
//! the system's own `/bin/sh` and `/usr/bin/env`. Tests that chown to `nobody` need root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::{self, Permissions};
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::path::PathBuf;
use std::process::Command;

use medic_allowlist::{
    Allowlist, FilePolicy, Interpreter, Interpreters, MAX_INTERPRETER_DEPTH, Reason, Sha256,
    VerifiedScript, open_verified_script,
};
use support::{NOBODY, Sandbox, inherit_fd, policy, require_root, run};

/// An interpreter that runs the script it is given with /bin/sh, so a chain of them works.
const INTERP: &[u8] = b"#!/bin/sh\nexec /bin/sh \"$@\"\n";

fn script_for(interpreter: &str) -> Vec<u8> {
    format!("#!{interpreter}\necho \"ran by $0\"\n").into_bytes()
}

fn verify(
    sandbox: &Sandbox,
    script: &[u8],
    interpreters: &Interpreters,
) -> Result<VerifiedScript, medic_allowlist::Refusal> {
    let path = sandbox.write(&format!("script-{}", Sha256::of(script)), script, 0o755);
    open_verified_script(&path, Sha256::of(script), &policy(sandbox), interpreters)
}

fn reason(sandbox: &Sandbox, script: &[u8], interpreters: &Interpreters) -> Reason {
    verify(sandbox, script, interpreters).unwrap_err().reason()
}

fn listed(paths: &[(&str, Option<Sha256>)]) -> Interpreters {
    Interpreters::new(
        paths
            .iter()
            .map(|(path, sha256)| Interpreter::new(PathBuf::from(path), *sha256).unwrap()),
    )
    .unwrap()
}

fn real(path: &str) -> PathBuf {
    fs::canonicalize(path).unwrap()
}

// ---- what passes ------------------------------------------------------------------------------

#[test]
fn a_system_shell_through_merged_usr_links_is_trusted_and_runs() {
    let sandbox = Sandbox::new();
    let script = script_for("/bin/sh");
    let verified = verify(&sandbox, &script, &Interpreters::NONE).unwrap();
    // /bin -> usr/bin (and sh -> dash on Debian) are followed, not refused.
    assert_eq!(verified.interpreters(), [real("/bin/sh")]);
    let fd = std::os::fd::AsRawFd::as_raw_fd(verified.file());
    let output = run(inherit_fd(&mut Command::new(verified.exec_path()), fd));
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn binaries_have_no_interpreter_to_check() {
    let sandbox = Sandbox::new();
    let binary = fs::read(support::system_binary("true")).unwrap();
    assert!(
        verify(&sandbox, &binary, &Interpreters::NONE)
            .unwrap()
            .interpreters()
            .is_empty()
    );
}

#[test]
fn a_trusted_interpreter_of_the_sandbox_and_a_link_to_it_are_followed() {
    let sandbox = Sandbox::new();
    let interp = sandbox.write("interp", INTERP, 0o755);
    symlink("interp", sandbox.path("link")).unwrap();
    for written in [interp.clone(), sandbox.path("link")] {
        let script = script_for(written.to_str().unwrap());
        let verified = verify(&sandbox, &script, &Interpreters::NONE).unwrap();
        assert_eq!(verified.interpreters(), [interp.clone(), real("/bin/sh")]);
    }
}

#[test]
fn interpreters_nest_up_to_the_kernels_limit_and_no_deeper() {
    let sandbox = Sandbox::new();
    // level 1 is run by /bin/sh; level n by level n-1.
    let mut previous = String::from("/bin/sh");
    let mut levels = Vec::new();
    for level in 1..=MAX_INTERPRETER_DEPTH {
        let body = format!("#!{previous}\nexec /bin/sh \"$@\"\n");
        let path = sandbox.write(&format!("level{level}"), body.as_bytes(), 0o755);
        previous = path.to_str().unwrap().to_owned();
        levels.push(path);
    }
    // The script's interpreter is level 3: level 3, 2, 1 and /bin/sh make four.
    let script = script_for(levels[MAX_INTERPRETER_DEPTH - 2].to_str().unwrap());
    let verified = verify(&sandbox, &script, &Interpreters::NONE).unwrap();
    assert_eq!(verified.interpreters().len(), MAX_INTERPRETER_DEPTH);
    assert_eq!(verified.interpreters().last(), Some(&real("/bin/sh")));
    // Level 4 as the interpreter: five in a row.
    let deeper = script_for(levels[MAX_INTERPRETER_DEPTH - 1].to_str().unwrap());
    let refused = verify(&sandbox, &deeper, &Interpreters::NONE).unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    assert!(
        refused.detail().contains("interpreters in a row"),
        "{}",
        refused.detail()
    );
}

// ---- the attack: an interpreter someone else controls -----------------------------------------

#[test]
fn an_interpreter_in_a_directory_owned_by_another_user_is_refused() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let theirs = sandbox.subdir("theirs", 0o755);
    let interp = sandbox.write("theirs/interp", INTERP, 0o755);
    chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let script = script_for(interp.to_str().unwrap());
    let refused = verify(&sandbox, &script, &Interpreters::NONE).unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    assert!(refused.detail().contains("65534"), "{}", refused.detail());
    // Listing it changes nothing: a listing never relaxes the ownership rules.
    let listing = listed(&[(interp.to_str().unwrap(), Some(Sha256::of(INTERP)))]);
    assert_eq!(
        reason(&sandbox, &script, &listing),
        Reason::InterpreterUntrusted
    );
}

#[test]
fn an_interpreter_owned_by_another_user_is_refused() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let interp = sandbox.write("interp", INTERP, 0o755);
    chown(&interp, Some(NOBODY), None).unwrap();
    let script = script_for(interp.to_str().unwrap());
    assert_eq!(
        reason(&sandbox, &script, &Interpreters::NONE),
        Reason::InterpreterUntrusted
    );
    // Root's own files are fine whoever the policy trusts (interpreters are the system's).
    chown(&interp, Some(0), None).unwrap();
    assert!(verify(&sandbox, &script, &Interpreters::NONE).is_ok());
}

#[test]
fn a_symbolic_link_owned_by_another_user_is_refused() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    sandbox.write("interp", INTERP, 0o755);
    let link = sandbox.path("link");
    symlink("interp", &link).unwrap();
    lchown(&link, Some(NOBODY), None).unwrap();
    let script = script_for(link.to_str().unwrap());
    let refused = verify(&sandbox, &script, &Interpreters::NONE).unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    assert!(
        refused.detail().contains("symbolic link"),
        "{}",
        refused.detail()
    );
}

#[test]
fn a_link_from_a_trusted_directory_into_an_open_one_is_refused() {
    let sandbox = Sandbox::new();
    let open = sandbox.subdir("open", 0o777);
    sandbox.write("open/interp", INTERP, 0o755);
    symlink(open.join("interp"), sandbox.path("link")).unwrap();
    let script = script_for(sandbox.path("link").to_str().unwrap());
    let refused = verify(&sandbox, &script, &Interpreters::NONE).unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    assert!(
        refused.detail().contains("writable"),
        "{}",
        refused.detail()
    );
}

#[test]
fn group_or_world_writable_interpreters_and_their_directories_are_refused() {
    let sandbox = Sandbox::new();
    let dir = sandbox.subdir("bin", 0o755);
    let interp = sandbox.write("bin/interp", INTERP, 0o755);
    let script = script_for(interp.to_str().unwrap());
    assert!(verify(&sandbox, &script, &Interpreters::NONE).is_ok());
    for mode in [0o775, 0o757] {
        fs::set_permissions(&interp, Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            reason(&sandbox, &script, &Interpreters::NONE),
            Reason::InterpreterUntrusted,
            "{mode:o}"
        );
    }
    fs::set_permissions(&interp, Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        reason(&sandbox, &script, &Interpreters::NONE),
        Reason::InterpreterUntrusted
    );
}

#[test]
fn an_interpreter_must_be_an_executable_regular_file_without_set_id_bits() {
    let sandbox = Sandbox::new();
    let interp = sandbox.write("interp", INTERP, 0o644);
    let script = script_for(interp.to_str().unwrap());
    assert_eq!(
        reason(&sandbox, &script, &Interpreters::NONE),
        Reason::InterpreterUntrusted
    );
    for mode in [0o4755, 0o2755] {
        fs::set_permissions(&interp, Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            reason(&sandbox, &script, &Interpreters::NONE),
            Reason::Setuid
        );
    }
    let dir = sandbox.subdir("a-directory", 0o755);
    assert_eq!(
        reason(
            &sandbox,
            &script_for(dir.to_str().unwrap()),
            &Interpreters::NONE
        ),
        Reason::InterpreterUntrusted
    );
}

#[test]
fn an_untrusted_interpreter_of_an_interpreter_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.subdir("open", 0o777);
    let inner = sandbox.write("open/inner", INTERP, 0o755);
    let outer = sandbox.write(
        "outer",
        format!("#!{}\n", inner.display()).as_bytes(),
        0o755,
    );
    assert_eq!(
        reason(
            &sandbox,
            &script_for(outer.to_str().unwrap()),
            &Interpreters::NONE
        ),
        Reason::InterpreterUntrusted
    );
}

#[test]
fn symbolic_link_loops_end_in_a_refusal() {
    let sandbox = Sandbox::new();
    symlink("b", sandbox.path("a")).unwrap();
    symlink("a", sandbox.path("b")).unwrap();
    let refused = verify(
        &sandbox,
        &script_for(sandbox.path("a").to_str().unwrap()),
        &Interpreters::NONE,
    )
    .unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    assert!(
        refused.detail().contains("symbolic links"),
        "{}",
        refused.detail()
    );
}

#[test]
fn relative_missing_and_malformed_interpreters_have_their_own_codes() {
    let sandbox = Sandbox::new();
    let none = &Interpreters::NONE;
    assert_eq!(
        reason(&sandbox, &script_for("sh"), none),
        Reason::InterpreterNotAbsolute
    );
    assert_eq!(
        reason(&sandbox, &script_for("bin/sh"), none),
        Reason::InterpreterNotAbsolute
    );
    let missing = sandbox.path("no-such-interpreter");
    assert_eq!(
        reason(&sandbox, &script_for(missing.to_str().unwrap()), none),
        Reason::InterpreterNotFound
    );
    for not_a_file in ["/usr/bin/env/below", "/bin/sh/", "/bin/sh/.", "/bin/sh/.."] {
        assert_eq!(
            reason(&sandbox, &script_for(not_a_file), none),
            Reason::InterpreterNotFound,
            "{not_a_file}"
        );
    }
    assert_eq!(
        reason(&sandbox, b"#!\necho\n", none),
        Reason::InterpreterInvalid
    );
    let long = [b"#!/".as_slice(), &[b'a'; 300]].concat();
    assert_eq!(reason(&sandbox, &long, none), Reason::InterpreterInvalid);
}

// ---- env NAME ---------------------------------------------------------------------------------

#[test]
fn env_name_is_refused_unless_what_it_finds_is_listed() {
    let sandbox = Sandbox::new();
    let script = script_for("/usr/bin/env sh");
    let refused = verify(&sandbox, &script, &Interpreters::NONE).unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterNotListed);
    assert!(
        refused.detail().contains("/usr/bin/sh"),
        "{}",
        refused.detail()
    );
    // env finds /usr/bin/sh first (the scripts' PATH is /usr/sbin:/usr/bin:/sbin:/bin): that
    // name, a link followed from it, or the real file may be listed.
    for name in ["/usr/bin/sh", real("/usr/bin/sh").to_str().unwrap()] {
        let verified = verify(&sandbox, &script, &listed(&[(name, None)])).unwrap();
        assert_eq!(
            verified.interpreters(),
            [real("/usr/bin/env"), real("/usr/bin/sh")],
            "{name}"
        );
    }
    // Another interpreter's listing does not do.
    assert_eq!(
        reason(&sandbox, &script, &listed(&[("/usr/bin/perl", None)])),
        Reason::InterpreterNotListed
    );
    // /bin/env is env too (through /bin -> usr/bin).
    assert_eq!(
        reason(&sandbox, &script_for("/bin/env sh"), &Interpreters::NONE),
        Reason::InterpreterNotListed
    );
}

#[test]
fn env_with_options_assignments_or_paths_is_refused_even_when_listed() {
    let sandbox = Sandbox::new();
    let sh = listed(&[("/usr/bin/sh", None)]);
    for line in [
        "/usr/bin/env -S sh -e",
        "/usr/bin/env -i sh",
        "/usr/bin/env A=1 sh",
        "/usr/bin/env /usr/bin/sh",
        "/usr/bin/env sh -e",
        "/usr/bin/env",
    ] {
        assert_eq!(
            reason(&sandbox, &script_for(line), &sh),
            Reason::InterpreterInvalid,
            "{line}"
        );
    }
    assert_eq!(
        reason(
            &sandbox,
            &script_for("/usr/bin/env no-such-program-here"),
            &sh
        ),
        Reason::InterpreterNotFound
    );
}

#[test]
fn a_listing_loaded_from_the_allowlist_allows_env_through_verify() {
    let sandbox = Sandbox::new();
    let script = script_for("/usr/bin/env sh");
    let path = sandbox.write("env-script", &script, 0o755);
    let text = |interpreters: &str| {
        format!(
            "version = 1\n[[script]]\nname = \"s\"\npath = \"{}\"\nsha256 = \"{}\"\n\
             timeout = 5\n{interpreters}",
            path.display(),
            Sha256::of(&script)
        )
    };
    let request = medic_allowlist::Request {
        script: "s".into(),
        ..Default::default()
    };
    let without = Allowlist::from_toml(&text("")).unwrap();
    assert_eq!(
        without
            .verify(&request, &policy(&sandbox))
            .unwrap_err()
            .reason(),
        Reason::InterpreterNotListed
    );
    let with = Allowlist::from_toml(&text("[[interpreter]]\npath = \"/usr/bin/sh\"\n")).unwrap();
    assert!(with.verify(&request, &policy(&sandbox)).is_ok());
    let script = with.get("s").unwrap();
    assert!(with.open_script(script, &policy(&sandbox)).is_ok());
    assert_eq!(
        without
            .open_script(script, &policy(&sandbox))
            .unwrap_err()
            .reason(),
        Reason::InterpreterNotListed
    );
}

// ---- pinned hashes ----------------------------------------------------------------------------

#[test]
fn a_pinned_hash_must_match_the_interpreter() {
    let sandbox = Sandbox::new();
    let interp = sandbox.write("interp", INTERP, 0o755);
    let name = interp.to_str().unwrap();
    let script = script_for(name);
    assert!(
        verify(
            &sandbox,
            &script,
            &listed(&[(name, Some(Sha256::of(INTERP)))])
        )
        .is_ok()
    );
    let refused = verify(
        &sandbox,
        &script,
        &listed(&[(name, Some(Sha256::of(b"other")))]),
    )
    .unwrap_err();
    assert_eq!(refused.reason(), Reason::InterpreterHashMismatch);
    assert!(
        refused.detail().contains(&Sha256::of(INTERP).to_string()),
        "{}",
        refused.detail()
    );
    // The pin of what env finds is checked too.
    let env_script = script_for("/usr/bin/env sh");
    let wrong = listed(&[("/usr/bin/sh", Some(Sha256::of(b"other")))]);
    assert_eq!(
        reason(&sandbox, &env_script, &wrong),
        Reason::InterpreterHashMismatch
    );
    let sh = Sha256::of(&fs::read("/usr/bin/sh").unwrap());
    assert!(verify(&sandbox, &env_script, &listed(&[("/usr/bin/sh", Some(sh))])).is_ok());
}

#[test]
fn the_interpreter_table_is_bounded_and_paths_are_unique() {
    let many = (0..=medic_allowlist::MAX_INTERPRETERS)
        .map(|i| Interpreter::new(PathBuf::from(format!("/usr/bin/i{i}")), None).unwrap());
    assert_eq!(
        Interpreters::new(many).unwrap_err().code(),
        "too_many_interpreters"
    );
    let twice = ["/usr/bin/a", "/usr/bin/a"]
        .iter()
        .map(|path| Interpreter::new(PathBuf::from(path), None).unwrap());
    assert_eq!(
        Interpreters::new(twice).unwrap_err().code(),
        "duplicate_interpreter"
    );
    assert_eq!(
        Interpreter::new(PathBuf::from("python3"), None)
            .unwrap_err()
            .code(),
        "path_not_absolute"
    );
}

#[test]
fn a_policy_for_another_user_still_trusts_roots_interpreters() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let script = script_for("/bin/sh");
    let path = sandbox.write("mine", &script, 0o755);
    std::os::unix::fs::chown(&path, Some(NOBODY), None).unwrap();
    let verified = open_verified_script(
        &path,
        Sha256::of(&script),
        &FilePolicy::owned_by(NOBODY),
        &Interpreters::NONE,
    )
    .unwrap();
    assert_eq!(verified.interpreters(), [real("/bin/sh")]);
}
