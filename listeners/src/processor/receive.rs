//! A processor's receive side: each segment to its connection, and the
//! passive opens (a SYN, a SYN cookie's ACK, a reincarnation in TIME-WAIT)
//! that make a connection and its app.

use super::*;

impl Processor {
    /// Handles one segment from the adapter. A panic while handling it
    /// (a bug in the stack or the app) costs only that connection: it is
    /// reset and forgotten, and the processor goes on with the others.
    pub fn on_inbound(&mut self, inb: Inbound) {
        self.receive(inb);
        self.service_pending(self.clock.now());
    }

    /// Hands one segment to its connection (or opens one); the connection
    /// is serviced (app, transmit) later, by [`Processor::service_pending`].
    pub(super) fn receive(&mut self, inb: Inbound) {
        #[cfg(feature = "test-faults")]
        if crate::faults::armed() {
            test_fault(self.id, &inb);
        }
        self.taken += 1;
        // Only a processor that moved connections away or keeps copies
        // for a pair looks further than the connection's own lookup.
        let elsewhere = !self.moved.is_empty() || self.pair.holds_any();
        let inb = if !elsewhere || self.conns.contains_key(&inb.tuple) {
            inb
        } else {
            if self.pair.holds(&inb.tuple) {
                // A dead primary's connection whose segment came first:
                // taken over here and now (see pairs.rs).
                self.take_over(None, Some(inb.tuple));
            }
            match self.forward_moved(inb) {
                Some(inb) => inb,
                None => return,
            }
        };
        let (tuple, peer_mac) = (inb.tuple, inb.peer_mac);
        self.stats().frames_in.fetch_add(1, Ordering::Relaxed);
        if catch_unwind(AssertUnwindSafe(|| self.handle_inbound(&inb))).is_err() {
            self.quarantine(tuple, Some(peer_mac));
        }
        if inb.counted_syn {
            // Handled: it is half-open now (counted there) or gone.
            if let Some(c) = self.adapter_counters.syn_in_flight.get(self.id) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
            // Its place (see `Counters::placed`) is now the connection's,
            // or given back when it opened none.
            match self.conns.get_mut(&tuple) {
                Some(c) if !c.placed => c.placed = true,
                _ => self.count_placed(false),
            }
        }
        // The stack has the bytes now: the buffer goes back to the RX thread.
        vnic_adapter::pool::recycle(inb.segment.payload.into_buffer());
    }

