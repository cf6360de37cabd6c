//! TIME-WAIT kept as a record of a few dozen bytes instead of a whole
//! connection (RFC 9293 3.10.7.4, RFC 1337, RFC 6191).
//!
//! A connection that closed first waits out 2 MSL in TIME-WAIT, and a
//! server answering short connections holds one per connection of the
//! last minute: with a whole [`Connection`] each (1.6 KB of state, its
//! app, a slot in the processor's table sized for it, a timer) they
//! outnumber the live ones a thousand to one, and every lookup walks a
//! table of them. All TIME-WAIT still does is answer: re-ACK a
//! retransmitted FIN (and restart the wait), ACK what is out of window or
//! too old (PAWS), ignore an RST (RFC 1337), challenge an in-window SYN,
//! and let a SYN that RFC 6191 allows open a new incarnation. A
//! [`TimeWait`] keeps exactly what those answers read — sequence numbers,
//! the window its ACKs carry, the timestamp state — and gives the same
//! answers, segment for segment, as the connection it came from (the
//! differential tests in stack/tests/time_wait.rs feed both the same
//! segments and compare every reply).

use std::time::{Duration, Instant};

use super::options::{Negotiated, Paws};
use super::rcv::{acceptable, window_field};
use super::replies::AckReplies;
use super::{Connection, Disposition, State};
use crate::ratelimit::ReplyLimiter;
use crate::seq::SeqNumber;
use crate::wire::{Control, Segment, TcpOptions};

/// A connection in TIME-WAIT, reduced to what that state reads.
///
/// It exists so a processor can drop the [`Connection`] (and its app)
/// once the connection is done and still answer its peer for 2 MSL, at a
/// tenth of the memory ([`Connection::time_wait`]).
#[derive(Clone, Debug)]
pub struct TimeWait {
    local_port: u16,
    remote_port: u16,
    /// SND.NXT: past our FIN (everything of ours was acknowledged).
    snd_nxt: SeqNumber,
    /// RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND is challenged.
    snd_max_wnd: usize,
    /// RCV.NXT: past the peer's FIN.
    rcv_nxt: SeqNumber,
    /// Right edge of the last window advertised.
    adv: SeqNumber,
    /// RCV.NXT as of the last ACK sent (RFC 7323 4.3 reads it).
    last_ack_sent: SeqNumber,
    /// The (empty) receive buffer's free space and size.
    buf_window: usize,
    buf_capacity: usize,
    our_mss: usize,
    wscale: u8,
    opt: Negotiated,
    replies: AckReplies,
    challenge_limit: u32,
    /// The configuration allows timestamps (RFC 6191 reads the SYN's).
    timestamps: bool,
    /// An ACK is due.
    ack_pending: bool,
    /// 2 MSL, restarted by a retransmitted FIN.
    linger: Duration,
    expires: Instant,
}

impl Connection {
    /// The connection as a TIME-WAIT record, if it is in TIME-WAIT (with
    /// nothing left to send: poll it empty first). The record answers as
    /// the connection would until [`TimeWait::expires`].
    pub fn time_wait(&self) -> Option<TimeWait> {
        if self.state != State::TimeWait || self.rcv.ack_pending {
            return None;
        }
        let expires = self.timers.deadline(crate::Timer::TimeWait)?;
        Some(TimeWait {
            local_port: self.tuple.local.port(),
            remote_port: self.tuple.remote.port(),
            snd_nxt: self.snd.nxt,
            snd_max_wnd: self.snd.max_wnd,
            rcv_nxt: self.rcv.nxt,
            adv: self.rcv.adv,
            last_ack_sent: self.rcv.last_ack_sent,
            buf_window: self.rcv.buf.window(),
            buf_capacity: self.rcv.buf.capacity(),
            our_mss: self.rcv.our_mss,
            wscale: self.rcv.wscale,
            opt: self.opt.clone(),
            replies: AckReplies {
                invalid_ack: false,
                ..self.replies.acks
            },
            challenge_limit: self.cfg.challenge_ack_limit,
            timestamps: self.cfg.timestamps,
            ack_pending: false,
            linger: self.cfg.time_wait,
            expires,
        })
    }
}

