//! The local kill switch: an operator on the host can stop every execution without touching
//! the server.
//!
//! Two switches, either one pauses: `executions_paused` in the configuration, and the existence
//! of the kill switch file (default `/etc/medic/agent.paused`), whose first line, if any, is the
//! reason. The file is the quick one (`echo "disk migration" > /etc/medic/agent.paused`); it is
//! looked at before every execution and every few seconds, and the server hears of every
//! change through a new `Hello`. While paused, the agent stays connected and refuses each
//! `Execute` with `paused`.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const MAX_REASON_LEN: usize = 256;

/// Whether executions are paused, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pause {
    /// Executions are refused.
    pub paused: bool,
    /// Why, as the operator wrote it (empty when not paused).
    pub reason: String,
}

/// The kill switch as it stands now.
pub fn current(config_paused: bool, config_reason: &str, file: Option<&Path>) -> Pause {
    if let Some(path) = file
        && let Some(reason) = file_reason(path)
    {
        return Pause {
            paused: true,
            reason,
        };
    }
    if config_paused {
        let reason = first_line(config_reason);
        return Pause {
            paused: true,
            reason: if reason.is_empty() {
                "executions_paused is set in the agent's configuration".into()
            } else {
                reason
            },
        };
    }
    Pause::default()
}

/// `Some(reason)` when the file exists.
fn file_reason(path: &Path) -> Option<String> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    let fallback = || format!("the kill switch file {} exists", path.display());
    if !metadata.is_file() {
        return Some(fallback());
    }
    // Non-blocking, so that a FIFO swapped in after the check cannot hang the agent.
    let mut text = Vec::new();
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .and_then(|file| file.take(4096).read_to_end(&mut text));
    let reason = match read {
        Ok(_) => first_line(&String::from_utf8_lossy(&text)),
        Err(_) => String::new(),
    };
    Some(if reason.is_empty() {
        fallback()
    } else {
        reason
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut end = line.len().min(MAX_REASON_LEN);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_means_not_paused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.paused");
        assert_eq!(current(false, "", Some(&file)), Pause::default());
        assert_eq!(current(false, "ignored", None), Pause::default());
    }

    #[test]
    fn the_file_pauses_with_its_first_line_as_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.paused");
        std::fs::write(&file, "  disk migration \nsecond line\n").unwrap();
        assert_eq!(
            current(false, "", Some(&file)),
            Pause {
                paused: true,
                reason: "disk migration".into()
            }
        );
        std::fs::write(&file, "").unwrap();
        let pause = current(false, "", Some(&file));
        assert!(pause.paused);
        assert!(pause.reason.contains("agent.paused exists"), "{pause:?}");
        std::fs::remove_file(&file).unwrap();
        assert!(!current(false, "", Some(&file)).paused);
    }

    #[test]
    fn anything_at_the_path_pauses_even_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.paused");
        std::fs::create_dir(&file).unwrap();
        assert!(current(false, "", Some(&file)).paused);
    }

    #[test]
    fn the_configuration_flag_pauses_with_its_reason_or_a_default_one() {
        assert_eq!(
            current(true, "change freeze", None),
            Pause {
                paused: true,
                reason: "change freeze".into()
            }
        );
        assert!(current(true, "", None).reason.contains("executions_paused"));
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let reason = first_line(&"é".repeat(300));
        assert!(reason.len() <= MAX_REASON_LEN);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
