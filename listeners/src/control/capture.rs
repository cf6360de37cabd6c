//! The server side of a live capture (`{"cmd":"capture"}`): once the
//! `{"ok":true}` line is written, the connection carries the capture's
//! pcapng in chunks, each a 4-byte big-endian length and that many bytes
//! of whole pcapng blocks (the section and interface headers first), and
//! ends with a zero length and one [`CaptureEnd`] line. docs/CONTROL.md
//! has the protocol.
//!
//! The client thread that read the request runs the stream. It never
//! slows traffic: the trace writer only ever appends to the capture's
//! bounded buffer (and counts what does not fit as lost); this thread
//! takes the buffer whole and writes it to the socket, however long the
//! client takes to read. It ends when the client closes its side (what
//! `vnic capture` does on Ctrl-C or a closed pipe: the rest and the
//! report still come), when the client goes away, or when vnic stops (the
//! frames so far, then the report).

use super::protocol::{CaptureEnd, CaptureStatus};
use super::server::Limits;
use rustix::io::Errno;
use rustix::net::RecvFlags;
use std::cell::Cell;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vnic_adapter::trace::{CaptureStats, CaptureStream, Next};

/// How long the stream waits for frames before it looks at the client
/// and the stop flag again; also how late a frame may reach the socket.
const POLL: Duration = Duration::from_millis(50);

/// One blocked write's slice: between two, the stream looks whether vnic
/// has stopped.
const WRITE_SLICE: Duration = Duration::from_millis(200);

/// How long after vnic's stop was asked the stream waits for the tracer
/// to end the capture before it ends it itself.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A capture as the status and the end line show it.
pub(super) fn capture_status(st: &CaptureStats) -> CaptureStatus {
    CaptureStatus {
        id: st.id,
        filter: st.spec.filter.clone(),
        processor: st.spec.processor,
        frames: st.frames,
        bytes: st.bytes,
        lost: st.lost,
        trace_lost: st.trace_lost,
        secs: st.elapsed.as_secs_f64(),
    }
}

/// What the client said since the last look.
enum Input {
    /// Nothing (or bytes, which mean nothing during a capture).
    Quiet,
    /// It closed its side: stop, send the rest and the report.
    Done,
    /// The connection is broken.
    Gone,
}

/// Looks at the client's side without waiting.
fn client_input(sock: &UnixStream) -> Input {
    let mut scratch = [0u8; 256];
    loop {
        // MSG_DONTWAIT so it never blocks whatever the socket's mode.
        match rustix::net::recv(sock, &mut scratch, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Input::Done,
            Ok(_) => continue,
            Err(Errno::WOULDBLOCK) => return Input::Quiet,
            Err(Errno::INTR) => continue,
            Err(_) => return Input::Gone,
        }
    }
}

/// Whether to give up on a client that does not read: never while the
/// capture runs (`counting` false: its frames are dropped meanwhile,
/// nobody waits), but `limit` after `counting` first held (vnic stopped,
/// or the capture is over), so a stopping vnic is not held up.
fn exhausted(since: &Cell<Option<Instant>>, counting: bool, limit: Duration) -> bool {
    if !counting {
        return false;
    }
    let start = since.get().unwrap_or_else(Instant::now);
    since.set(Some(start));
    start.elapsed() > limit
}

/// Writes all of `bytes`, in slices of [`WRITE_SLICE`], until done, the
/// client is gone, or `give_up` says so.
fn write_patiently(sock: &UnixStream, bytes: &[u8], give_up: &dyn Fn() -> bool) -> io::Result<()> {
    let mut rest = bytes;
    let mut w = sock;
    sock.set_write_timeout(Some(WRITE_SLICE))?;
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if give_up() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One chunk: its length, then its bytes (a zero length ends the data).
fn write_chunk(sock: &UnixStream, bytes: &[u8], give_up: &dyn Fn() -> bool) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("chunk too long"))?;
    write_patiently(sock, &len.to_be_bytes(), give_up)?;
    write_patiently(sock, bytes, give_up)
}

/// Streams `cap` to the client on `sock` until it ends (see the module
/// doc), then sends its statistics block and the [`CaptureEnd`] line.
pub(super) fn stream(
    sock: &UnixStream,
    mut cap: CaptureStream,
    stop: &AtomicBool,
    limits: &Limits,
) {
    let mut buf = Vec::new();
    let mut reason = None;
    let mut stop_asked: Option<Instant> = None;
    let stopped_since = Cell::new(None);
    loop {
        if reason.is_none() {
            match client_input(sock) {
                Input::Quiet => {}
                Input::Done => {
                    cap.stop();
                    reason = Some("client stopped");
                }
                Input::Gone => return,
            }
        }
        if stop.load(Ordering::Relaxed)
            && stop_asked.get_or_insert_with(Instant::now).elapsed() > STOP_GRACE
        {
            cap.stop();
        }
        match cap.next(&mut buf, POLL) {
            Next::Data => {
                let give_up =
                    || exhausted(&stopped_since, cap.vnic_stopped(), limits.write_timeout);
                if write_chunk(sock, &buf, &give_up).is_err() {
                    return;
                }
            }
            Next::Idle => {}
            Next::Ended => break,
        }
    }
    let reason = match reason {
        Some(r) => r,
        None if cap.vnic_stopped() => "vnic stopped",
        None => "vnic is stopping",
    };
    let end = cap.end_block();
    let mut line = serde_json::to_vec(&CaptureEnd {
        ok: true,
        reason: reason.into(),
        capture: capture_status(&cap.stats()),
        error: None,
    })
    .unwrap_or_default();
    line.push(b'\n');
    // The capture is over: the client gets the write timeout for the rest.
    let give_up = || exhausted(&stopped_since, true, limits.write_timeout);
    let _ = write_chunk(sock, &end, &give_up)
        .and_then(|()| write_chunk(sock, &[], &give_up))
        .and_then(|()| write_patiently(sock, &line, &give_up));
}
