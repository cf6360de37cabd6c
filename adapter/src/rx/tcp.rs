//! A TCP segment's way through the RX queue: to the connection its flow names, or a new one placed by the filter, or a SYN cookie (RFC 4987) when the chosen processor's half-open queue is full, or the RST RFC 9293 prescribes.

use super::*;

impl RxQueue {
    pub(super) fn tcp(
        &mut self,
        now: Instant,
        src_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        bytes: &[u8],
    ) -> Decision {
        let (mut seg, text_at) = match wire::parse_header(src, dst, bytes, !self.checksum_trusted) {
            Ok(s) => s,
            Err(WireError::BadChecksum) => return Decision::Dropped(DropKind::BadTcpChecksum),
            Err(_) => return Decision::Dropped(DropKind::BadTcpHeader),
        };
        let text = &bytes[text_at.min(bytes.len())..];
        let tuple = FourTuple {
            local: SocketAddr::new(dst, seg.dst_port),
            remote: SocketAddr::new(src, seg.src_port),
        };
        let new_syn = seg.control == Control::Syn && seg.ack.is_none();
        let flow = self.flows.lookup(&tuple);
        if let (Some(processor), Some(base), false) = (flow, self.lend_base, new_syn) {
            if text.len() >= self.in_place_min {
                // The text goes to the processor in the read buffer itself,
                // once the frame is handled (see `handle_rx_buffer`).
                let start = (text.as_ptr() as usize).wrapping_sub(base);
                self.handover = Some(Handover {
                    processor,
                    inbound: Inbound {
                        tuple,
                        segment: seg,
                        peer_mac: src_mac,
                        syn_stamp: 0,
                        cookie_mss: None,
                        counted_syn: false,
                        arrived: now,
                    },
                    text: start..start + text.len(),
                });
                return Decision::Flow { processor };
            }
        }
        let mut buf = crate::pool::payloads().take_for(text.len());
        buf.extend_from_slice(text);
        seg.payload = Payload::from(buf);
        if let Some(processor) = flow {
            let stamp = if new_syn {
                self.flows.stamp_syn(tuple, processor).1
            } else {
                0
            };
            return match self.dispatch(processor, tuple, seg, src_mac, stamp, None, now) {
                true => Decision::Flow { processor },
                false => Decision::Dropped(DropKind::QueueFull),
            };
        }
        if !new_syn {
            if let Some(d) = self.cookie_ack(now, src_mac, tuple, &seg) {
                return d;
            }
            self.reset(src_mac, &tuple, &seg, now);
            return Decision::RstNoConnection;
        }
        let port = seg.dst_port;
        let picked = self.filter.lock().pick_flow(Protocol::Tcp, &tuple);
        let Some(pick) = picked else {
            self.reset(src_mac, &tuple, &seg, now);
            return Decision::RstClosedPort;
        };
        let mut counted = false;
        let in_flight = self.counters.syn_in_flight.get(pick.processor);
        if let (Some(_), Some(in_flight)) = (&self.cookies, in_flight) {
            let half_open = self
                .counters
                .half_open
                .get(pick.processor)
                .map_or(0, Counters::get);
            // A queue more than half full is also pressure: new SYNs then
            // cost no queue space, which stays for established connections.
            let crowded = self
                .queues
                .get(pick.processor)
                .is_some_and(|q| q.len() * 2 > q.capacity().unwrap_or(usize::MAX));
            // Full already: a cookie, without touching the shared count
            // (in a flood that is nearly every SYN).
            if crowded || half_open + Counters::get(in_flight) >= self.syn_backlog {
                return self.cookie_syn(now, src_mac, tuple, seg, pick.processor);
            }
            // Room: reserve a place, then look again. Every RX thread
            // placing SYNs on this processor sees the others'
            // reservations, so half-open + in flight never passes the
            // backlog.
            let ahead = in_flight.fetch_add(1, Ordering::Relaxed);
            if half_open + ahead >= self.syn_backlog {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                return self.cookie_syn(now, src_mac, tuple, seg, pick.processor);
            }
            counted = true;
        } else if let Some(in_flight) = in_flight {
            // Without cookies the place is still counted until the
            // processor takes the SYN in.
            in_flight.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        if counted {
            // Least-connections reads it, so a burst of SYNs does not all
            // go to one processor.
            self.count_placed(pick.processor, true);
        }
        let (processor, stamp) = self.flows.stamp_syn(tuple, pick.processor);
        self.steer(&tuple, processor);
        let placed = self.send_inbound(
            processor,
            Inbound {
                tuple,
                segment: seg,
                peer_mac: src_mac,
                syn_stamp: stamp,
                cookie_mss: None,
                counted_syn: counted,
                arrived: now,
            },
        );
        if !placed {
            self.flows.forget(&tuple);
            self.unsteer(&tuple);
            if let (true, Some(c)) = (counted, self.counters.syn_in_flight.get(pick.processor)) {
                c.fetch_sub(1, Ordering::Relaxed);
                self.count_placed(pick.processor, false);
            }
        }
        self.report_flows();
        if placed {
            Decision::NewConnection {
                processor,
                port,
                slot: pick.slot,
            }
        } else {
            Decision::Dropped(DropKind::QueueFull)
        }
    }

    /// Answers a SYN with a cookie SYN|ACK (RFC 4987) right here, keeping
    /// no state anywhere. The RX thread does it itself: handing each SYN of
    /// a flood to a processor cost a thread wake-up per SYN, and in a
    /// measured max-rate flood the RX thread answered about twice as many
    /// SYNs per second on its own (290k/s against 150k/s on 2 cores).
    pub(super) fn cookie_syn(
        &mut self,
        now: Instant,
        peer_mac: [u8; 6],
        tuple: FourTuple,
        segment: Segment,
        chosen: usize,
    ) -> Decision {
        let port = segment.dst_port;
        let Some(cookies) = &self.cookies else {
            return Decision::Dropped(DropKind::QueueFull);
        };
        let mss = if tuple.local.is_ipv6() {
            self.our_mss.1
        } else {
            self.our_mss.0
        };
        let sa = cookies.answer(now, &tuple, &segment, mss);
        self.out
            .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &sa);
        self.counters.syn_cookie_sent(self.rx_queue);
        Decision::SynCookie {
            processor: chosen,
            port,
        }
    }