impl TimeWait {
    /// When the wait ends and the record may go.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Handles one segment as the connection in TIME-WAIT would
    /// ([`Connection::on_segment_limited`]): a reply it earns is taken
    /// with [`TimeWait::poll_transmit`]; [`Disposition::Reincarnate`]
    /// means the caller drops the record and accepts the SYN anew.
    pub fn on_segment(
        &mut self,
        now: Instant,
        seg: &Segment,
        limiter: &mut dyn ReplyLimiter,
    ) -> Disposition {
        if seg.control == Control::Syn && seg.ack.is_none() {
            let syn_ts = seg
                .options
                .timestamps
                .map(|t| t.0)
                .filter(|_| self.timestamps);
            if self.opt.syn_may_reincarnate(syn_ts, seg.seq, self.rcv_nxt) {
                return Disposition::Reincarnate;
            }
        } else {
            self.on_synchronized(now, seg);
        }
        let settled = self.replies.settle(now, limiter, self.ack_pending, true);
        self.ack_pending |= settled.ack;
        Disposition::Handled
    }

    /// RFC 9293 3.10.7.4 for TIME-WAIT, in the connection's order: PAWS,
    /// sequence number, RST, SYN, ACK; text and FIN are not taken.
    fn on_synchronized(&mut self, now: Instant, seg: &Segment) {
        let tsval = self.opt.tsval(seg.options.timestamps);
        if let (Some(t), true) = (tsval, seg.control != Control::Rst) {
            if self.opt.paws(now, t) == Paws::Reject {
                self.replies.invalid_ack = true;
                return;
            }
        }
        let len = seg.seg_len();
        let wnd = self.adv.distance_from(self.rcv_nxt).min(self.buf_window);
        let in_window =
            acceptable(seg.seq, len, self.rcv_nxt, wnd) || (wnd == 0 && seg.seq == self.rcv_nxt);
        if !in_window {
            if seg.control != Control::Rst {
                let duplicate =
                    seg.seq + len <= self.rcv_nxt && seg.seq >= self.rcv_nxt - self.buf_capacity;
                if duplicate {
                    self.ack_pending = true;
                } else {
                    self.replies.invalid_ack = true;
                }
            }
            if seg.control == Control::Fin {
                // A retransmitted FIN: re-ACK and restart 2 MSL.
                self.expires = now + self.linger;
            }
            return;
        }
        match seg.control {
            // RFC 1337: an RST does not cut TIME-WAIT short.
            Control::Rst => return,
            Control::Syn => {
                self.replies.challenge(now, self.challenge_limit);
                return;
            }
            _ => {}
        }
        let Some(ack) = seg.ack else {
            return;
        };
        if ack > self.snd_nxt || ack < self.snd_nxt - self.snd_max_wnd {
            self.replies.challenge(now, self.challenge_limit);
            return;
        }
        if let Some(tsval) = tsval {
            self.opt
                .update_recent(now, tsval, seg.seq, self.last_ack_sent);
        }
    }

    /// The ACK the last segment earned, if any: what the connection would
    /// have sent (same sequence numbers, window and timestamps).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        if !std::mem::take(&mut self.ack_pending) {
            return None;
        }
        let sws = (self.buf_capacity / 2).min(self.our_mss).max(1);
        let window = window_field(
            self.buf_window,
            self.adv.distance_from(self.rcv_nxt),
            sws,
            self.wscale,
        );
        let edge = self.rcv_nxt + ((window as usize) << self.wscale);
        self.adv = self.adv.max(edge);
        self.last_ack_sent = self.rcv_nxt;
        let timestamps = self
            .opt
            .ts_ok
            .then(|| (self.opt.ts_val(now), self.opt.ts_recent));
        Some(Segment {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq: self.snd_nxt,
            ack: Some(self.rcv_nxt),
            control: Control::None,
            psh: false,
            window,
            options: TcpOptions {
                timestamps,
                ..TcpOptions::default()
            },
            payload: crate::Payload::new(),
        })
    }

    /// Bytes of memory the record holds (it owns no buffer).
    pub fn memory(&self) -> usize {
        std::mem::size_of::<TimeWait>()
    }
}
