//! Opening and verifying real files: ownership, modes, directories, symbolic links, hashes, and
//! running what was verified (the sandbox and helpers are `support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::{self, Permissions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use medic_allowlist::{
    Allowlist, FilePolicy, Interpreters, LoadError, Reason, Request, Sha256, open_trusted_file,
    open_verified_script,
};
use support::{
    NOBODY, SCRIPT, Sandbox, inherit_fd, policy, refusal, require_root, run, system_binary, verify,
};

// ---- what passes ------------------------------------------------------------------------------

#[test]
fn a_trusted_script_with_the_listed_hash_is_verified_and_held_open() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("ok.sh", SCRIPT, 0o755);
    let verified = verify(&sandbox, &path, SCRIPT).unwrap();
    assert_eq!(verified.path(), path);
    assert_eq!(verified.sha256(), Sha256::of(SCRIPT));
    let fd = verified.file().as_raw_fd();
    assert_eq!(
        verified.exec_path(),
        PathBuf::from(format!("/proc/self/fd/{fd}"))
    );
    // The path of the descriptor names the very file that was verified.
    assert_eq!(fs::read(verified.exec_path()).unwrap(), SCRIPT);
}

#[test]
fn read_only_and_owner_only_modes_are_fine() {
    let sandbox = Sandbox::new();
    for (name, mode) in [("a", 0o500), ("b", 0o700), ("c", 0o555), ("d", 0o1755)] {
        let path = sandbox.write(name, SCRIPT, mode);
        assert!(verify(&sandbox, &path, SCRIPT).is_ok(), "mode {mode:o}");
    }
}

#[test]
fn setuid_or_setgid_scripts_are_refused() {
    let sandbox = Sandbox::new();
    for (name, mode) in [
        ("u", 0o4755),
        ("g", 0o2755),
        ("both", 0o6555),
        ("x", 0o4711),
    ] {
        let path = sandbox.write(name, SCRIPT, mode);
        let refused = verify(&sandbox, &path, SCRIPT).unwrap_err();
        assert_eq!(refused.reason(), Reason::Setuid, "mode {mode:o}");
        assert!(
            refused.detail().contains("setuid or setgid"),
            "{}",
            refused.detail()
        );
    }
}

// ---- the descriptor is what runs --------------------------------------------------------------

#[test]
fn a_binary_swapped_after_verification_is_not_what_runs() {
    let sandbox = Sandbox::new();
    let echo = fs::read(system_binary("echo")).unwrap();
    let path = sandbox.write("tool", &echo, 0o755);
    let verified = verify(&sandbox, &path, &echo).unwrap();

    // An attacker (or an upgrade) renames another program over the path after the check.
    let impostor = sandbox.write("impostor", b"#!/bin/sh\necho swapped\n", 0o755);
    fs::rename(&impostor, &path).unwrap();

    let output = run(Command::new(verified.exec_path()).arg("original"));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"original\n");
}

#[test]
fn a_shell_script_runs_from_the_inherited_descriptor_even_after_a_swap() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("script.sh", SCRIPT, 0o755);
    let allowlist = Allowlist::from_toml(&format!(
        "version = 1\n[[script]]\nname = \"greet\"\npath = \"{}\"\nsha256 = \"{}\"\ntimeout = 5\n\
         args = [{{ one_of = [\"hello\"] }}]\nenv = [\"GREETING\"]\n",
        path.display(),
        Sha256::of(SCRIPT)
    ))
    .unwrap();
    let request = Request {
        script: "greet".into(),
        args: vec!["hello".into()],
        env: [("GREETING".to_owned(), "hi".to_owned())].into(),
        ..Request::default()
    };
    let verified = allowlist.verify(&request, &policy(&sandbox)).unwrap();
    assert_eq!(verified.timeout(), Duration::from_secs(5));
    assert_eq!(verified.script().name(), "greet");
    assert_eq!(
        verified.env().get("GREETING").map(String::as_str),
        Some("hi")
    );

    fs::rename(
        sandbox.write("evil.sh", b"#!/bin/sh\necho evil\n", 0o755),
        &path,
    )
    .unwrap();

    let fd = verified.file().file().as_raw_fd();
    let mut command = Command::new(verified.exec_path());
    command
        .args(verified.args())
        .env_clear()
        .envs(verified.env());
    let output = run(inherit_fd(&mut command, fd));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"verified hello\n");
}

// ---- what is refused --------------------------------------------------------------------------

#[test]
fn a_file_whose_content_differs_from_the_listed_hash_is_refused() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("x.sh", SCRIPT, 0o755);
    let refused = verify(&sandbox, &path, b"other").unwrap_err();
    assert_eq!(refused.reason(), Reason::HashMismatch);
    assert!(refused.detail().contains(&Sha256::of(SCRIPT).to_string()));
}