    /// An ACK with no flow may answer a SYN-cookie SYN|ACK: if its cookie
    /// is genuine, the connection is placed like a new SYN would be.
    pub(super) fn cookie_ack(
        &mut self,
        now: Instant,
        src_mac: [u8; 6],
        tuple: FourTuple,
        seg: &Segment,
    ) -> Option<Decision> {
        let cookies = self.cookies.as_ref()?;
        if seg.control != Control::None || seg.ack.is_none() {
            return None;
        }
        // No cookie made in the last two periods: none can be genuine, so
        // a stray ACK is not hashed (nor given a chance as a guess).
        if !cookies.sent_recently(now) {
            return None;
        }
        let port = seg.dst_port;
        let mss = cookies.check(now, &tuple, seg)?;
        // The client believes it is connected once it sent this ACK: if
        // the chosen processor's queue is full, the next live listener in
        // line that serves this address takes it rather than losing it
        // (never one bound to another address).
        let (candidates, slot): (Vec<usize>, usize) = {
            let mut f = self.filter.lock();
            let pick = f.pick_flow(Protocol::Tcp, &tuple)?;
            let others = f.fallbacks(Protocol::Tcp, tuple.local.ip(), port, &pick);
            let order = std::iter::once(pick.processor).chain(others).collect();
            (order, pick.slot)
        };
        let mut placed = None;
        for p in candidates {
            let (processor, stamp) = self.flows.stamp_syn(tuple, p);
            self.steer(&tuple, processor);
            // Counted in flight until the processor takes it in, as a SYN
            // is (least-connections reads it).
            let counters = self.counters.clone();
            let in_flight = counters.syn_in_flight.get(processor);
            if let Some(c) = in_flight {
                c.fetch_add(1, Ordering::Relaxed);
                self.count_placed(processor, true);
            }
            let inbound = Inbound {
                tuple,
                segment: seg.clone(),
                peer_mac: src_mac,
                syn_stamp: stamp,
                cookie_mss: Some(mss),
                counted_syn: in_flight.is_some(),
                arrived: now,
            };
            if self.send_inbound(processor, inbound) {
                placed = Some(processor);
                break;
            }
            if let Some(c) = in_flight {
                c.fetch_sub(1, Ordering::Relaxed);
                self.count_placed(processor, false);
            }
            self.flows.forget(&tuple);
            self.unsteer(&tuple);
        }
        let Some(processor) = placed else {
            return Some(Decision::Dropped(DropKind::QueueFull));
        };
        Counters::bump(&self.counters.syn_cookies_accepted);
        self.report_flows();
        Some(Decision::NewConnection {
            processor,
            port,
            slot,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &mut self,
        processor: usize,
        tuple: FourTuple,
        segment: Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        cookie_mss: Option<u16>,
        now: Instant,
    ) -> bool {
        self.send_inbound(
            processor,
            Inbound {
                tuple,
                segment,
                peer_mac,
                syn_stamp,
                cookie_mss,
                counted_syn: false,
                arrived: now,
            },
        )
    }

    /// Counts a message `processor`'s queue refused: full by count, or by
    /// bytes.
    pub(super) fn count_refused<T>(&self, processor: usize, why: &QueueRefused<T>) {
        let counter = match why {
            QueueRefused::Bytes(_) => self.counters.queue_bytes_full.get(processor),
            _ => self.counters.queue_full.get(processor),
        };
        if let Some(c) = counter {
            Counters::bump(c);
        }
    }

    /// Puts `inbound` on `processor`'s queue; false if the queue is full
    /// (counted) or gone.
    pub(super) fn send_inbound(&mut self, processor: usize, inbound: Inbound) -> bool {
        let mut processor = processor;
        let mut msg = ToProcessor::Segment(inbound);
        // A dead processor's backup, and the backup's if it died too: at
        // most once round the processors.
        for _ in 0..=self.queues.len() {
            let Some(q) = self.queues.get(processor) else {
                return false;
            };
            let weight = msg.weight();
            match q.try_send_weighed(msg, weight) {
                Ok(()) => {
                    self.counters.dispatched(self.rx_queue);
                    return true;
                }
                Err(e @ (QueueRefused::Full(_) | QueueRefused::Bytes(_))) => {
                    self.count_refused(processor, &e);
                    return false;
                }
                Err(QueueRefused::Disconnected(back)) => {
                    let ToProcessor::Segment(inb) = back else {
                        return false;
                    };
                    // The processor's thread has died (it is out of the
                    // rotation already). With a backup, that processor took
                    // its connections over: the flow follows it there.
                    if let Some(b) = self.pairs.backup_of(processor, inb.tuple.local.port()) {
                        if inb.counted_syn {
                            // Its place in flight moves with it: the backup
                            // gives it back when it takes the SYN in.
                            let gauge = &self.counters.syn_in_flight;
                            if let (Some(from), Some(to)) = (gauge.get(processor), gauge.get(b)) {
                                from.fetch_sub(1, Ordering::Relaxed);
                                to.fetch_add(1, Ordering::Relaxed);
                                self.count_placed(processor, false);
                                self.count_placed(b, true);
                            }
                        }
                        self.flows.redirect(&inb.tuple, b);
                        self.steer(&inb.tuple, b);
                        processor = b;
                        msg = ToProcessor::Segment(inb);
                        continue;
                    }
                    // Without one its connections are gone, so their
                    // segments are answered with RST and their flows dropped.
                    if inb.counted_syn {
                        if let Some(c) = self.counters.syn_in_flight.get(processor) {
                            c.fetch_sub(1, Ordering::Relaxed);
                            self.count_placed(processor, false);
                        }
                    }
                    self.flows.forget(&inb.tuple);
                    self.unsteer(&inb.tuple);
                    self.reset(inb.peer_mac, &inb.tuple, &inb.segment, inb.arrived);
                    self.report_flows();
                    return false;
                }
            }
        }
        false
    }

    /// One connection more (or less) placed on `processor`
    /// ([`Counters::placed`]).
    pub(super) fn count_placed(&self, processor: usize, more: bool) {
        if let Some(c) = self.counters.placed.get(processor) {
            if more {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn reset(
        &mut self,
        peer_mac: [u8; 6],
        tuple: &FourTuple,
        seg: &Segment,
        now: Instant,
    ) {
        let Some(rst) = seg.rst_reply() else {
            return;
        };
        if !self.rst_limit.allow(now) {
            return;
        }
        self.out
            .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &rst);
        Counters::bump(&self.counters.rst_sent);
    }
}
