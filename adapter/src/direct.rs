//! A processor's own TAP queue: the frames of its connections, read by
//! the processor itself with no RX thread between (`--processor-queues`,
//! see [`crate::flowmap`] for why).
//!
//! [`DirectQueue::read`] takes what the queue holds, a batch at a time,
//! and turns each TCP segment of a connection the processor holds into
//! the same [`Inbound`] the RX thread would have queued (checksummed,
//! parsed, its text copied out or, when large, handed over in the read
//! buffer). Everything else it does not decide: a frame that is not a
//! plain TCP segment for one of our addresses, a bad checksum, a segment
//! of a connection the processor no longer holds (the flow map is
//! cleared as the processor forgets it, so only a race lands one here)
//! goes to the RX thread that reads the RX queue the RSS hash names, which
//! handles it as if it had read it
//! ([`RxQueue::take_handed_back`](crate::rx::RxQueue::take_handed_back)).
//! While a trace runs, the processor records each frame it takes with the
//! decision the RX thread would have written (`in cpu=K flow`).

use crate::config::AdapterConfig;
use crate::counters::Counters;
use crate::filter::Filter;
use crate::flowmap::FlowMap;
use crate::queue::Inbound;
use crate::rx::Decision;
use crate::rx::IN_PLACE_MIN;
use crate::steer::{flow_hash, queue_of};
use crate::tap::{RxWaker, TapDevice, MAX_FRAME_LEN};
use crate::trace::{Direction, Note, Tracer};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use etherparse::{EtherType, Ethernet2HeaderSlice, IpNumber, Ipv4Slice, Ipv6Slice};
use parking_lot::Mutex;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;
use vnic_stack::{wire, FourTuple, Payload};

/// A frame a processor read from its own queue and hands back to an RX
/// thread to decide on.
#[derive(Debug)]
pub struct HandedBack {
    /// The frame (the buffer may be longer: see `len`).
    pub frame: Vec<u8>,
    /// Bytes of the frame in `frame`.
    pub len: usize,
    /// The TAP vouched for its checksum (see [`crate::tap::RxFrame`]).
    pub checksum_trusted: bool,
}

/// Most frames waiting to be handed back to one RX thread; beyond it a
/// frame is dropped and counted (`handed_back_drops`).
pub const HAND_BACK_DEPTH: usize = 1024;

/// The way back to one RX thread: its channel and its waker.
#[derive(Clone, Debug)]
pub struct HandBack {
    tx: Sender<HandedBack>,
    wake: RxWaker,
}

impl HandBack {
    /// A channel to the RX thread that `wake` wakes: the sender for the
    /// processors, the receiver for the RX thread
    /// ([`crate::rx::RxQueue::set_handed_back`]).
    pub fn channel(wake: RxWaker) -> (HandBack, Receiver<HandedBack>) {
        let (tx, rx) = crossbeam_channel::bounded(HAND_BACK_DEPTH);
        (HandBack { tx, wake }, rx)
    }
}

/// One processor's own queue of a TAP with processor queues.
pub struct DirectQueue {
    tap: Arc<TapDevice>,
    /// Its index among the TAP's queues (its slot in the counters).
    queue: usize,
    cfg: AdapterConfig,
    flows: Arc<FlowMap>,
    /// One per RX queue, in queue order.
    back: Vec<HandBack>,
    counters: Arc<Counters>,
    tracer: Arc<Tracer>,
    /// The filter, for its mode in the trace's decision comments.
    filter: Arc<Mutex<Filter>>,
    /// The processor this queue is for.
    processor: usize,
    buf: Vec<u8>,
    /// A read ended before the queue was empty: read on before sleeping
    /// (the fd is edge-triggered in the processor's epoll).
    more: bool,
}

/// What [`DirectQueue::read`] found in one frame: a TCP segment for us
/// and its text's range in the read buffer, or None for anything else.
type Parsed = Option<(Inbound, std::ops::Range<usize>)>;