#[test]
fn a_file_changed_in_place_after_listing_is_refused() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("x.sh", SCRIPT, 0o755);
    let listed = Sha256::of(SCRIPT);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"rm -rf /\n")
        .unwrap();
    assert_eq!(
        refusal(&path, listed, &policy(&sandbox)),
        Reason::HashMismatch
    );
}

#[test]
fn group_or_world_writable_files_are_refused() {
    let sandbox = Sandbox::new();
    for (name, mode) in [("g", 0o775), ("o", 0o757), ("both", 0o777)] {
        let path = sandbox.write(name, SCRIPT, mode);
        assert_eq!(
            refusal(&path, Sha256::of(SCRIPT), &policy(&sandbox)),
            Reason::WritableByOthers,
            "mode {mode:o}"
        );
    }
}

#[test]
fn files_without_an_execute_bit_are_refused() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("x.sh", SCRIPT, 0o644);
    assert_eq!(
        refusal(&path, Sha256::of(SCRIPT), &policy(&sandbox)),
        Reason::NotExecutable
    );
}

#[test]
fn files_not_owned_by_the_trusted_user_are_refused() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let path = sandbox.write("x.sh", SCRIPT, 0o755);
    chown(&path, Some(NOBODY), None).unwrap();
    let refused = open_verified_script(
        &path,
        Sha256::of(SCRIPT),
        &FilePolicy::ROOT,
        &Interpreters::NONE,
    )
    .unwrap_err();
    assert_eq!(refused.reason(), Reason::BadOwner);
    assert!(refused.detail().contains("65534"), "{}", refused.detail());
    // The owner is a parameter: trusting that user accepts the same file.
    assert!(
        open_verified_script(
            &path,
            Sha256::of(SCRIPT),
            &FilePolicy::owned_by(NOBODY),
            &Interpreters::NONE
        )
        .is_ok()
    );
    // A root-owned file is refused when another user is the trusted owner.
    let root_owned = sandbox.write("y.sh", SCRIPT, 0o755);
    assert_eq!(
        refusal(
            &root_owned,
            Sha256::of(SCRIPT),
            &FilePolicy::owned_by(NOBODY)
        ),
        Reason::BadOwner
    );
}

#[test]
fn directories_not_owned_by_root_or_the_trusted_user_are_refused() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let dir = sandbox.subdir("theirs", 0o755);
    let path = sandbox.write("theirs/x.sh", SCRIPT, 0o755);
    chown(&dir, Some(NOBODY), None).unwrap();
    assert_eq!(
        refusal(&path, Sha256::of(SCRIPT), &FilePolicy::ROOT),
        Reason::DirectoryBadOwner
    );
}

#[test]
fn group_or_world_writable_directories_anywhere_above_are_refused() {
    let sandbox = Sandbox::new();
    let upper = sandbox.subdir("upper", 0o755);
    sandbox.subdir("upper/lower", 0o755);
    let path = sandbox.write("upper/lower/x.sh", SCRIPT, 0o755);
    assert!(verify(&sandbox, &path, SCRIPT).is_ok());
    for mode in [0o775, 0o777, 0o757] {
        fs::set_permissions(&upper, Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            refusal(&path, Sha256::of(SCRIPT), &policy(&sandbox)),
            Reason::DirectoryWritableByOthers,
            "mode {mode:o}"
        );
    }
}

#[test]
fn a_root_owned_sticky_directory_above_is_trusted_like_tmp() {
    let sandbox = Sandbox::new();
    require_root(&sandbox);
    let shared = sandbox.subdir("shared", 0o755);
    sandbox.subdir("shared/app", 0o755);
    let path = sandbox.write("shared/app/x.sh", SCRIPT, 0o755);
    // Like /tmp: anyone may add entries, nobody but their owner may rename or remove them.
    fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
    assert!(
        open_verified_script(
            &path,
            Sha256::of(SCRIPT),
            &FilePolicy::ROOT,
            &Interpreters::NONE
        )
        .is_ok()
    );
    // Sticky but not owned by root: its owner could still swap what is inside.
    chown(&shared, Some(NOBODY), None).unwrap();
    assert_eq!(
        refusal(&path, Sha256::of(SCRIPT), &FilePolicy::ROOT),
        Reason::DirectoryBadOwner
    );
}

#[test]
fn symbolic_links_are_refused_at_the_file_and_above_it() {
    let sandbox = Sandbox::new();
    let real = sandbox.write("real.sh", SCRIPT, 0o755);
    let link = sandbox.path("link.sh");
    symlink(&real, &link).unwrap();
    assert_eq!(
        refusal(&link, Sha256::of(SCRIPT), &policy(&sandbox)),
        Reason::SymlinkInPath
    );

    sandbox.subdir("real-dir", 0o755);
    sandbox.write("real-dir/x.sh", SCRIPT, 0o755);
    symlink(sandbox.path("real-dir"), sandbox.path("dir-link")).unwrap();
    assert_eq!(
        refusal(
            &sandbox.path("dir-link/x.sh"),
            Sha256::of(SCRIPT),
            &policy(&sandbox)
        ),
        Reason::SymlinkInPath
    );
}

