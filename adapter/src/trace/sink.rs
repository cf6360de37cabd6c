//! [`TracingSink`]: middleware around the frame device's send side that
//! records every frame going out, like smoltcp's `phy::Tracer`. The RX
//! thread and the processors keep writing to a plain
//! [`FrameSink`]; whether it traces is decided
//! once, at wiring time.

use super::{comment, Direction, Tracer};
use crate::emit::FrameSink;
use crate::vnet::VnetHeader;
use std::io;
use std::sync::Arc;

/// A [`FrameSink`] that sends through `inner` and then records the frame
/// as [`Direction::Out`] with the comment `out <origin>` (`out cpu=2`), or
/// for origin `adapter`, `out adapter <kind>` (`arp-reply`, `ndp-advert`,
/// `echo-reply`, `port-unreachable`, `rst`, `tcp`). A frame the inner sink
/// refused gets ` tx-error` added. One per sender, so the origin is fixed.
pub struct TracingSink {
    inner: Arc<dyn FrameSink>,
    tracer: Arc<Tracer>,
    origin: String,
}

impl TracingSink {
    /// Wraps `inner`; `origin` names the sender (`cpu=2`, `adapter`).
    pub fn new(inner: Arc<dyn FrameSink>, tracer: Arc<Tracer>, origin: String) -> TracingSink {
        TracingSink {
            inner,
            tracer,
            origin,
        }
    }
}

impl FrameSink for TracingSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let r = self.inner.send_frame(frame);
        self.tracer.record_with(Direction::Out, frame, || {
            let mut c = comment::out_comment(&self.origin, frame);
            if r.is_err() {
                c.push_str(" tx-error");
            }
            c
        });
        r
    }

    fn gso(&self) -> bool {
        self.inner.gso()
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        let r = self.inner.send_gso_frame(frame, hdr);
        self.tracer
            .record_with(Direction::Out, frame, || self.gso_comment(frame, hdr, &r));
        r
    }

    fn send_gso_buf(&self, frame: &mut Vec<u8>, hdr: &VnetHeader) -> io::Result<()> {
        let r = self.inner.send_gso_frame(frame, hdr);
        let len = frame.len();
        self.tracer
            .record_owned(Direction::Out, frame, len, |f| self.gso_comment(f, hdr, &r));
        r
    }
}

impl TracingSink {
    /// `out cpu=2`, with ` gso` for a frame the kernel cuts into segments
    /// (one that only has its checksum left to the kernel says nothing).
    fn gso_comment(&self, frame: &[u8], hdr: &VnetHeader, r: &io::Result<()>) -> String {
        let mut c = comment::out_comment(&self.origin, frame);
        if hdr.gso_type != crate::vnet::GSO_NONE {
            c.push_str(" gso");
        }
        if r.is_err() {
            c.push_str(" tx-error");
        }
        c
    }
}
