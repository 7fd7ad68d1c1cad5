//! A process's output streams: bounded buffers written by the guest's thread and
//! read by offset over RPC.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::exec::{OutputSink, OutputStream};

/// Largest chunk one read returns, whatever the caller asks for: one RPC
/// message stays small.
pub const READ_BYTES_MAX: usize = 64 * 1024;

/// What one read of a stream returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes from `max(offset, oldest kept)` on.
    pub data: Vec<u8>,
    /// The offset to read from next.
    pub next_offset: u64,
    /// Bytes between the asked offset and the oldest byte still kept: dropped
    /// before this reader got to them.
    pub skipped: u64,
    /// The process has ended and everything up to `next_offset` is all there is.
    pub eof: bool,
}

/// One stream: the newest `max` bytes written, addressed by their offset since
/// the process began. The writer never waits: when full, the oldest bytes are
/// dropped, because a writer blocked on a slow (or absent) reader would hold a
/// running process, and its thread, hostage.
#[derive(Debug)]
struct StreamBuf {
    kept: VecDeque<u8>,
    /// Offset of `kept[0]`: bytes dropped so far.
    start: u64,
    max: usize,
    closed: bool,
}

impl StreamBuf {
    fn new(max: usize) -> Self {
        StreamBuf {
            kept: VecDeque::new(),
            start: 0,
            max,
            closed: false,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.kept.len() as u64
    }

    fn push(&mut self, bytes: &[u8]) {
        debug_assert!(!self.closed, "output written after the process ended");
        // Only the tail of a write larger than the whole buffer can be kept.
        let tail = &bytes[bytes.len().saturating_sub(self.max)..];
        self.start += (bytes.len() - tail.len()) as u64;
        self.kept.extend(tail);
        let over = self.kept.len().saturating_sub(self.max);
        self.kept.drain(..over);
        self.start += over as u64;
    }

    fn read(&self, offset: u64, max_bytes: usize) -> Chunk {
        let from = offset.max(self.start).min(self.end());
        let skipped = self.start.saturating_sub(offset);
        let at = (from - self.start) as usize;
        let take = max_bytes.min(READ_BYTES_MAX).min(self.kept.len() - at);
        let data: Vec<u8> = self.kept.range(at..at + take).copied().collect();
        let next_offset = from + take as u64;
        Chunk {
            data,
            next_offset,
            skipped,
            eof: self.closed && next_offset == self.end(),
        }
    }
}

/// Both output streams of one process, each keeping at most the same number of bytes.
#[derive(Debug)]
pub struct ProcessOutput {
    stdout: Mutex<StreamBuf>,
    stderr: Mutex<StreamBuf>,
}

impl ProcessOutput {
    /// Streams keeping at most `bytes_max` bytes each.
    pub fn new(bytes_max: usize) -> Self {
        ProcessOutput {
            stdout: Mutex::new(StreamBuf::new(bytes_max)),
            stderr: Mutex::new(StreamBuf::new(bytes_max)),
        }
    }

    fn stream(&self, stream: OutputStream) -> MutexGuard<'_, StreamBuf> {
        let mutex = match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        };
        // Every update is one push or one flag: consistent even after a panic.
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up to `max_bytes` (at most [`READ_BYTES_MAX`]) of `stream` from `offset` on.
    pub fn read(&self, stream: OutputStream, offset: u64, max_bytes: usize) -> Chunk {
        self.stream(stream).read(offset, max_bytes)
    }

    /// Marks both streams ended: readers that caught up now see `eof`.
    pub fn close(&self) {
        self.stream(OutputStream::Stdout).closed = true;
        self.stream(OutputStream::Stderr).closed = true;
    }
}

impl OutputSink for ProcessOutput {
    fn write(&self, stream: OutputStream, bytes: &[u8]) {
        self.stream(stream).push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_offsets_and_see_eof_after_close() {
        let out = ProcessOutput::new(16);
        out.write(OutputStream::Stdout, b"hello ");
        let first = out.read(OutputStream::Stdout, 0, 100);
        assert_eq!(
            (first.data.as_slice(), first.next_offset),
            (&b"hello "[..], 6)
        );
        assert!(!first.eof);
        out.write(OutputStream::Stdout, b"world");
        let second = out.read(OutputStream::Stdout, first.next_offset, 3);
        assert_eq!(
            (second.data.as_slice(), second.next_offset),
            (&b"wor"[..], 9)
        );
        out.close();
        let last = out.read(OutputStream::Stdout, 9, 100);
        assert_eq!(last.data, b"ld");
        assert!(last.eof);
        assert!(out.read(OutputStream::Stderr, 0, 100).eof);
    }

    #[test]
    fn oldest_bytes_are_dropped_and_reported_as_skipped() {
        let out = ProcessOutput::new(4);
        out.write(OutputStream::Stderr, b"abc");
        out.write(OutputStream::Stderr, b"defg");
        let chunk = out.read(OutputStream::Stderr, 0, 100);
        assert_eq!(chunk.data, b"defg");
        assert_eq!((chunk.skipped, chunk.next_offset), (3, 7));
        // One write larger than the whole buffer keeps only its tail.
        out.write(OutputStream::Stderr, b"0123456789");
        let chunk = out.read(OutputStream::Stderr, 7, 100);
        assert_eq!(chunk.data, b"6789");
        assert_eq!((chunk.skipped, chunk.next_offset), (6, 17));
        // Reading past the end returns nothing, at the end.
        let chunk = out.read(OutputStream::Stderr, 100, 100);
        assert_eq!((chunk.data.len(), chunk.next_offset), (0, 17));
    }
}