#[test]
fn missing_files_and_non_files_are_refused() {
    let sandbox = Sandbox::new();
    let policy = policy(&sandbox);
    let hash = Sha256::of(SCRIPT);
    assert_eq!(
        refusal(&sandbox.path("missing"), hash, &policy),
        Reason::FileNotFound
    );
    let file = sandbox.write("file", SCRIPT, 0o755);
    assert_eq!(
        refusal(&file.join("below"), hash, &policy),
        Reason::FileNotFound
    );
    let dir = sandbox.subdir("dir", 0o755);
    assert_eq!(refusal(&dir, hash, &policy), Reason::NotRegularFile);
    let fifo = sandbox.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    fs::set_permissions(&fifo, Permissions::from_mode(0o755)).unwrap();
    // Opening a FIFO must not block waiting for a writer.
    assert_eq!(refusal(&fifo, hash, &policy), Reason::NotRegularFile);
    assert_eq!(
        refusal(Path::new("/dev/null"), hash, &FilePolicy::ROOT),
        Reason::NotRegularFile
    );
}

#[test]
fn relative_and_unnormalized_paths_are_refused_before_any_lookup() {
    let sandbox = Sandbox::new();
    let policy = policy(&sandbox);
    let hash = Sha256::of(SCRIPT);
    let path = sandbox.write("x.sh", SCRIPT, 0o755);
    assert_eq!(
        refusal(Path::new("x.sh"), hash, &policy),
        Reason::PathNotAbsolute
    );
    let dotted = sandbox
        .dir
        .path()
        .join("..")
        .join(sandbox.dir.path().file_name().unwrap().to_str().unwrap());
    assert_eq!(
        refusal(&dotted.join("x.sh"), hash, &policy),
        Reason::PathNotCanonical
    );
    let doubled = PathBuf::from(path.to_str().unwrap().replacen('/', "//", 2));
    assert_eq!(refusal(&doubled, hash, &policy), Reason::PathNotCanonical);
}

#[test]
fn verify_reports_request_refusals_before_touching_the_file() {
    let sandbox = Sandbox::new();
    let allowlist = Allowlist::from_toml(&format!(
        "version = 1\n[[script]]\nname = \"gone\"\npath = \"{}\"\nsha256 = \"{}\"\ntimeout = 5\n",
        sandbox.path("gone.sh").display(),
        Sha256::of(SCRIPT)
    ))
    .unwrap();
    let mut request = Request {
        script: "gone".into(),
        args: vec!["extra".into()],
        ..Request::default()
    };
    let refused = allowlist.verify(&request, &policy(&sandbox)).unwrap_err();
    assert_eq!(refused.reason(), Reason::TooManyArgs);
    request.args.clear();
    let refused = allowlist.verify(&request, &policy(&sandbox)).unwrap_err();
    assert_eq!(refused.reason(), Reason::FileNotFound);
}

// ---- the allowlist file itself ----------------------------------------------------------------

#[test]
fn the_allowlist_file_loads_only_when_trusted() {
    let sandbox = Sandbox::new();
    let text = format!(
        "version = 1\n[[script]]\nname = \"a\"\npath = \"/opt/a\"\nsha256 = \"{}\"\ntimeout = 5\n",
        Sha256::of(b"a")
    );
    let path = sandbox.write("allowlist.toml", text.as_bytes(), 0o644);
    let allowlist = Allowlist::load(&path, &policy(&sandbox)).unwrap();
    assert_eq!(allowlist.sha256(), Sha256::of(text.as_bytes()));
    assert!(allowlist.get("a").is_some());
    assert!(open_trusted_file(&path, &policy(&sandbox)).is_ok());

    fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
    let error = Allowlist::load(&path, &policy(&sandbox)).unwrap_err();
    assert_eq!(error.code(), "untrusted_file");
    assert!(matches!(
        error,
        LoadError::Untrusted(ref refusal) if refusal.reason() == Reason::WritableByOthers
    ));
}

#[test]
fn an_oversized_or_non_utf8_allowlist_file_is_refused() {
    let sandbox = Sandbox::new();
    let mut big = b"version = 1\n".to_vec();
    big.resize(1024 * 1024 + 1, b'\n');
    let path = sandbox.write("big.toml", &big, 0o644);
    assert_eq!(
        Allowlist::load(&path, &policy(&sandbox))
            .unwrap_err()
            .code(),
        "too_large"
    );
    let path = sandbox.write("latin1.toml", b"version = 1\n# caf\xe9\n", 0o644);
    assert_eq!(
        Allowlist::load(&path, &policy(&sandbox))
            .unwrap_err()
            .code(),
        "invalid_toml"
    );
}
