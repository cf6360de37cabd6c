//! The messages between the adapter's RX thread and the processors.

use crate::filter::Protocol;
use crossbeam_channel::{SendError, Sender, TrySendError};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vnic_stack::{FourTuple, Segment};

/// One TCP segment for a processor, already parsed and checksummed.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The connection, from our side (local = virtual IP).
    pub tuple: FourTuple,
    /// The segment.
    pub segment: Segment,
    /// The MAC that sent it: where our answers go.
    pub peer_mac: [u8; 6],
    /// For a SYN, the flow table's stamp (see [`crate::flow`]); 0 otherwise.
    pub syn_stamp: u64,
    /// For the ACK of a SYN-cookie SYN|ACK that the adapter found genuine,
    /// the MSS the cookie carried: the processor opens the connection from it.
    pub cookie_mss: Option<u16>,
    /// A new SYN the adapter counted in the processor's SYNs in flight
    /// ([`crate::Counters::syn_in_flight`]): the processor takes it off
    /// that count once it has handled it.
    pub counted_syn: bool,
    /// When the adapter read the frame.
    pub arrived: Instant,
}

/// One UDP datagram for a processor's UDP listener.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender (the host side).
    pub remote: std::net::SocketAddr,
    /// Destination (a virtual IP and the listener's port).
    pub local: std::net::SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// The MAC that sent it.
    pub peer_mac: [u8; 6],
}

/// What a processor's queue carries.
#[derive(Debug)]
pub enum ToProcessor {
    /// A segment of one of its connections (or a new one).
    Segment(Inbound),
    /// A UDP datagram for one of its UDP listeners.
    Datagram(Datagram),
    /// Start (Some(app name)) or stop (None) serving a port, for listeners
    /// added or removed at run time.
    Serve {
        /// TCP or UDP.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The app's name, or None to stop serving.
        app: Option<String>,
    },
    /// The processor fails, as `vnic ctl processor K down` says: every
    /// connection is reset with RST and nothing new is accepted.
    Down,
    /// The processor comes back (`vnic ctl processor K up`).
    Up,
    /// Reset every connection and stop the thread.
    Shutdown,
    /// Stop accepting and close every connection with FIN (vnic is
    /// stopping; `Shutdown` follows after the drain time).
    Drain,
    /// Fail on purpose, as a bug outside any connection's work would
    /// (`vnic ctl processor K crash`): the thread panics.
    Crash,
    /// Start a failed processor again (`vnic ctl processor K restart`):
    /// its thread, which outlived the failure, begins afresh with the
    /// same queues. A live processor ignores it.
    Restart,
    /// A connection moving in from another processor (a live migration
    /// or a process pair's takeover): the listeners crate's adoption,
    /// which the adapter only carries. It travels in the same queue as
    /// the segments so that it is taken in before any segment the RX
    /// thread sends once the flow is switched.
    Adopt(Box<dyn std::any::Any + Send>),
    /// A request to move connections away or to take over from a failed
    /// processor (the listeners crate's request, from the control server
    /// or a failure handler), which the adapter only carries.
    Migrate(Box<dyn std::any::Any + Send>),
    /// The RX thread now sends this moved connection's frames to its new
    /// processor (see [`FlowReport::Moved`]): nothing more for it comes
    /// through this queue from the RX thread, so the old processor stops
    /// forwarding.
    FlowSwitched(FourTuple),
}

impl ToProcessor {
    /// The bytes of memory the message holds while it waits in a queue:
    /// a segment's or datagram's buffer and the message itself. What
    /// [`QueueBytes`] counts.
    pub fn weight(&self) -> usize {
        let own = std::mem::size_of::<ToProcessor>();
        match self {
            ToProcessor::Segment(inb) => own + inb.segment.payload.buffer_capacity(),
            ToProcessor::Datagram(d) => own + d.payload.capacity(),
            _ => 0,
        }
    }
}

/// A processor's report that it no longer holds a connection, so the RX
/// thread can drop the flow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowClosed {
    /// The connection.
    pub tuple: FourTuple,
    /// The stamp of the last SYN the processor saw for it.
    pub syn_stamp: u64,
}

impl FlowClosed {
    /// The RX queue whose flow table holds the connection.
    pub fn rx_queue(&self) -> usize {
        crate::flow::stamp_queue(self.syn_stamp)
    }
}

