//! Reading a `#!` line exactly as the Linux kernel does (`fs/binfmt_script.c`).
//!
//! The verifier must check the interpreter the kernel will run, not the one a friendlier
//! parser would guess, so this follows the kernel byte for byte: it looks at the first
//! [`SHEBANG_LEN`] bytes only (NUL-padded when the file is shorter); the line ends at the first
//! newline before any NUL; without a newline, the interpreter's name must be followed by a
//! space, tab or NUL within those bytes (otherwise the kernel refuses a possibly cut-off name,
//! `ENOEXEC`) and the last byte is dropped; trailing spaces and tabs are trimmed; the name runs
//! from the first non-blank byte to the next space, tab or NUL; everything after the blanks
//! that follow it, up to a NUL, is **one** optional argument (spaces included).
//!
//! Pure: bytes in, a [`Shebang`] out. It never panics, whatever the bytes (a property test
//! feeds it arbitrary ones).

/// How many bytes of a file the kernel reads to find its `#!` line (`BINPRM_BUF_SIZE`, 256
/// since Linux 5.1; older kernels read 128, so a line the verifier accepts may be cut there:
/// the interpreter checked is then still a prefix the kernel refuses, never another file).
pub(crate) const SHEBANG_LEN: usize = 256;

/// What the start of a file says about how the kernel runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shebang {
    /// No `#!`: the kernel runs the file as a binary (or refuses it).
    None,
    /// `#!` then an interpreter's path and at most one argument, as the kernel splits them.
    Interpreter {
        /// The interpreter's path, as written (no NUL, space, tab or newline in it).
        path: Vec<u8>,
        /// The single optional argument (no NUL or newline; may hold spaces).
        arg: Option<Vec<u8>>,
    },
    /// `#!` but no interpreter name, or one the kernel would find cut off (`ENOEXEC`).
    Invalid,
}

fn blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn terminator(byte: u8) -> bool {
    blank(byte) || byte == 0
}

