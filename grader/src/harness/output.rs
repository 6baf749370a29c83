//! Captured output of a child process: a reader thread drains the pipe into
//! lines, and the scenario waits on those lines with deadlines.
//!
//! The reader drains without pause unless a test asks it to stop reading
//! (`stop_reading`), so a program that floods its output cannot block on a
//! full pipe and stall the grader; past the byte limit the rest is counted
//! and dropped, and the stream is marked truncated.
//!
//! Stopping the reader is how a spec makes a program's progress depend on
//! the grader instead of on timing: once the pipe is full the program blocks
//! in `write`, at a point the grader chose, and a signal sent then lands in
//! the middle of a flood on every run, at any load.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::Deadline;

#[derive(Debug, Default)]
struct State {
    /// Complete lines captured so far (without their `\n`).
    lines: Vec<String>,
    /// Bytes of an unterminated last line.
    partial: Vec<u8>,
    /// Bytes captured (kept) so far.
    kept: usize,
    /// Bytes read in all, kept or not.
    total: u64,
    truncated: bool,
    eof: bool,
    /// Index of the next line a reader of this stream will consume.
    cursor: usize,
    /// The reader thread reads nothing more until this is cleared.
    paused: bool,
}

/// One captured stream (stdout or stderr) of one process.
#[derive(Debug)]
pub struct CapturedStream {
    state: Mutex<State>,
    more: Condvar,
    limit: usize,
}

/// Why a wait for a line ended without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineWait {
    /// The stream closed (the process exited or closed it).
    Eof,
    /// The deadline passed with no new line.
    Deadline,
    /// The output limit was reached; later lines were dropped.
    Truncated,
}