/// What a processor tells the RX thread that placed a connection about
/// its flow entry, on one channel so the reports keep their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowReport {
    /// The processor no longer holds the connection: the entry goes.
    Closed(FlowClosed),
    /// The connection moved from processor `from` to `to` (a live
    /// migration, `vnic ctl connection move`): its frames go to `to` from
    /// now on, and `from` hears it ([`ToProcessor::FlowSwitched`]) so that
    /// it stops forwarding what still reaches it.
    Moved {
        /// The connection and the stamp of its last SYN.
        flow: FlowClosed,
        /// The processor it left.
        from: usize,
        /// The processor that holds it now.
        to: usize,
    },
    /// A segment reached `processor` through the flow entry of a
    /// connection it does not hold (a dead processor's connection its
    /// backup had no checkpoint of): the entry goes if it still names
    /// that processor. Sent to every RX queue: without the SYN's stamp the
    /// processor cannot tell which one holds it.
    NotHeld {
        /// The connection.
        tuple: FourTuple,
        /// The processor that does not hold it.
        processor: usize,
    },
}

impl FlowReport {
    /// The RX queue whose flow table holds the connection.
    pub fn rx_queue(&self) -> usize {
        match self {
            FlowReport::Closed(c) | FlowReport::Moved { flow: c, .. } => c.rx_queue(),
            FlowReport::NotHeld { .. } => 0,
        }
    }
}

impl From<FlowClosed> for FlowReport {
    fn from(c: FlowClosed) -> FlowReport {
        FlowReport::Closed(c)
    }
}

/// A processor's doorbell: how a sender wakes a processor that sleeps in
/// its event loop (an epoll that also watches the sockets and pipes of its
/// apps, see `vnic_listeners::processor`).
///
/// Ringing costs a system call (an eventfd write), so a sender rings only
/// when the processor said it is about to sleep: the processor sets
/// `asleep`, looks at its queues once more, and only then waits; a sender
/// queues its message, then looks at `asleep`. With a full fence on each
/// side, at least one of the two sees the other's write, so a message is
/// never left waiting for a processor that sleeps.
#[derive(Debug)]
pub struct Doorbell {
    asleep: AtomicBool,
    waker: Option<mio::Waker>,
}

impl Doorbell {
    /// A doorbell that wakes the epoll `waker` was registered with.
    pub fn new(waker: mio::Waker) -> Doorbell {
        Doorbell {
            asleep: AtomicBool::new(false),
            waker: Some(waker),
        }
    }

    /// A doorbell with nothing behind it, for a receiver that waits on
    /// the channel itself (tests that drive a processor by hand).
    pub fn silent() -> Doorbell {
        Doorbell {
            asleep: AtomicBool::new(false),
            waker: None,
        }
    }

    /// Wakes the processor if it sleeps (or is about to).
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::AcqRel) {
            if let Some(w) = &self.waker {
                // A failed eventfd write leaves the processor to its next
                // timer; nothing better can be done from here.
                let _ = w.wake();
            }
        }
    }

    /// The processor is about to sleep: after this, look at every queue
    /// once more before waiting.
    pub fn going_to_sleep(&self) {
        self.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The processor is awake (woken, or it found work before sleeping).
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::Relaxed);
    }
}

/// The bytes a processor's queue holds, against a bound.
///
/// A queue bounded by count alone holds up to its depth in 64 KiB
/// buffers when large segments travel in place (8,192 of them would be
/// half a gigabyte): this bounds it in bytes as well (issue 15). The
/// sender adds a message's [`ToProcessor::weight`] before queueing it
/// and the processor takes it off when it takes the message out.
#[derive(Debug)]
pub struct QueueBytes {
    held: AtomicUsize,
    limit: usize,
}