impl DirectQueue {
    /// The queue `queue` of `tap`, processor `processor`'s, steered by
    /// `flows`, handing back to the RX threads through `back` (one per RX
    /// queue), recording what it reads in `tracer` as the RX thread would
    /// (with `filter`'s mode).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tap: Arc<TapDevice>,
        queue: usize,
        processor: usize,
        cfg: AdapterConfig,
        flows: Arc<FlowMap>,
        back: Vec<HandBack>,
        counters: Arc<Counters>,
        tracer: Arc<Tracer>,
        filter: Arc<Mutex<Filter>>,
    ) -> DirectQueue {
        DirectQueue {
            tap,
            queue,
            cfg,
            flows,
            back,
            counters,
            tracer,
            filter,
            processor,
            buf: vec![0; MAX_FRAME_LEN],
            more: true,
        }
    }

    /// The fd to watch for readability (edge-triggered).
    pub fn fd(&self) -> RawFd {
        self.tap.as_raw_fd()
    }

    /// The epoll said the queue became readable.
    pub fn readable(&mut self) {
        self.more = true;
    }

    /// True when frames may be waiting (read before sleeping).
    pub fn pending(&self) -> bool {
        self.more
    }

    /// Stops steering `tuple` to this queue: the processor forgot the
    /// connection (before it reports the flow closed to the RX thread).
    pub fn forget(&self, tuple: &FourTuple) {
        self.flows.remove(tuple);
    }

    /// Reads up to `max` frames at `now`: each TCP segment of a
    /// connection `holds` says the processor holds is pushed onto `out`,
    /// every other frame handed back to an RX thread. An error means the
    /// device is gone or failing (the RX threads see it too).
    pub fn read(
        &mut self,
        now: Instant,
        max: usize,
        holds: impl Fn(&FourTuple) -> bool,
        out: &mut Vec<Inbound>,
    ) -> io::Result<()> {
        for _ in 0..max {
            let rx = match self.tap.try_recv_frame(&mut self.buf) {
                Ok(Some(rx)) => rx,
                Ok(None) => {
                    self.more = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.more = false;
                    return Err(e);
                }
            };
            let len = rx.len.min(self.buf.len());
            match self.parse(now, len, rx.checksum_trusted) {
                Some((mut inb, text)) if holds(&inb.tuple) => {
                    self.counters.frame_in(self.queue);
                    let traced = self.tracer.active();
                    inb.segment.payload = if text.len() >= IN_PLACE_MIN && !traced {
                        let frame = std::mem::replace(
                            &mut self.buf,
                            crate::pool::frame_buffer(MAX_FRAME_LEN),
                        );
                        Payload::in_buffer(frame, text)
                    } else {
                        let mut b = crate::pool::payloads().take_for(text.len());
                        b.extend_from_slice(&self.buf[text]);
                        Payload::from(b)
                    };
                    if traced {
                        // What the RX thread would have recorded; the
                        // frame's buffer may go to the trace writer.
                        let decision = Decision::Flow {
                            processor: self.processor,
                        };
                        let filter = &self.filter;
                        self.tracer
                            .record_owned(Direction::In, &mut self.buf, len, |_| {
                                Note::Rx(decision, decision.rule(&filter.lock()))
                            });
                        self.buf.resize(MAX_FRAME_LEN, 0);
                    }
                    out.push(inb);
                }
                _ => self.hand_back(len, rx.checksum_trusted),
            }
        }
        Ok(())
    }

    /// The frame in the first `len` bytes of the read buffer, if it is a
    /// checksummed TCP segment for one of our addresses; its text's range
    /// in the buffer beside it.
    fn parse(&self, now: Instant, len: usize, trusted: bool) -> Parsed {
        let frame = &self.buf[..len];
        let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
            return None;
        };
        if !self.cfg.accepts_mac(eth.destination()) {
            return None;
        }
        let at = eth.slice().len();
        let ip = &frame[at..];
        let (src, dst, tcp) = match eth.ether_type() {
            EtherType::IPV4 => {
                let Ok(v4) = Ipv4Slice::from_slice(ip) else {
                    return None;
                };
                let h = v4.header();
                if h.to_header().calc_header_checksum() != h.header_checksum()
                    || v4.is_payload_fragmented()
                    || v4.payload().ip_number != IpNumber::TCP
                {
                    return None;
                }
                let (s, d) = (h.source_addr(), h.destination_addr());
                (IpAddr::V4(s), IpAddr::V4(d), v4.payload().payload)
            }
            EtherType::IPV6 => {
                let Ok(v6) = Ipv6Slice::from_slice(ip) else {
                    return None;
                };
                if v6.is_payload_fragmented() || v6.payload().ip_number != IpNumber::TCP {
                    return None;
                }
                let h = v6.header();
                let (s, d) = (h.source_addr(), h.destination_addr());
                (IpAddr::V6(s), IpAddr::V6(d), v6.payload().payload)
            }
            _ => return None,
        };
        if !self.cfg.owns(dst) {
            return None;
        }
        let Ok((segment, text_at)) = wire::parse_header(src, dst, tcp, !trusted) else {
            return None;
        };
        let start = (tcp.as_ptr() as usize - frame.as_ptr() as usize) + text_at.min(tcp.len());
        let end = start + tcp.len().saturating_sub(text_at);
        let tuple = FourTuple {
            local: SocketAddr::new(dst, segment.dst_port),
            remote: SocketAddr::new(src, segment.src_port),
        };
        Some((
            Inbound {
                tuple,
                segment,
                peer_mac: eth.source(),
                syn_stamp: 0,
                cookie_mss: None,
                counted_syn: false,
                arrived: now,
            },
            start..end,
        ))
    }

    /// Gives the frame in the read buffer to the RX thread that reads the
    /// RX queue its RSS hash names (where it would have landed without a
    /// flow entry), and wakes it.
    fn hand_back(&mut self, len: usize, checksum_trusted: bool) {
        let ip = self.buf.get(14..len).unwrap_or(&[]);
        let Some(to) = self.back.get(queue_of(flow_hash(ip), self.back.len())) else {
            return;
        };
        let mut frame = crate::pool::payloads().take();
        frame.clear();
        frame.extend_from_slice(&self.buf[..len]);
        let msg = HandedBack {
            frame,
            len,
            checksum_trusted,
        };
        match to.tx.try_send(msg) {
            Ok(()) => {
                Counters::bump(&self.counters.handed_back);
                to.wake.wake();
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                crate::pool::recycle(m.frame);
                Counters::bump(&self.counters.handed_back_drops);
            }
        }
    }
}
