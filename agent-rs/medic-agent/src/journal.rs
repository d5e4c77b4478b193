//! The agent's memory of executions: the latest state of every recent execution id, kept in
//! the state directory so that "never run the same execution twice" survives restarts.
//!
//! # Design
//!
//! The file (`executions.jsonl`) is an append-only journal of JSON lines, one per state change;
//! the latest line of an id wins. Appends are cheap, and a crash can at worst tear the last
//! line, which is ignored on the next start. Two moments must survive a crash, so the file is
//! synced after them: `ACCEPTED`, written *before* the process is spawned (a redelivered
//! request after a crash is then answered instead of run again), and every final state. Other
//! lines (`RUNNING`) are written without a sync.
//!
//! On open, the journal is read back, every execution that was not finished is recorded as
//! `FAILED` (`agent_stopped`: the agent stopped while it ran), old entries are dropped, and the
//! file is rewritten compactly (to a temporary file, synced, then renamed over the old one).
//! It is compacted again whenever the appended lines outnumber the live entries.
//!
//! Retention: an id is kept while it is younger than [`Retention::min_age`] *or* among the
//! newest [`Retention::min_count`], but never more than [`Retention::max_count`] ids — which
//! bounds memory on a host that runs thousands of scripts a day. Unfinished executions are
//! always kept.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::proto::{ExecutionState, ExecutionUpdate};

const FILE: &str = "executions.jsonl";

/// How much the journal remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Ids younger than this are kept.
    pub min_age: Duration,
    /// At least this many of the newest ids are kept, however old.
    pub min_count: usize,
    /// Never more than this many ids.
    pub max_count: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(24 * 3600),
            min_count: 10_000,
            max_count: 100_000,
        }
    }
}

/// Whether a line must be on disk before the caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Sync the file: the state must survive a crash.
    Synced,
    /// Leave it to the kernel.
    Buffered,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    id: String,
    /// Unix time of the change, in seconds.
    at: u64,
    state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    output_chunks: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    output_truncated: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    duration_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    containment: String,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Line {
    fn of(update: &ExecutionUpdate, at: u64) -> Self {
        Self {
            id: update.execution_id.clone(),
            at,
            state: update.state().as_str_name().to_owned(),
            reason: update.reason.clone(),
            detail: update.detail.clone(),
            exit_code: update.exit_code,
            signal: update.signal,
            output_chunks: update.output_chunks,
            output_truncated: update.output_truncated,
            duration_ms: update.duration_ms,
            containment: update.containment.clone(),
        }
    }

    fn into_entry(self) -> Option<(String, Entry)> {
        let state = ExecutionState::from_str_name(&self.state)?;
        let update = ExecutionUpdate {
            execution_id: self.id.clone(),
            state: state.into(),
            reason: self.reason,
            detail: self.detail,
            exit_code: self.exit_code,
            signal: self.signal,
            output_chunks: self.output_chunks,
            output_truncated: self.output_truncated,
            duration_ms: self.duration_ms,
            containment: self.containment,
        };
        Some((
            self.id,
            Entry {
                at: self.at,
                update,
            },
        ))
    }
}

#[derive(Debug, Clone)]
struct Entry {
    at: u64,
    update: ExecutionUpdate,
}

/// Whether an execution state is final (nothing follows it).
pub fn is_final(state: ExecutionState) -> bool {
    !matches!(
        state,
        ExecutionState::Accepted | ExecutionState::Running | ExecutionState::Unspecified
    )
}

/// The latest state of every remembered execution, persisted.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: HashMap<String, Entry>,
    retention: Retention,
    appended: usize,
}

/// What [`Journal::open`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Executions that were running when the agent stopped; now `FAILED` (`agent_stopped`).
    pub interrupted: Vec<String>,
    /// Lines that could not be read (a torn last line after a crash, or damage).
    pub unreadable_lines: usize,
}

