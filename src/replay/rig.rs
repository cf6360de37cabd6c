//! The vnic a replay runs: the real RX queue (adapter, filter, flow table,
//! SYN cookies) and the real processors, built as `vnic up` builds them
//! (`Builder::replay_rig`), but with no TAP, no threads, and one virtual
//! clock; what they send is kept by a [`ReplaySink`] each.

use super::script::Scripts;
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use vnic_adapter::clock::VirtualClock;
use vnic_adapter::trace::Origin;
use vnic_adapter::vnet::VnetHeader;
use vnic_adapter::{Filter, FrameSink, RxQueue};
use vnic_listeners::processor::Processor;
use vnic_stack::{IsnScript, TcpConfig};

/// What a replay gives the builder beyond `vnic up`'s settings.
pub struct RigSetup {
    /// The replay's time zero (its base): each processor gets a clock of
    /// its own from it.
    pub clock: Arc<VirtualClock>,
    /// The adapter's MAC (the trace's), if the settings give none.
    pub mac: Option<[u8; 6]>,
    /// The link MTU the trace's vnic used.
    pub mtu: Option<usize>,
    /// Offloads on (a TSO-capable sink, checksums of inbound frames
    /// trusted).
    pub offload: bool,
    /// The ISN generator's key (the trace's, or any when it has none).
    pub isn_key: [u8; 16],
    /// The SYN-cookie secret (the trace's, or any when it has none).
    pub cookie_secret: [u8; 16],
    /// The ISNs the trace's SYN|ACKs show, per 4-tuple.
    pub isns: IsnScript,
    /// The scripts of the apps that need the outside world.
    pub scripts: Arc<Mutex<Scripts>>,
}

/// The vnic being replayed.
pub struct Rig {
    /// The adapter's receive side (one RX queue).
    pub rx: RxQueue,
    /// The filter (for the decision comments' rule).
    pub filter: Arc<Mutex<Filter>>,
    /// The processors, driven in this thread.
    pub processors: Vec<Processor>,
    /// What each sent: processor K's at K, the adapter's last.
    pub sinks: Vec<Arc<ReplaySink>>,
    /// The processors' TCP settings.
    pub tcp: TcpConfig,
    /// Ports whose app is scripted from the trace, and the app's name.
    pub scripted: Vec<(u16, String)>,
    /// Nagle off per listening port, as its app chooses.
    pub nodelay: std::collections::HashMap<u16, bool>,
    /// Each processor's clock (processor K's at K), all from one base.
    pub clocks: Vec<Arc<VirtualClock>>,
}

/// A frame sink that keeps what it is given, with the comment the
/// tracing sink would have written for it.
pub struct ReplaySink {
    origin: Origin,
    gso: bool,
    frames: Mutex<Vec<(Vec<u8>, String)>>,
}

impl ReplaySink {
    /// A sink for `origin`'s frames; `gso` as a TAP with offloads.
    pub fn new(origin: Origin, gso: bool) -> ReplaySink {
        ReplaySink {
            origin,
            gso,
            frames: Mutex::new(Vec::new()),
        }
    }

    /// Takes the frames sent so far, each with its comment.
    pub fn take(&self) -> Vec<(Vec<u8>, String)> {
        std::mem::take(&mut *self.frames.lock())
    }

    fn keep(&self, frame: &[u8], gso: bool) {
        let mut c = vnic_adapter::trace::comment::out_comment(self.origin, frame);
        if gso {
            c.push_str(" gso");
        }
        self.frames.lock().push((frame.to_vec(), c));
    }
}

impl FrameSink for ReplaySink {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.keep(frame, false);
        Ok(())
    }

    fn gso(&self) -> bool {
        self.gso
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        if !self.gso {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.keep(frame, hdr.gso_type != vnic_adapter::vnet::GSO_NONE);
        Ok(())
    }
}