    /// Takes whatever else is already queued, up to [`BATCH`] messages,
    /// before any connection is serviced: a connection that got several
    /// segments in the meantime is then serviced once and answers them
    /// with one ACK, as a kernel does with a NAPI batch. False when the
    /// processor must stop (Shutdown, or the queue is gone).
    pub(super) fn receive_more(&mut self) -> bool {
        for _ in 1..BATCH {
            match self.take_message() {
                Ok(ToProcessor::Segment(inb)) => self.receive(inb),
                Ok(ToProcessor::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Ok(msg @ (ToProcessor::Up | ToProcessor::Down)) => {
                    self.service_pending(self.clock.now());
                    self.set_up(matches!(msg, ToProcessor::Up));
                }
                Ok(ToProcessor::Datagram(d)) => self.on_datagram(d),
                Ok(ToProcessor::Serve {
                    protocol,
                    port,
                    app,
                }) => self.set_serve(protocol, port, app),
                Ok(
                    msg @ (ToProcessor::Drain
                    | ToProcessor::Crash
                    | ToProcessor::Restart
                    | ToProcessor::Adopt(_)
                    | ToProcessor::Migrate(_)
                    | ToProcessor::FlowSwitched(_)),
                ) => {
                    self.service_pending(self.clock.now());
                    if !self.on_message(msg) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        true
    }

    /// Reads a batch of frames from the processor's own TAP queue, if it
    /// has one and it may hold frames, and hands each to its connection
    /// as [`Processor::receive`] does for queued ones; then services
    /// them. True if it read anything.
    pub(super) fn read_own_queue(&mut self) -> bool {
        let Some(d) = self.direct.as_mut().filter(|d| d.pending()) else {
            return false;
        };
        let (conns, parked) = (&self.conns, &self.time_wait);
        let up = !self.registry.processors[self.id]
            .down
            .load(Ordering::Relaxed);
        // One clock reading for the batch, as for queued segments.
        let now = self.clock.now();
        let read = d.read(
            now,
            BATCH,
            |t| up && (conns.contains_key(t) || parked.contains(t)),
            &mut self.direct_batch,
        );
        if let Err(e) = read {
            // The RX threads see the device fail too and stop vnic; this
            // queue is not read again.
            log::warn!("processor {}: reading its own TAP queue: {e}", self.id);
            self.direct = None;
        }
        let mut batch = std::mem::take(&mut self.direct_batch);
        let any = !batch.is_empty();
        if any {
            self.batches += 1;
            self.batch_now = Some(now);
        }
        for inb in batch.drain(..) {
            self.receive(inb);
        }
        self.batch_now = None;
        self.direct_batch = batch;
        if any {
            self.service_pending(now);
            self.out.record_batch(now, self.taken, self.batches);
        }
        any
    }

    pub(super) fn handle_inbound(&mut self, inb: &Inbound) {
        let now = self.batch_now.unwrap_or_else(|| self.clock.now());
        self.handle_segment(now, inb);
        let refused = std::mem::take(&mut self.invalid_replies.refused);
        if refused > 0 {
            self.stats()
                .replies_limited
                .fetch_add(refused, Ordering::Relaxed);
        }
    }

    pub(super) fn handle_segment(&mut self, now: Instant, inb: &Inbound) {
        let Inbound {
            tuple,
            ref segment,
            peer_mac,
            syn_stamp,
            cookie_mss: inb_cookie,
            ..
        } = *inb;
        let up = !self.stats().down.load(Ordering::Relaxed);
        let accepting = up && !self.draining;
        if let Some(c) = self.conns.get_mut(&tuple).filter(|_| up) {
            if syn_stamp != 0 {
                c.syn_stamp = syn_stamp;
            }
            // A SYN read from the processor's own queue carries no stamp:
            // a reincarnation keeps the flow entry's.
            let stamp = c.syn_stamp;
            let before = c.tcp.progress();
            let disposition = c
                .tcp
                .on_segment_limited(now, segment, &mut self.invalid_replies);
            let after = c.tcp.progress();
            // A segment that moved nothing forward (out of window, forged,
            // a duplicate) must not redirect the connection's frames.
            if after != before {
                c.peer_mac = peer_mac;
            }
            // Data that did not advance RCV.NXT (out of order, a gap): its
            // duplicate ACK (with SACK) goes out now, not at the end of the
            // batch, because the sender counts them to find the loss
            // (RFC 5681 4.2). Batching them cut an upload under 1% loss to a
            // tenth.
            let out_of_order = !segment.payload.is_empty() && after.0 == before.0;
            c.unserviced += segment.payload.len();
            let due = c.unserviced >= SERVICE_BYTES;
            match disposition {
                Disposition::Handled if out_of_order || due => self.service(tuple, now),
                Disposition::Handled => {
                    if !c.queued {
                        c.queued = true;
                        self.pending.push(tuple);
                    }
                }
                Disposition::Reincarnate => {
                    // The flow goes on with the new incarnation.
                    self.forget(tuple, false);
                    self.accept(now, tuple, segment, peer_mac, stamp);
                }
            }
            return;
        }
        if up && self.on_parked(now, inb) {
            return;
        }
        if let Some(mss) = inb_cookie {
            if accepting && self.conns.len() < self.max_connections && !self.refuse_for_memory() {
                self.accept_cookie(now, tuple, segment, peer_mac, syn_stamp, mss);
                if self.conns.contains_key(&tuple) {
                    return;
                }
            }
        }
        let is_syn = segment.control == Control::Syn && segment.ack.is_none();
        let mut full = self.conns.len() >= self.max_connections;
        if full && is_syn {
            self.stats().refused.fetch_add(1, Ordering::Relaxed);
        }
        if accepting && is_syn && !full && self.refuse_for_memory() {
            full = true;
        }
        if accepting && is_syn && !full && self.serve.contains_key(&tuple.local.port()) {
            self.accept(now, tuple, segment, peer_mac, syn_stamp);
            if self.conns.contains_key(&tuple) {
                return;
            }
            // The service refused it: RST below.
        }
        if let Some(rst) = segment.rst_reply() {
            if self.invalid_replies.allow(now) {
                self.out.stamp_turn(now, self.taken, self.batches);
                self.out
                    .send_tcp(peer_mac, tuple.local.ip(), tuple.remote.ip(), &rst);
            }
        }
        if syn_stamp != 0 {
            self.report_closed(FlowClosed { tuple, syn_stamp });
        }
    }

    /// Tells the RX thread that placed a connection that it is gone.
    pub(super) fn report_closed(&self, c: FlowClosed) {
        // Its frames go to the RX thread again before it hears of the end.
        if let Some(d) = &self.direct {
            d.forget(&c.tuple);
        }
        if let Some(to) = self.closed.get(c.rx_queue()).or(self.closed.first()) {
            let _ = to.send(c.into());
        }
    }

    /// Opens the connection a genuine cookie ACK stands for
    /// ([`Connection::accept_cookie`]): its SYN|ACK went out statelessly
    /// already, the ACK completes the handshake.
    pub(super) fn accept_cookie(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        ack: &vnic_stack::Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        mss: u16,
    ) {
        let cfg = self.tcp_config(tuple.local.port());
        let Some(tcp) = Connection::accept_cookie(now, cfg, tuple, ack, mss) else {
            return;
        };
        self.accept_with(tuple, tcp, peer_mac, syn_stamp, false);
        self.service(tuple, now);
    }

    pub(super) fn accept(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        syn: &vnic_stack::Segment,
        peer_mac: [u8; 6],
        syn_stamp: u64,
    ) {
        let iss = self.isn.isn(now, &tuple);
        let tcp = Connection::accept(now, self.tcp_config(tuple.local.port()), tuple, syn, iss);
        self.accept_with(tuple, tcp, peer_mac, syn_stamp, true);
        self.service(tuple, now);
    }

    /// One connection more (or less) placed here (`Counters::placed`).
    pub(super) fn count_placed(&self, more: bool) {
        if let Some(c) = self.adapter_counters.placed.get(self.id) {
            if more {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// What an app of connection `id` on this processor may know.
    pub(super) fn app_context(&self, tuple: FourTuple, id: u64) -> AppContext {
        AppContext {
            processor: self.id,
            connection: id,
            registry: self.registry.clone(),
            backend: None,
            local: tuple.local,
            remote: tuple.remote,
            io: Io::new(self.io.clone(), id),
        }
    }

    /// Takes a new or moved-in connection into the table: counted active
    /// (and half-open), its process pair set, findable by its number.
    pub(super) fn hold(&mut self, tuple: FourTuple, mut c: Conn) {
        c.pair = self.pair.state_for(tuple.local.port());
        self.stats().active.fetch_add(1, Ordering::Relaxed);
        if c.half_open {
            if let Some(g) = self.adapter_counters.half_open.get(self.id) {
                g.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.by_id.insert(c.id, tuple);
        self.conns.insert(tuple, c);
    }

    /// The TCP settings of a connection to local port `port`: its
    /// listener's own (a config file's `congestion`), else the processor's.
    fn tcp_config(&self, port: u16) -> &vnic_stack::TcpConfig {
        self.tcp_ports.get(&port).unwrap_or(&self.tcp_config)
    }

    /// Makes the app of a new connection `tcp` and takes both in; a
    /// `half_open` one counts in the half-open queue until Established.
    /// Nothing if the port's service refuses (counted in `refused`).
    pub(super) fn accept_with(
        &mut self,
        tuple: FourTuple,
        mut tcp: Connection,
        peer_mac: [u8; 6],
        syn_stamp: u64,
        half_open: bool,
    ) {
        let Some(svc) = self.serve.get(&tuple.local.port()).cloned() else {
            return;
        };
        let id = self.registry.connection_number();
        let app: Box<dyn App> = match (&self.apps, svc.builtin(), svc.requests()) {
            (AppSource::Distributor(d), Some(kind), _) => {
                Box::new(Forwarder::new(kind, id, d.dispatcher.clone()).at_front(self.id))
            }
            (AppSource::Distributor(d), None, Some(handler)) => Box::new(
                Forwarder::for_requests(handler, id, d.dispatcher.clone()).at_front(self.id),
            ),
            _ => {
                let ctx = self.app_context(tuple, id);
                match svc.open(ctx) {
                    Ok(app) => app,
                    Err(why) => {
                        self.stats().refused.fetch_add(1, Ordering::Relaxed);
                        let cpu = self.id;
                        self.tracer.conn_event(|| {
                            format!(
                                "refused {} > {} cpu={cpu}: {why}",
                                tuple.remote, tuple.local
                            )
                        });
                        return;
                    }
                }
            }
        };
        // Request/response apps turn Nagle off (no 40 ms stalls).
        tcp.set_nodelay(!app.nagle());
        self.stats().accepted.fetch_add(1, Ordering::Relaxed);
        let mut c = Conn::new(tcp, app, peer_mac, syn_stamp, id);
        c.half_open = half_open;
        c.hold_app = self.hands_off();
        self.hold(tuple, c);
        let cpu = self.id;
        self.tracer.conn_event(|| {
            format!(
                "new {} > {} placed on cpu={cpu} connection={id}",
                tuple.remote, tuple.local
            )
        });
    }
}

/// The test-only fault (`--features test-faults`, which `cargo test`
/// turns on through the root package's dev-dependency and `cargo build`
/// never does), armed only in a process started with
/// `VNIC_TEST_FAULTS=1` ([`crate::faults::armed`]): a segment whose text
/// holds `VNIC-TEST-PANIC` makes the processor's thread panic outside any
/// connection's guarded work, once per vnic, as a bug in the processor
/// itself would.
#[cfg(feature = "test-faults")]
fn test_fault(id: usize, inb: &Inbound) {
    use std::sync::atomic::AtomicBool;
    static FIRED: AtomicBool = AtomicBool::new(false);
    const MARK: &[u8] = b"VNIC-TEST-PANIC";
    let text: &[u8] = &inb.segment.payload;
    if text.windows(MARK.len()).any(|w| w == MARK) && !FIRED.swap(true, Ordering::Relaxed) {
        panic!("processor {id}: test fault (a segment carried VNIC-TEST-PANIC)");
    }
}
