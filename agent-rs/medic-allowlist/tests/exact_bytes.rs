//! What is executed is exactly what was hashed: the script's bytes are copied into a sealed
//! memfd while they are hashed, so rewriting the file in place — as its owner's `cp` would —
//! during or after the verification never changes what runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use medic_allowlist::{
    Interpreters, MAX_SCRIPT_LEN, Reason, Sha256, VerifiedScript, open_verified_script,
};
use support::{Sandbox, inherit_fd, policy, run, verify};

/// Two scripts of the same length: the listed one, and what the owner writes over it.
const GOOD: &[u8] = b"#!/bin/sh\necho good-content-of-the-script\n";
const BAD: &[u8] = b"#!/bin/sh\necho BAD!-content-of-the-script\n";

fn copy_bytes(verified: &VerifiedScript) -> Vec<u8> {
    // Read the copy itself (its descriptor), from the start.
    let mut bytes = Vec::new();
    let mut file = verified.file();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn in_place_rewrites_racing_the_verification_never_change_the_verified_bytes() {
    assert_eq!(GOOD.len(), BAD.len());
    let sandbox = Sandbox::new();
    let path = sandbox.write("raced.sh", GOOD, 0o755);
    let listed = Sha256::of(GOOD);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            // Open and write without truncating, as `cp` over an existing file does; each
            // rewrite goes in two halves so torn mixtures exist too.
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let half = GOOD.len() / 2;
            let mut rewrites = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for content in [BAD, GOOD] {
                    file.write_all_at(&content[..half], 0).unwrap();
                    file.write_all_at(&content[half..], half as u64).unwrap();
                }
                rewrites += 1;
            }
            rewrites
        })
    };
    let (mut verified, mut refused) = (Vec::new(), 0);
    for _ in 0..500 {
        match open_verified_script(&path, listed, &policy(&sandbox), &Interpreters::NONE) {
            Ok(script) => verified.push(script),
            Err(refusal) => {
                assert_eq!(refusal.reason(), Reason::HashMismatch, "{refusal}");
                refused += 1;
            }
        }
    }
    // Keep rewriting while the copies are read back: what a copy holds must not follow.
    for script in &verified {
        assert_eq!(script.sha256(), listed);
        assert_eq!(Sha256::of(&copy_bytes(script)), listed);
        assert_eq!(copy_bytes(script), GOOD);
    }
    stop.store(true, Ordering::Relaxed);
    let rewrites = writer.join().unwrap();
    eprintln!(
        "{} verified, {refused} refused (hash_mismatch), {rewrites} rewrites meanwhile",
        verified.len()
    );
}

#[test]
fn a_rewrite_after_the_verification_does_not_change_what_runs() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("script.sh", GOOD, 0o755);
    let verified = verify(&sandbox, &path, GOOD).unwrap();
    // The owner rewrites the very file (same inode, same length) before it is executed.
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(BAD).unwrap();
    drop(file);
    assert_eq!(fs::read(&path).unwrap(), BAD);

    let fd = verified.file().as_raw_fd();
    let output = run(inherit_fd(&mut Command::new(verified.exec_path()), fd));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"good-content-of-the-script\n");
}

#[test]
fn the_copy_is_sealed_and_read_only() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("script.sh", GOOD, 0o755);
    let verified = verify(&sandbox, &path, GOOD).unwrap();
    // Its own descriptor is read-only, and a read-write re-open cannot write either (sealed).
    let mut own = verified.file();
    assert!(own.write_all(b"x").is_err());
    let mut reopened = OpenOptions::new()
        .write(true)
        .open(verified.exec_path())
        .unwrap();
    assert!(reopened.write_all(b"#!/tmp/evil\n").is_err());
    assert_eq!(copy_bytes(&verified), GOOD);
    // Not the listed file: another inode (a memfd).
    let listed = fs::metadata(&path).unwrap();
    let copy = verified.file().metadata().unwrap();
    assert_ne!(
        std::os::unix::fs::MetadataExt::ino(&copy),
        std::os::unix::fs::MetadataExt::ino(&listed)
    );
}

#[test]
fn scripts_larger_than_the_copy_limit_are_refused() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("big", b"#!/bin/sh\n", 0o755);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    // Sparse: no disk used.
    file.set_len(MAX_SCRIPT_LEN + 1).unwrap();
    let refused = verify(&sandbox, &path, b"anything").unwrap_err();
    assert_eq!(refused.reason(), Reason::ScriptTooLarge);
    assert!(
        refused.detail().contains("33554432"),
        "{}",
        refused.detail()
    );
}