impl CapturedStream {
    /// Starts draining `source` on a thread of its own.
    pub fn spawn(
        source: impl Read + Send + 'static,
        limit: usize,
    ) -> (Arc<CapturedStream>, JoinHandle<()>) {
        let stream = Arc::new(CapturedStream {
            state: Mutex::new(State::default()),
            more: Condvar::new(),
            limit,
        });
        let writer = Arc::clone(&stream);
        let handle = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || writer.drain(source))
            .expect("spawn capture thread");
        (stream, handle)
    }

    fn drain(&self, mut source: impl Read) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // What a read brought while the reader is stopped is held back
            // (and nothing more is read) until it resumes, so a stopped
            // stream shows no new line whenever the stop came.
            self.wait_while_paused();
            self.push(&buf[..n]);
        }
        let mut st = self.lock();
        if !st.partial.is_empty() && !st.truncated {
            let last = decode(&std::mem::take(&mut st.partial));
            st.lines.push(last);
        }
        st.eof = true;
        drop(st);
        self.more.notify_all();
    }

    fn push(&self, bytes: &[u8]) {
        let mut st = self.lock();
        st.total += bytes.len() as u64;
        if st.truncated {
            return;
        }
        let room = self.limit.saturating_sub(st.kept);
        let (keep, overflow) = if bytes.len() > room {
            (&bytes[..room], true)
        } else {
            (bytes, false)
        };
        st.kept += keep.len();
        let mut rest = keep;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut st.partial);
            line.extend_from_slice(&rest[..pos]);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            st.lines.push(decode(&line));
            rest = &rest[pos + 1..];
        }
        st.partial.extend_from_slice(rest);
        if overflow {
            st.truncated = true;
        }
        drop(st);
        self.more.notify_all();
    }

    fn wait_while_paused(&self) {
        let mut st = self.lock();
        while st.paused {
            st = self.more.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops (`true`) or resumes (`false`) reading from the program: while
    /// stopped, what it writes stays in the pipe, and once the pipe is full
    /// the program blocks in `write`. The teardown of a program always
    /// resumes, so that the reader sees end of file and finishes.
    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
        self.more.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking capture thread cannot leave the state inconsistent
        // (every update is a few plain assignments), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the next unread line, waiting for it until `deadline`.
    pub fn next_line(&self, deadline: Deadline) -> Result<String, LineWait> {
        let mut st = self.lock();
        loop {
            if st.cursor < st.lines.len() {
                let line = st.lines[st.cursor].clone();
                st.cursor += 1;
                return Ok(line);
            }
            if st.truncated {
                return Err(LineWait::Truncated);
            }
            if st.eof {
                return Err(LineWait::Eof);
            }
            let left = deadline.remaining();
            if left.is_zero() {
                return Err(LineWait::Deadline);
            }
            st = self
                .more
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the writer side has closed (EOF), or the deadline.
    pub fn wait_eof(&self, deadline: Deadline) -> bool {
        let mut st = self.lock();
        while !st.eof {
            let left = deadline.remaining();
            if left.is_zero() {
                return false;
            }
            st = self
                .more
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// The last `n` lines captured (consumed or not), plus an unterminated
    /// tail, for showing what a program printed.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let st = self.lock();
        let start = st.lines.len().saturating_sub(n);
        let mut out: Vec<String> = st.lines[start..].iter().map(|l| clip(l)).collect();
        if !st.partial.is_empty() {
            out.push(format!("{} (no newline)", clip(&decode(&st.partial))));
        }
        out
    }

    /// The first line containing `needle` and the `after` lines that follow
    /// it (e.g. a Rust panic message, which a long backtrace can push out
    /// of the tail).
    pub fn first_match(&self, needle: &str, after: usize) -> Vec<String> {
        let st = self.lock();
        match st.lines.iter().position(|l| l.contains(needle)) {
            Some(i) => st.lines[i..(i + 1 + after).min(st.lines.len())]
                .iter()
                .map(|l| clip(l))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The `n` lines before the reading cursor, the context of a mismatch.
    pub fn before_cursor(&self, n: usize) -> Vec<String> {
        let st = self.lock();
        let end = st.cursor.min(st.lines.len());
        st.lines[end.saturating_sub(n)..end]
            .iter()
            .map(|l| clip(l))
            .collect()
    }

    /// Lines consumed so far (1-based number of the last consumed line).
    pub fn position(&self) -> usize {
        self.lock().cursor
    }

    /// Whether output past the limit was dropped, and how many bytes came in all.
    pub fn truncation(&self) -> (bool, u64) {
        let st = self.lock();
        (st.truncated, st.total)
    }
}

/// A program's bytes as text: valid UTF-8 as it is, and each byte of an
/// invalid sequence as a visible `\xNN`, so that a report shows what the
/// program wrote instead of dropping or replacing it. (Control characters
/// stay as they are here, for matching; reporters escape them for display.)
pub fn decode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Longest line shown in a report: a 4 MiB line (a flood without
/// newlines) must not be copied into every failed test's explanation.
pub const MAX_SHOWN_LINE: usize = 400;

/// `line`, cut to [`MAX_SHOWN_LINE`] bytes (at a character boundary) with
/// a note of how much was left out.
pub fn clip(line: &str) -> String {
    if line.len() <= MAX_SHOWN_LINE {
        return line.to_owned();
    }
    let mut end = MAX_SHOWN_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &line[..end], line.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_clipped_for_reports_at_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_SHOWN_LINE);
        let shown = clip(&long);
        assert!(shown.starts_with(&"é".repeat(MAX_SHOWN_LINE / 2)));
        assert!(shown.ends_with(&format!("... ({} more bytes)", long.len() - MAX_SHOWN_LINE)));
    }

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(decode(b"caf\xe9 ok \xff\xfe"), "caf\\xe9 ok \\xff\\xfe");
        assert_eq!(decode("é\x1b[1m".as_bytes()), "é\x1b[1m");
    }

    #[test]
    fn splits_lines_across_reads_and_keeps_tail() {
        let (s, h) = CapturedStream::spawn(&b"one\ntw"[..], 1024);
        h.join().unwrap();
        assert_eq!(s.next_line(Deadline::after_ms(100)), Ok("one".into()));
        assert_eq!(s.next_line(Deadline::after_ms(100)), Ok("tw".into()));
        assert_eq!(s.next_line(Deadline::after_ms(100)), Err(LineWait::Eof));
    }

    #[test]
    fn a_paused_reader_reads_nothing_until_resumed() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (mut tx, rx) = (std::fs::File::from(tx), std::fs::File::from(rx));
        let (s, h) = CapturedStream::spawn(rx, 1024);
        std::io::Write::write_all(&mut tx, b"one\n").unwrap();
        assert_eq!(s.next_line(Deadline::after_ms(5000)), Ok("one".into()));
        s.set_paused(true);
        std::io::Write::write_all(&mut tx, b"two\n").unwrap();
        assert_eq!(s.next_line(Deadline::after_ms(50)), Err(LineWait::Deadline));
        s.set_paused(false);
        assert_eq!(s.next_line(Deadline::after_ms(2000)), Ok("two".into()));
        drop(tx);
        h.join().unwrap();
    }

    #[test]
    fn limit_truncates_but_drains() {
        let data = "x\n".repeat(1000);
        let (s, h) = CapturedStream::spawn(std::io::Cursor::new(data.into_bytes()), 10);
        h.join().unwrap();
        let mut n = 0;
        while s.next_line(Deadline::after_ms(100)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(s.truncation(), (true, 2000));
        assert_eq!(
            s.next_line(Deadline::after_ms(10)),
            Err(LineWait::Truncated)
        );
    }
}
