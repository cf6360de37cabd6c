//! [`LinkSource`]: what an RX thread reads when there are several links:
//! its queue of every link, so a connection's frames meet the same flow
//! table whichever link the host sends them through (after a failover
//! the host's bridge learns the new MAC and sends through the new TAP).
//! A link whose reads fail is reported and left out; only when every
//! link's TAP is gone does the source fail, and with it the vnic.

use super::Links;
use crate::arp;
use crate::config::AdapterConfig;
use crate::tap::{FrameSource, RxFrame, TapDevice};
use etherparse::{EtherType, Ethernet2HeaderSlice};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Frames read in a row from one link before the others get a look.
const STREAK: usize = 64;

/// Reads queue `queue` of every link, in turn.
pub struct LinkSource {
    links: Arc<Links>,
    queue: usize,
    epoch: Option<u64>,
    /// (link, device) for each link still readable.
    devices: Vec<(usize, Arc<TapDevice>)>,
    /// Where the next read starts: the link that gave the last frame, so
    /// a busy link costs no empty read of an idle one per frame, until
    /// [`STREAK`] frames in a row (then the next), so it starves none.
    next: usize,
    /// Frames in a row from `next`.
    streak: usize,
    /// The link of the last frame read.
    last: Option<usize>,
    /// Per link: the reserved address's identity (`--link-ip`), answered
    /// here because only this reader knows which link a frame came in on.
    reserved: Vec<Option<AdapterConfig>>,
}

impl LinkSource {
    pub(super) fn new(links: Arc<Links>, queue: usize) -> LinkSource {
        let reserved = links
            .links()
            .iter()
            .map(|l| {
                l.link_ip().map(|ip| {
                    let mut c = AdapterConfig::new(l.name(), &[ip.into()], 1500);
                    c.mac = l.mac();
                    c
                })
            })
            .collect();
        LinkSource {
            links,
            queue,
            epoch: None,
            devices: Vec::new(),
            next: 0,
            streak: 0,
            last: None,
            reserved,
        }
    }

    fn refresh(&mut self) {
        let epoch = self.links.epoch();
        if self.epoch == Some(epoch) {
            return;
        }
        self.epoch = Some(epoch);
        self.devices = (0..self.links.links().len())
            .filter_map(|i| self.links.device(i, self.queue).map(|d| (i, d)))
            .collect();
    }

    /// One frame from any link, without waiting.
    fn try_read(&mut self, buf: &mut [u8]) -> Option<RxFrame> {
        let n = self.devices.len();
        let mut k = 0;
        while k < n.min(self.devices.len()) {
            let i = (self.next + k) % self.devices.len();
            let (link, dev) = &self.devices[i];
            let link = *link;
            match dev.try_recv_frame(buf) {
                Ok(Some(f)) => {
                    self.streak = if i == self.next { self.streak + 1 } else { 1 };
                    self.next = if self.streak >= STREAK {
                        self.streak = 0;
                        i + 1
                    } else {
                        i
                    };
                    self.last = Some(link);
                    self.answer_reserved(link, &buf[..f.len.min(buf.len())]);
                    return Some(f);
                }
                Ok(None) => k += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // This link's TAP failed: report it, read the others.
                    self.links.io_failed(link, &e);
                    self.devices.remove(i);
                }
            }
        }
        None
    }

    /// An ARP request for link `link`'s reserved address gets its answer
    /// on that link, from that link's MAC, whether it is active or not.
    fn answer_reserved(&self, link: usize, frame: &[u8]) {
        let Some(Some(cfg)) = self.reserved.get(link) else {
            return;
        };
        let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
            return;
        };
        if eth.ether_type() != EtherType::ARP {
            return;
        }
        if let Ok(Some(r)) = arp::answer(cfg, &frame[eth.slice().len()..]) {
            let head = etherparse::Ethernet2Header {
                source: cfg.mac,
                destination: r.dst_mac,
                ether_type: EtherType::ARP,
            };
            let mut f = head.to_bytes().to_vec();
            f.extend_from_slice(&r.packet);
            let _ = self.links.send_on(link, &f);
        }
    }
}

impl FrameSource for LinkSource {
    fn link(&self) -> Option<&'static str> {
        self.last
            .and_then(|i| self.links.links().get(i))
            .map(|l| l.label())
    }

    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        Ok(self.recv_frame(buf, timeout)?.map(|f| f.len))
    }

    fn recv_frame(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<RxFrame>> {
        self.refresh();
        if let Some(f) = self.try_read(buf) {
            return Ok(Some(f));
        }
        if self.devices.is_empty() {
            if self.links.all_deleted() {
                return Err(io::Error::from_raw_os_error(libc::EBADFD));
            }
            // Every link of this queue failed, not all gone: wait for one
            // to be reattached (the epoch moves then).
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return Ok(None);
        }
        let mut fds: Vec<libc::pollfd> = self
            .devices
            .iter()
            .map(|(_, d)| libc::pollfd {
                fd: d.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // A takeover or reattach is seen within this wait at the latest.
        let ms = i32::try_from(timeout.min(Duration::from_millis(100)).as_millis()).unwrap_or(100);
        // SAFETY: `fds.len()` valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        if r == 0 {
            return Ok(None);
        }
        self.refresh();
        Ok(self.try_read(buf))
    }
}
