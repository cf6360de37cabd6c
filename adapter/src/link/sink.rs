//! [`ActiveSink`]: the frame sink the processors and RX threads write to
//! when there are several links. It writes through the active link; a
//! write that fails there (the TAP went down or away under it) reports
//! the link failed and is sent again through the link that took over, so
//! a frame is not lost to a failover.

use super::Links;
use crate::emit::FrameSink;
use crate::tap::TapDevice;
use crate::vnet::VnetHeader;
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;

/// The active link's device as a writer last saw it.
struct Held {
    epoch: u64,
    link: usize,
    device: Arc<TapDevice>,
}

/// Writes through the active link of [`Links`]. One per writer: the
/// device it holds is refreshed only when the links' epoch moves, so the
/// per-frame cost is one atomic load and an uncontended lock.
pub struct ActiveSink {
    links: Arc<Links>,
    held: Mutex<Option<Held>>,
}

impl ActiveSink {
    pub(super) fn new(links: Arc<Links>) -> ActiveSink {
        ActiveSink {
            links,
            held: Mutex::new(None),
        }
    }

    /// Runs `write` on the active link's device; on a failure that is the
    /// link's (not the frame's), fails the link over and tries the next
    /// active one, at most once per link. The device is used under this
    /// sink's own lock (one writer's: never contended), not cloned, so no
    /// reference count is shared between the processors per frame.
    fn with_active(&self, write: impl Fn(&TapDevice) -> io::Result<()>) -> io::Result<()> {
        let mut retried = false;
        let mut held = self.held.lock();
        for _ in 0..=self.links.links().len() {
            let h = self.refresh(&mut held)?;
            match write(&h.device) {
                Ok(()) => {
                    if retried {
                        self.links.count_resent(h.link);
                    }
                    return Ok(());
                }
                Err(e) if link_failure(&e) => {
                    self.links.io_failed(h.link, &e);
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::NotConnected.into())
    }

    /// The active link and its device, refreshed when the epoch moved.
    fn refresh<'a>(&self, held: &'a mut Option<Held>) -> io::Result<&'a Held> {
        let epoch = self.links.epoch();
        if held.as_ref().is_some_and(|h| h.epoch == epoch) {
            return held
                .as_ref()
                .ok_or_else(|| io::ErrorKind::NotConnected.into());
        }
        *held = None;
        let link = self
            .links
            .active()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no link is up"))?;
        let device = self
            .links
            .device(link, 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the link's TAP is gone"))?;
        Ok(held.insert(Held {
            epoch,
            link,
            device,
        }))
    }
}

/// Errors that say the link cannot carry frames (down: EIO; deleted or
/// detached: EBADFD and the like), as opposed to a frame refused alone.
fn link_failure(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EBADFD | libc::ENODEV | libc::ENXIO | libc::EBADF | libc::ENETDOWN)
    )
}

impl FrameSink for ActiveSink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.with_active(|d| d.send_frame(frame))
    }

    fn gso(&self) -> bool {
        self.links.offload()
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        self.with_active(|d| d.send_gso_frame(frame, hdr))
    }

    fn send_gso_parts(
        &self,
        head: &mut Vec<u8>,
        tail: [&[u8]; 2],
        hdr: &VnetHeader,
    ) -> io::Result<()> {
        let head: &[u8] = head;
        self.with_active(|d| d.send_gso_slices(&[head, tail[0], tail[1]], hdr))
    }

    fn link(&self) -> Option<&'static str> {
        let link = self.held.lock().as_ref().map(|h| h.link)?;
        self.links.links().get(link).map(|l| l.label())
    }
}