impl Journal {
    /// Read the journal in `state_dir` (creating it if needed), fail what was interrupted,
    /// and compact it.
    pub fn open(state_dir: &Path, retention: Retention, now: u64) -> io::Result<(Self, Recovery)> {
        let path = state_dir.join(FILE);
        let mut entries = HashMap::new();
        let mut recovery = Recovery::default();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Line>(&line)
                        .ok()
                        .and_then(Line::into_entry)
                    {
                        Some((id, entry)) => {
                            entries.insert(id, entry);
                        }
                        None => recovery.unreadable_lines += 1,
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        for (id, entry) in &mut entries {
            if !is_final(entry.update.state()) {
                recovery.interrupted.push(id.clone());
                entry.update = ExecutionUpdate {
                    execution_id: id.clone(),
                    state: ExecutionState::Failed.into(),
                    reason: "agent_stopped".into(),
                    detail: "the agent stopped while the script ran".into(),
                    ..ExecutionUpdate::default()
                };
                entry.at = now;
            }
        }
        recovery.interrupted.sort();
        let file = append_handle(&path)?;
        let mut journal = Self {
            path,
            file,
            entries,
            retention,
            appended: 0,
        };
        journal.compact(now)?;
        Ok((journal, recovery))
    }

    /// The latest update of `id`, if it is remembered.
    pub fn get(&self, id: &str) -> Option<&ExecutionUpdate> {
        self.entries.get(id).map(|entry| &entry.update)
    }

    /// How many executions are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The latest update of every remembered execution, oldest first.
    pub fn latest(&self) -> Vec<ExecutionUpdate> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by(|a, b| (a.at, &a.update.execution_id).cmp(&(b.at, &b.update.execution_id)));
        entries
            .into_iter()
            .map(|entry| entry.update.clone())
            .collect()
    }

    /// Remember `update` as the latest state of its execution.
    pub fn record(
        &mut self,
        update: &ExecutionUpdate,
        durability: Durability,
        now: u64,
    ) -> io::Result<()> {
        let mut line = serde_json::to_vec(&Line::of(update, now)).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        if durability == Durability::Synced {
            self.file.sync_data()?;
        }
        self.entries.insert(
            update.execution_id.clone(),
            Entry {
                at: now,
                update: update.clone(),
            },
        );
        self.appended += 1;
        if self.appended > self.entries.len().max(self.retention.min_count) {
            self.compact(now)?;
        }
        Ok(())
    }

    /// Forget what retention allows, and rewrite the file with one line per remembered id.
    fn compact(&mut self, now: u64) -> io::Result<()> {
        self.prune(now);
        let temporary = self.path.with_extension("jsonl.tmp");
        let mut out = io::BufWriter::new(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?,
        );
        for update in self.latest() {
            let at = self.entries.get(&update.execution_id).map_or(now, |e| e.at);
            serde_json::to_writer(&mut out, &Line::of(&update, at)).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        if let Some(parent) = self.path.parent() {
            File::open(parent)?.sync_all()?;
        }
        self.file = append_handle(&self.path)?;
        self.appended = 0;
        Ok(())
    }

    fn prune(&mut self, now: u64) {
        if self.entries.len() <= self.retention.min_count {
            return;
        }
        let mut by_age: Vec<(u64, String, bool)> = self
            .entries
            .iter()
            .map(|(id, entry)| (entry.at, id.clone(), is_final(entry.update.state())))
            .collect();
        by_age.sort_by(|a, b| b.cmp(a));
        let min_age = self.retention.min_age.as_secs();
        let mut kept = 0;
        for (at, id, finished) in by_age {
            let young = now.saturating_sub(at) < min_age;
            let keep = !finished
                || kept < self.retention.min_count
                || (young && kept < self.retention.max_count);
            if keep {
                kept += 1;
            } else {
                self.entries.remove(&id);
            }
        }
    }
}

fn append_handle(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn update(id: &str, state: ExecutionState) -> ExecutionUpdate {
        ExecutionUpdate {
            execution_id: id.into(),
            state: state.into(),
            ..ExecutionUpdate::default()
        }
    }

    fn open(dir: &Path) -> (Journal, Recovery) {
        Journal::open(dir, Retention::default(), NOW).unwrap()
    }

    #[test]
    fn the_latest_state_of_an_id_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, recovery) = open(dir.path());
        assert_eq!(recovery, Recovery::default());
        journal
            .record(
                &update("a", ExecutionState::Accepted),
                Durability::Synced,
                NOW,
            )
            .unwrap();
        let mut done = update("a", ExecutionState::Succeeded);
        done.exit_code = Some(0);
        done.output_chunks = 3;
        done.duration_ms = 12;
        journal.record(&done, Durability::Synced, NOW).unwrap();
        journal
            .record(
                &update("b", ExecutionState::Rejected),
                Durability::Synced,
                NOW,
            )
            .unwrap();
        drop(journal);

