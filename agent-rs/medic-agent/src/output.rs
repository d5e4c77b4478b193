//! Turning a script's output into `OutputChunk`s: at most 16 KiB each, one sequence across
//! both streams, and a cap per execution.
//!
//! The cap is counted in bytes of both streams together. The chunk that reaches it carries the
//! bytes up to the cap and `truncated`; nothing follows. When output ends exactly at the cap,
//! nothing was lost, so no chunk says `truncated` unless more output arrives later (then an
//! empty chunk does). Past the cap the script's pipes are still drained, so it never blocks on
//! a full pipe.

use crate::proto::{OutputChunk, OutputStream};

/// The largest `data` of one chunk.
pub const MAX_CHUNK: usize = 16 * 1024;

/// Numbers the chunks of one execution and applies its output cap.
#[derive(Debug, Clone)]
pub struct Chunker {
    execution_id: String,
    cap: u64,
    sent_bytes: u64,
    chunks: u64,
    truncated: bool,
}

impl Chunker {
    /// For `execution_id`, sending at most `cap` bytes.
    pub fn new(execution_id: &str, cap: u64) -> Self {
        Self {
            execution_id: execution_id.to_owned(),
            cap,
            sent_bytes: 0,
            chunks: 0,
            truncated: false,
        }
    }

    /// The chunk for `data` just read from `stream`, or `None` once the cap was reached. The
    /// caller reads at most [`MAX_CHUNK`] bytes at a time, so one read is one chunk.
    pub fn chunk(&mut self, stream: OutputStream, data: &[u8]) -> Option<OutputChunk> {
        if self.truncated || data.is_empty() {
            return None;
        }
        let room = self.cap - self.sent_bytes;
        let (data, truncated) = match u64::try_from(data.len()) {
            Ok(len) if len <= room => (data, false),
            _ => (&data[..usize::try_from(room).unwrap_or(0)], true),
        };
        let chunk = OutputChunk {
            execution_id: self.execution_id.clone(),
            stream: stream.into(),
            sequence: self.chunks,
            data: data.to_vec(),
            truncated,
        };
        self.chunks += 1;
        self.sent_bytes += data.len() as u64;
        self.truncated = truncated;
        Some(chunk)
    }

    /// How many chunks were made (sequences `0 .. chunks`).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Whether the cap dropped some output.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: OutputStream = OutputStream::Stdout;
    const ERR: OutputStream = OutputStream::Stderr;

    #[test]
    fn sequences_run_across_both_streams_without_gaps() {
        let mut chunker = Chunker::new("e", 1024);
        let chunks: Vec<OutputChunk> = [(OUT, "a"), (ERR, "b"), (OUT, "c")]
            .into_iter()
            .filter_map(|(stream, data)| chunker.chunk(stream, data.as_bytes()))
            .collect();
        let seen: Vec<(u64, i32, &[u8])> = chunks
            .iter()
            .map(|c| (c.sequence, c.stream, c.data.as_slice()))
            .collect();
        assert_eq!(
            seen,
            [
                (0, OUT as i32, &b"a"[..]),
                (1, ERR as i32, &b"b"[..]),
                (2, OUT as i32, &b"c"[..])
            ]
        );
        assert!(chunks.iter().all(|c| c.execution_id == "e" && !c.truncated));
        assert_eq!(chunker.chunks(), 3);
        assert!(!chunker.truncated());
    }

    #[test]
    fn the_chunk_that_reaches_the_cap_is_cut_and_marked_and_nothing_follows() {
        let mut chunker = Chunker::new("e", 10);
        assert_eq!(chunker.chunk(OUT, b"123456").unwrap().data, b"123456");
        let last = chunker.chunk(ERR, b"abcdefgh").unwrap();
        assert_eq!(last.data, b"abcd");
        assert!(last.truncated);
        assert_eq!(last.sequence, 1);
        assert!(chunker.chunk(OUT, b"more").is_none());
        assert_eq!(chunker.chunks(), 2);
        assert!(chunker.truncated());
    }

    #[test]
    fn output_ending_exactly_at_the_cap_is_not_truncated_until_more_arrives() {
        let mut chunker = Chunker::new("e", 4);
        assert!(!chunker.chunk(OUT, b"1234").unwrap().truncated);
        assert!(!chunker.truncated());
        let marker = chunker.chunk(OUT, b"5").unwrap();
        assert!(marker.truncated && marker.data.is_empty());
        assert!(chunker.truncated());
    }

    #[test]
    fn a_zero_cap_sends_one_empty_truncated_chunk() {
        let mut chunker = Chunker::new("e", 0);
        let chunk = chunker.chunk(OUT, b"x").unwrap();
        assert!(chunk.truncated && chunk.data.is_empty());
        assert!(chunker.chunk(OUT, b"y").is_none());
    }
}
