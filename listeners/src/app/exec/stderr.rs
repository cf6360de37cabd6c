//! A child's stderr, passed on to vnic's own stderr one line at a time,
//! each line prefixed with where it came from:
//! `vnic: exec cpu=2 conn=17: <line>`.
//!
//! Lines are cut at [`MAX_LINE`] bytes: a longer one comes out in pieces,
//! each with the prefix, so a program that never writes a newline costs at
//! most that much memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// Longest line kept before it is passed on (cut) anyway.
pub(super) const MAX_LINE: usize = 4096;

/// Most bytes one [`StderrLines::pump`] reads, so that a program flooding
/// its stderr cannot hold its processor (or the reaper) in one loop.
pub(super) const PUMP_BUDGET: usize = 64 * 1024;

/// What a [`StderrLines::pump`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pumped {
    /// Read until it would block: wait for the next readiness event.
    Drained,
    /// Stopped at the budget with more perhaps waiting: pump again soon.
    More,
    /// End of file (or an error), or the pipe is closed already: stop
    /// watching it and [`StderrLines::close`] it.
    Eof,
}

/// Splits bytes into lines of at most [`MAX_LINE`] bytes; knows nothing
/// of descriptors, so that it can be tested alone.
#[derive(Clone, Debug, Default)]
pub(super) struct LineSplitter {
    /// The line so far (no newline), at most [`MAX_LINE`] bytes.
    line: Vec<u8>,
}

impl LineSplitter {
    /// Takes `bytes`, calling `emit` with each line completed (by a
    /// newline, or by reaching [`MAX_LINE`]), newline excluded.
    pub(super) fn feed(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (mut body, complete) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            while body.len() > MAX_LINE - self.line.len() {
                let (head, rest) = body.split_at(MAX_LINE - self.line.len());
                self.line.extend_from_slice(head);
                self.emit_line(emit);
                body = rest;
            }
            self.line.extend_from_slice(body);
            if complete {
                self.emit_line(emit);
            }
        }
    }

    /// Passes on the last line even without its newline (end of file).
    pub(super) fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.line.is_empty() {
            self.emit_line(emit);
        }
    }

    fn emit_line(&mut self, emit: &mut dyn FnMut(&[u8])) {
        emit(&self.line);
        self.line.clear();
    }
}

/// One line as it goes to vnic's stderr: prefix, the line (invalid UTF-8
/// replaced), newline.
pub(super) fn prefixed(processor: usize, connection: u64, line: &[u8]) -> Vec<u8> {
    format!(
        "vnic: exec cpu={processor} conn={connection}: {}\n",
        String::from_utf8_lossy(line)
    )
    .into_bytes()
}

/// Writes one line to vnic's stderr in a single write (lines of
/// different children never interleave). A failed write is dropped: the
/// program's stderr is a courtesy, never a reason to fail.
fn to_vnic_stderr(processor: usize, connection: u64, line: &[u8]) {
    let _ = io::stderr()
        .lock()
        .write_all(&prefixed(processor, connection, line));
}

/// The read end of one child's stderr pipe (non-blocking) and the line it
/// is in the middle of.
#[derive(Debug)]
pub(super) struct StderrLines {
    /// Shared with the app's checkpoints ([`StderrLines::share`]): the
    /// pipe closes when the last of them lets go.
    pipe: Option<Arc<File>>,
    lines: LineSplitter,
    processor: usize,
    connection: u64,
}

impl StderrLines {
    /// Passes on what `pipe` (already non-blocking) carries, with the
    /// prefix of this `processor` and `connection`.
    pub(super) fn new(pipe: File, processor: usize, connection: u64) -> StderrLines {
        StderrLines {
            pipe: Some(Arc::new(pipe)),
            lines: LineSplitter::default(),
            processor,
            connection,
        }
    }

    /// Another holder of the same pipe, with a copy of the line it is in
    /// the middle of: what an exec app's checkpoint keeps.
    pub(super) fn share(&self) -> StderrLines {
        StderrLines {
            pipe: self.pipe.clone(),
            lines: self.lines.clone(),
            processor: self.processor,
            connection: self.connection,
        }
    }

    /// Bytes of the unfinished line held.
    pub(super) fn held(&self) -> usize {
        self.lines.line.len()
    }

    /// The pipe's descriptor while it is open.
    pub(super) fn fd(&self) -> Option<RawFd> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// Puts the pipe in non-blocking mode, for the processor's epoll.
    pub(super) fn set_nonblocking(&self) -> io::Result<()> {
        match &self.pipe {
            Some(p) => super::sys::set_nonblocking(p),
            None => Ok(()),
        }
    }

    /// Reads what the pipe holds, up to [`PUMP_BUDGET`] bytes, and passes
    /// on every complete line.
    pub(super) fn pump(&mut self) -> Pumped {
        let (cpu, conn) = (self.processor, self.connection);
        let mut emit = |l: &[u8]| to_vnic_stderr(cpu, conn, l);
        let mut buf = [0u8; 4096];
        let mut taken = 0;
        while taken < PUMP_BUDGET {
            let Some(pipe) = self.pipe.as_ref() else {
                return Pumped::Eof;
            };
            match (&**pipe).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    taken += n;
                    self.lines.feed(&buf[..n], &mut emit);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pumped::Drained,
                Err(_) => break,
            }
        }
        if taken >= PUMP_BUDGET {
            return Pumped::More;
        }
        Pumped::Eof
    }

    /// Closes the pipe (stop watching it first), passing on the
    /// unfinished line.
    pub(super) fn close(&mut self) {
        let (cpu, conn) = (self.processor, self.connection);
        self.pipe = None;
        self.lines
            .finish(&mut |l: &[u8]| to_vnic_stderr(cpu, conn, l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l: &[u8]| out.push(l.to_vec()));
        }
        s.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_are_split_at_newlines_across_reads() {
        let got = split(&[b"one\ntw", b"o\n\nthree"]);
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), vec![], b"three".to_vec()]
        );
    }

    #[test]
    fn a_long_line_is_cut_at_max_line_never_buffered_whole() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut with_nl = long.clone();
        with_nl.push(b'\n');
        let got = split(&[&with_nl[..100], &with_nl[100..]]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1].len(), MAX_LINE);
        assert_eq!(got[2].len(), 10);
        assert_eq!(got.concat(), long);
    }

    #[test]
    fn a_line_of_exactly_max_line_is_one_line() {
        let mut l = vec![b'y'; MAX_LINE];
        l.push(b'\n');
        assert_eq!(split(&[&l]), vec![vec![b'y'; MAX_LINE]]);
    }

    #[test]
    fn the_prefix_names_processor_and_connection() {
        assert_eq!(
            prefixed(2, 17, b"oops"),
            b"vnic: exec cpu=2 conn=17: oops\n"
        );
        assert_eq!(
            prefixed(0, 1, b"bad \xff byte"),
            "vnic: exec cpu=0 conn=1: bad \u{fffd} byte\n".as_bytes()
        );
    }
}