/// Parse the `#!` line at the start of `head` (the file's first bytes; only the first
/// [`SHEBANG_LEN`] count).
pub(crate) fn parse(head: &[u8]) -> Shebang {
    let mut buf = [0u8; SHEBANG_LEN];
    let len = head.len().min(SHEBANG_LEN);
    buf[..len].copy_from_slice(&head[..len]);
    if buf[0] != b'#' || buf[1] != b'!' {
        return Shebang::None;
    }
    // The kernel's strnchr stops at the first NUL: a newline after one does not count.
    let newline = buf
        .iter()
        .take_while(|&&byte| byte != 0)
        .position(|&byte| byte == b'\n');
    let end = match newline {
        Some(end) => end,
        None => {
            let Some(start) = (2..SHEBANG_LEN).find(|&at| !blank(buf[at])) else {
                return Shebang::Invalid;
            };
            if !buf[start..].iter().any(|&byte| terminator(byte)) {
                return Shebang::Invalid; // the name may be cut off
            }
            SHEBANG_LEN - 1
        }
    };
    let mut line = &buf[2..end.max(2)];
    while let [rest @ .., last] = line
        && blank(*last)
    {
        line = rest;
    }
    let Some(start) = line.iter().position(|&byte| !blank(byte)) else {
        return Shebang::Invalid;
    };
    let rest = &line[start..];
    let name_len = rest
        .iter()
        .position(|&byte| terminator(byte))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return Shebang::Invalid; // a NUL where the name should start: the kernel execs ""
    }
    let path = rest[..name_len].to_vec();
    let after = &rest[name_len..];
    let arg = match after.first() {
        Some(&separator) if separator != 0 => after
            .iter()
            .position(|&byte| !blank(byte))
            .map(|at| &after[at..])
            .map(|arg| arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())].to_vec()),
        _ => None,
    };
    Shebang::Interpreter { path, arg }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn interpreter(path: &str, arg: Option<&str>) -> Shebang {
        Shebang::Interpreter {
            path: path.as_bytes().to_vec(),
            arg: arg.map(|arg| arg.as_bytes().to_vec()),
        }
    }

    #[test]
    fn files_without_the_two_bytes_are_not_scripts() {
        for head in [
            &b""[..],
            b"#",
            b"\x7fELF\x02",
            b" #!/bin/sh\n",
            b"!#/bin/sh\n",
        ] {
            assert_eq!(parse(head), Shebang::None, "{head:?}");
        }
    }

    #[test]
    fn the_interpreter_and_one_argument_are_split_as_the_kernel_does() {
        assert_eq!(parse(b"#!/bin/sh\necho"), interpreter("/bin/sh", None));
        assert_eq!(
            parse(b"#! /bin/sh -e \n"),
            interpreter("/bin/sh", Some("-e"))
        );
        assert_eq!(
            parse(b"#!/usr/bin/env -S python3 -u\n"),
            interpreter("/usr/bin/env", Some("-S python3 -u"))
        );
        assert_eq!(
            parse(b"#!\t/bin/sh\t\t-x\n"),
            interpreter("/bin/sh", Some("-x"))
        );
        assert_eq!(parse(b"#!sh\n"), interpreter("sh", None));
        // A carriage return is part of the name (the kernel then finds no such file).
        assert_eq!(parse(b"#!/bin/sh\r\n"), interpreter("/bin/sh\r", None));
        // A file shorter than the buffer: the NUL padding ends the name.
        assert_eq!(parse(b"#!/bin/sh"), interpreter("/bin/sh", None));
        // A NUL ends the argument; a newline after a NUL is not the end of the line.
        assert_eq!(
            parse(b"#!/bin/sh -e\0x\n"),
            interpreter("/bin/sh", Some("-e"))
        );
    }

    #[test]
    fn lines_without_a_usable_name_are_invalid() {
        for head in [&b"#!\n"[..], b"#!   \t\n", b"#!", b"#!\0/bin/sh\n"] {
            assert_eq!(parse(head), Shebang::Invalid, "{head:?}");
        }
        // A name that fills the whole buffer may be cut off: the kernel refuses it.
        let long = [b"#!/".as_slice(), &[b'a'; 300]].concat();
        assert_eq!(parse(&long), Shebang::Invalid);
    }

    #[test]
    fn a_long_line_keeps_a_complete_name_and_cuts_the_argument_at_255_bytes() {
        let line = [b"#!/bin/sh ".as_slice(), &[b'x'; 300]].concat();
        let Shebang::Interpreter { path, arg } = parse(&line) else {
            panic!("not an interpreter");
        };
        assert_eq!(path, b"/bin/sh");
        assert_eq!(arg.map(|arg| arg.len()), Some(SHEBANG_LEN - 1 - 10));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_give_a_blank_name(
            head in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            if let Shebang::Interpreter { path, arg } = parse(&head) {
                prop_assert!(!path.is_empty());
                prop_assert!(!path.iter().any(|&b| terminator(b) || b == b'\n'));
                if let Some(arg) = arg {
                    prop_assert!(!arg.is_empty() && !blank(arg[0]));
                    prop_assert!(!arg.iter().any(|&b| b == 0 || b == b'\n'));
                }
            }
        }

        #[test]
        fn a_written_line_reads_back(
            path in "/[a-z0-9/._-]{1,60}",
            arg in prop::option::of("[a-zA-Z0-9=-][ a-zA-Z0-9=-]{0,40}[a-zA-Z0-9=-]"),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut head = format!("#!{path}").into_bytes();
            if let Some(arg) = &arg {
                head.extend_from_slice(format!(" {arg}").as_bytes());
            }
            head.push(b'\n');
            head.extend_from_slice(&body);
            prop_assert_eq!(parse(&head), interpreter(&path, arg.as_deref()));
        }
    }
}
