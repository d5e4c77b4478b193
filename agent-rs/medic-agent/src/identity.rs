//! Who this agent is: its stable id (kept in the state directory) and the host's name.
//!
//! The id is generated once, as a random (version 4) UUID, and written atomically, so the
//! server sees the same agent across restarts and reconnects. A corrupt id file is an error,
//! not a reason to become a new agent silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

const ID_FILE: &str = "agent-id";

/// Create the state directory (mode 0700) if it does not exist yet.
pub fn ensure_state_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The agent's id from `state_dir`, generated and stored on first use.
pub fn agent_id(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if is_uuid(id) {
                Ok(id.to_owned())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a lower-case UUID", path.display()),
                ))
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let id = new_uuid()?;
            write_atomically(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(error) => Err(error),
    }
}

/// A random version-4 UUID, lower-case.
pub fn new_uuid() -> io::Result<String> {
    let mut bytes = random_bytes::<16>()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Whether `text` is a lower-case hyphenated UUID.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// Bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0; N];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The host's name as the kernel reports it.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Replace `path` with `content` so that a crash leaves either the old or the new file.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_generated_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = agent_id(dir.path()).unwrap();
        assert!(is_uuid(&first), "{first}");
        assert_eq!(&first[14..15], "4");
        assert_eq!(agent_id(dir.path()).unwrap(), first);
        assert_ne!(new_uuid().unwrap(), first);
    }

    #[test]
    fn a_corrupt_id_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ID_FILE), "not-a-uuid\n").unwrap();
        assert!(agent_id(dir.path()).is_err());
    }

    #[test]
    fn uuids_are_recognised_strictly() {
        assert!(is_uuid("0b0e3c9a-6a1f-4c52-8d7e-1f2a3b4c5d6e"));
        assert!(!is_uuid("0B0E3C9A-6A1F-4C52-8D7E-1F2A3B4C5D6E"));
        assert!(!is_uuid("0b0e3c9a6a1f4c528d7e1f2a3b4c5d6e"));
        assert!(!is_uuid(""));
    }
}
