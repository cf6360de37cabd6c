//! [`TracingSink`]: middleware around the frame device's send side that
//! records every frame going out, like smoltcp's `phy::Tracer`. The RX
//! thread and the processors keep writing to a plain
//! [`FrameSink`]; whether it traces is decided
//! once, at wiring time.

use super::turn::TurnStamp;
use super::{Direction, Note, Origin, Tracer};
use crate::emit::FrameSink;
use crate::vnet::{VnetHeader, GSO_NONE};
use std::io;
use std::sync::Arc;

/// A [`FrameSink`] that sends through `inner` and then records the frame
/// as [`Direction::Out`] with the comment `out <origin>` (`out cpu=2`), or
/// for origin `adapter`, `out adapter <kind>` (`arp-reply`, `ndp-advert`,
/// `echo-reply`, `port-unreachable`, `rst`, `tcp`); a GSO frame gets
/// ` gso`, a frame the inner sink refused ` tx-error`. One per sender, so
/// the origin is fixed.
pub struct TracingSink {
    inner: Arc<dyn FrameSink>,
    tracer: Arc<Tracer>,
    origin: Origin,
    /// The sender's turn (a processor's), written into each comment.
    turn: Option<Arc<TurnStamp>>,
}

impl TracingSink {
    /// Wraps `inner`; `origin` names the sender (`cpu=2`, `adapter`).
    pub fn new(inner: Arc<dyn FrameSink>, tracer: Arc<Tracer>, origin: Origin) -> TracingSink {
        TracingSink {
            inner,
            tracer,
            origin,
            turn: None,
        }
    }

    /// Also writes the sender's turn into each frame's comment
    /// (`out cpu=2 t=NS in=N`): what a replay needs to give the processor
    /// the same `now` and batches.
    pub fn with_turn(mut self, turn: Arc<TurnStamp>) -> TracingSink {
        self.turn = Some(turn);
        self
    }

    /// The decision of a frame this sink wrote: its origin, ` gso` for a
    /// frame the kernel cuts into segments (one that only has its
    /// checksum left to the kernel says nothing), ` tx-error` if the
    /// write failed. Turned into text by the writer thread.
    fn note(&self, gso: bool, r: &io::Result<()>) -> Note {
        let suffix = match (gso, r.is_err()) {
            (false, false) => "",
            (false, true) => " tx-error",
            (true, false) => " gso",
            (true, true) => " gso tx-error",
        };
        Note::Out {
            origin: self.origin,
            suffix,
            link: self.inner.link(),
            turn: self.turn.as_ref().map(|t| t.get()),
        }
    }
}

impl FrameSink for TracingSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let r = self.inner.send_frame(frame);
        self.tracer
            .record_with(Direction::Out, frame, || self.note(false, &r));
        r
    }

    fn gso(&self) -> bool {
        self.inner.gso()
    }

    fn turn(&self) -> Option<&TurnStamp> {
        self.turn.as_deref()
    }

    fn batch(&self, now: std::time::Instant, taken: u64, batch: u64) {
        let (Some(turn), Origin::Processor(cpu)) = (&self.turn, self.origin) else {
            return;
        };
        self.tracer.record_batch(super::batch::BatchRecord {
            cpu,
            t: turn.ns(now),
            taken,
            batch,
        });
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        let r = self.inner.send_gso_frame(frame, hdr);
        let gso = hdr.gso_type != GSO_NONE;
        self.tracer
            .record_with(Direction::Out, frame, || self.note(gso, &r));
        r
    }

    fn send_gso_buf(&self, frame: &mut Vec<u8>, hdr: &VnetHeader) -> io::Result<()> {
        let r = self.inner.send_gso_frame(frame, hdr);
        let len = frame.len();
        let gso = hdr.gso_type != GSO_NONE;
        self.tracer
            .record_owned(Direction::Out, frame, len, |_| self.note(gso, &r));
        r
    }

    /// While nothing records, the pieces go to the inner sink as they
    /// are (a TAP writes them with one vectored write, straight from the
    /// connection's send buffer). Joining them first, as the default
    /// does, had been 12% of a processor's samples in a profiled
    /// download: every writer is a tracing sink, traced or not.
    fn send_gso_parts(
        &self,
        head: &mut Vec<u8>,
        tail: [&[u8]; 2],
        hdr: &VnetHeader,
    ) -> io::Result<()> {
        if self.tracer.active() {
            self.send_gso_joined(head, tail, hdr)
        } else {
            self.inner.send_gso_parts(head, tail, hdr)
        }
    }
}