impl QueueBytes {
    /// A gauge that refuses messages past `limit` bytes.
    pub fn new(limit: usize) -> QueueBytes {
        QueueBytes {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` if they fit under the bound.
    fn take(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            // An empty queue takes any one message, so no message is too
            // large ever to pass.
            if held > 0 && held.saturating_add(bytes) > self.limit {
                return false;
            }
            match self.held.compare_exchange_weak(
                held,
                held + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// The processor took a message of `bytes` out of the queue.
    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes queued now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Why a message did not go on a processor's queue.
#[derive(Debug)]
pub enum QueueRefused<T> {
    /// As many messages as the queue's depth wait already.
    Full(T),
    /// The bytes waiting would pass the queue's bound in bytes.
    Bytes(T),
    /// The processor is gone.
    Disconnected(T),
}

/// A channel sender that rings the receiving processor's [`Doorbell`]
/// after each message: what the RX threads, the control server and the
/// distributor's back-ends hold for a processor.
#[derive(Debug)]
pub struct BellSender<T> {
    tx: Sender<T>,
    bell: Arc<Doorbell>,
    bytes: Arc<QueueBytes>,
}

impl<T> Clone for BellSender<T> {
    fn clone(&self) -> Self {
        BellSender {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
            bytes: self.bytes.clone(),
        }
    }
}

impl<T> BellSender<T> {
    /// Sends through `tx` and rings `bell`; no bound in bytes.
    pub fn new(tx: Sender<T>, bell: Arc<Doorbell>) -> BellSender<T> {
        BellSender::bounded(tx, bell, Arc::new(QueueBytes::new(usize::MAX)))
    }

    /// Sends through `tx`, rings `bell`, and keeps what waits under the
    /// bound of `bytes` (see [`BellSender::try_send_weighed`]).
    pub fn bounded(tx: Sender<T>, bell: Arc<Doorbell>, bytes: Arc<QueueBytes>) -> BellSender<T> {
        BellSender { tx, bell, bytes }
    }

    /// Queues `msg` without waiting; rings on success.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(msg)?;
        self.bell.ring();
        Ok(())
    }

    /// Wakes the receiver without a message (it looks at its queues, and
    /// at whatever else it watches, on its next turn).
    pub fn ring(&self) {
        self.bell.ring();
    }

    /// Queues `msg` without waiting, and rings only once `ring_at`
    /// messages or more wait: for messages the receiver may take at its
    /// own pace, on its next turn (a process pair's checkpoints), so that a
    /// busy sender does not wake a sleeping receiver for every one.
    pub fn try_send_lazy(&self, msg: T, ring_at: usize) -> Result<(), TrySendError<T>> {
        self.tx.try_send(msg)?;
        if self.tx.len() >= ring_at {
            self.bell.ring();
        }
        Ok(())
    }

    /// Queues `msg`, which holds `weight` bytes, without waiting, if the
    /// queue has room for one more message and for its bytes; rings on
    /// success. The receiver releases the same weight when it takes it.
    pub fn try_send_weighed(&self, msg: T, weight: usize) -> Result<(), QueueRefused<T>> {
        if !self.bytes.take(weight) {
            return Err(QueueRefused::Bytes(msg));
        }
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.bell.ring();
                Ok(())
            }
            Err(e) => {
                self.bytes.release(weight);
                Err(match e {
                    TrySendError::Full(m) => QueueRefused::Full(m),
                    TrySendError::Disconnected(m) => QueueRefused::Disconnected(m),
                })
            }
        }
    }

    /// The queue's bytes (held now, and the bound).
    pub fn bytes(&self) -> &Arc<QueueBytes> {
        &self.bytes
    }

    /// Queues `msg`, waiting for room in a bounded channel; rings on success.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.tx.send(msg)?;
        self.bell.ring();
        Ok(())
    }

    /// Queues `msg`, waiting at most `timeout` for room; rings on
    /// success. A waiting sender is woken as soon as a slot frees, ahead
    /// of senders that only try: what a processor uses to reach a busy
    /// peer whose queue the RX threads keep full.
    pub fn send_timeout(
        &self,
        msg: T,
        timeout: std::time::Duration,
    ) -> Result<(), crossbeam_channel::SendTimeoutError<T>> {
        self.tx.send_timeout(msg, timeout)?;
        self.bell.ring();
        Ok(())
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The channel's bound, if it has one.
    pub fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }
}

/// What the RX threads and the control server hold for each processor.
pub type ProcessorQueue = BellSender<ToProcessor>;

impl<T> From<Sender<T>> for BellSender<T> {
    /// A sender whose receiver waits on the channel itself (no doorbell).
    fn from(tx: Sender<T>) -> Self {
        BellSender::new(tx, Arc::new(Doorbell::silent()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_bounded_in_bytes_refuses_past_its_bound_and_takes_one_message_always() {
        let (tx, rx) = crossbeam_channel::bounded(100);
        let q = BellSender::bounded(
            tx,
            Arc::new(Doorbell::silent()),
            Arc::new(QueueBytes::new(1000)),
        );
        // One message larger than the bound passes when nothing waits.
        assert!(q.try_send_weighed(1u8, 5000).is_ok());
        assert!(matches!(
            q.try_send_weighed(2u8, 10),
            Err(QueueRefused::Bytes(2))
        ));
        assert_eq!(rx.try_recv().ok(), Some(1));
        q.bytes().release(5000);
        assert!(q.try_send_weighed(3u8, 600).is_ok());
        assert!(q.try_send_weighed(4u8, 400).is_ok());
        assert!(matches!(
            q.try_send_weighed(5u8, 1),
            Err(QueueRefused::Bytes(5))
        ));
        assert_eq!(q.bytes().held(), 1000);
        drop(rx);
        assert!(matches!(
            q.try_send_weighed(6u8, 0),
            Err(QueueRefused::Disconnected(6))
        ));
        assert_eq!(q.bytes().held(), 1000, "a refused message takes nothing");
    }
}