        let (journal, recovery) = open(dir.path());
        assert!(recovery.interrupted.is_empty());
        assert_eq!(journal.get("a"), Some(&done));
        assert_eq!(journal.get("b").unwrap().state(), ExecutionState::Rejected);
        assert_eq!(journal.len(), 2);
    }

    #[test]
    fn an_execution_running_when_the_agent_died_is_failed_agent_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path());
        journal
            .record(
                &update("r", ExecutionState::Accepted),
                Durability::Synced,
                NOW,
            )
            .unwrap();
        journal
            .record(
                &update("r", ExecutionState::Running),
                Durability::Buffered,
                NOW,
            )
            .unwrap();
        journal
            .record(
                &update("s", ExecutionState::Accepted),
                Durability::Synced,
                NOW,
            )
            .unwrap();
        drop(journal);

        let (journal, recovery) = open(dir.path());
        assert_eq!(recovery.interrupted, vec!["r".to_owned(), "s".to_owned()]);
        for id in ["r", "s"] {
            let latest = journal.get(id).unwrap();
            assert_eq!(latest.state(), ExecutionState::Failed);
            assert_eq!(latest.reason, "agent_stopped");
        }
        drop(journal);
        // Recorded as failed by the first restart: a second one has nothing to recover.
        assert!(open(dir.path()).1.interrupted.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path());
        journal
            .record(
                &update("a", ExecutionState::Cancelled),
                Durability::Synced,
                NOW,
            )
            .unwrap();
        drop(journal);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        file.write_all(b"{\"id\":\"b\",\"at\":1,\"sta").unwrap();
        drop(file);

        let (journal, recovery) = open(dir.path());
        assert_eq!(recovery.unreadable_lines, 1);
        assert_eq!(journal.len(), 1);
        assert!(journal.get("b").is_none());
    }

    #[test]
    fn retention_keeps_young_ids_and_the_newest_ones_and_bounds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            min_age: Duration::from_secs(100),
            min_count: 3,
            max_count: 5,
        };
        let (mut journal, _) = Journal::open(dir.path(), retention, NOW).unwrap();
        // Four old ids (one still running), then six young ones.
        for (index, id) in ["o1", "o2", "o3"].iter().enumerate() {
            journal
                .record(
                    &update(id, ExecutionState::Succeeded),
                    Durability::Buffered,
                    NOW - 1000 + index as u64,
                )
                .unwrap();
        }
        journal
            .record(
                &update("old-running", ExecutionState::Running),
                Durability::Buffered,
                NOW - 999,
            )
            .unwrap();
        for index in 0..6 {
            journal
                .record(
                    &update(&format!("y{index}"), ExecutionState::Succeeded),
                    Durability::Buffered,
                    NOW - 10 + index,
                )
                .unwrap();
        }
        journal.compact(NOW).unwrap();
        let mut kept: Vec<String> = journal
            .latest()
            .into_iter()
            .map(|update| update.execution_id)
            .collect();
        kept.sort();
        // The newest three whatever their age, further young ones up to five in all, the
        // unfinished one always; the oldest young one and the old finished ones go.
        assert_eq!(kept, ["old-running", "y1", "y2", "y3", "y4", "y5"]);
    }

    #[test]
    fn the_file_is_compacted_when_appends_outnumber_entries() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            min_age: Duration::from_secs(100),
            min_count: 2,
            max_count: 10,
        };
        let (mut journal, _) = Journal::open(dir.path(), retention, NOW).unwrap();
        for _ in 0..50 {
            journal
                .record(
                    &update("a", ExecutionState::Running),
                    Durability::Buffered,
                    NOW,
                )
                .unwrap();
        }
        let lines = fs::read_to_string(dir.path().join(FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 3, "{lines} lines");
    }

    #[test]
    fn replay_lists_the_latest_update_of_every_id_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = open(dir.path());
        journal
            .record(
                &update("late", ExecutionState::Running),
                Durability::Buffered,
                NOW + 5,
            )
            .unwrap();
        journal
            .record(
                &update("early", ExecutionState::Running),
                Durability::Buffered,
                NOW,
            )
            .unwrap();
        journal
            .record(
                &update("early", ExecutionState::Failed),
                Durability::Synced,
                NOW + 1,
            )
            .unwrap();
        let replay: Vec<(String, ExecutionState)> = journal
            .latest()
            .into_iter()
            .map(|update| (update.execution_id.clone(), update.state()))
            .collect();
        assert_eq!(
            replay,
            [
                ("early".to_owned(), ExecutionState::Failed),
                ("late".to_owned(), ExecutionState::Running)
            ]
        );
    }
}
