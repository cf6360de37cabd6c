//! How a stamped trace's processors took their segments: the turns its
//! frames are stamped with ([`turns`]) and, for each segment, when the
//! batch that took it ran — exactly as the trace's batch records say
//! ([`recorded`]), or, for a trace without them (written by an older
//! vnic), guessed from the stamps and the arrival times ([`plan`]).

use super::run::{processor_of, queued_for};
use super::trace::Trace;
use std::time::Duration;
use vnic_adapter::trace::turn::{parse_batches, parse_turn};
use vnic_adapter::trace::Direction;

/// Longest a processor is taken to need to wake for a segment: a stamped
/// turn later than this after its last segment came was a timer's, the
/// segments went in batches that sent nothing (a loaded machine delays a
/// wake by a millisecond or so; timers that send are 40 ms and more
/// away, a delayed ACK's, or the RACK and RTO timers').
const IDLE_WAKE: u64 = 5_000_000;

/// Segments that came this close together woke a processor once: they
/// went in one batch.
const SAME_WAKE: u64 = 5_000;

/// One processor turn a trace shows: where (the index of its first frame
/// in the trace), when (ns since the replay's zero) and after how many
/// segments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Turn {
    pub(crate) at: usize,
    pub(crate) t: u64,
    pub(crate) taken: u64,
    /// Batches taken by then (`b=N`; older traces have none).
    pub(crate) batches: Option<u64>,
    /// When the trace recorded the turn's last frame (ns since 1970):
    /// the turn had not ended before.
    pub(crate) ended: Duration,
}

/// The turns each processor's frames are stamped with, in trace order.
pub(crate) fn turns(trace: &Trace, n: usize) -> Vec<Vec<Turn>> {
    let mut out: Vec<Vec<Turn>> = vec![Vec::new(); n];
    for (i, f) in trace.frames.iter().enumerate() {
        if f.dir != Direction::Out {
            continue;
        }
        let (Some(k), Some((t, taken))) = (processor_of(&f.comment), parse_turn(&f.comment)) else {
            continue;
        };
        if let Some(v) = out.get_mut(k) {
            match v.last_mut() {
                Some(l) if (l.t, l.taken) == (t, taken) => l.ended = f.at,
                _ => v.push(Turn {
                    at: i,
                    t,
                    taken,
                    batches: parse_batches(&f.comment),
                    ended: f.at,
                }),
            }
        }
    }
    out
}

/// When each processor took each of its segments (ns since the trace's
/// zero; processor K's Jth segment at `[K][J-1]`), from the turn stamps:
/// the batches a stamped turn's `b=` count says came since the last one
/// without sending anything took, first, what arrived while the last
/// stamped turn still ran (until its frames were all recorded: it
/// waited, and went in one batch), then one segment each at its arrival
/// (an idle processor wakes for each), with those that came within
/// [`SAME_WAKE`] of it; the stamped turn took the rest at its time (none
/// when it came [`IDLE_WAKE`] after them: a timer's turn). Segments no stamped turn took are taken at
/// their arrival.
pub(crate) fn plan(trace: &Trace, turns: &[Vec<Turn>], zero: Duration) -> Vec<Vec<u64>> {
    let n = turns.len();
    let mut arrivals: Vec<Vec<u64>> = vec![Vec::new(); n];
    for f in &trace.frames {
        if let Some(v) = queued_for(f).and_then(|k| arrivals.get_mut(k)) {
            v.push(u64::try_from(f.at.saturating_sub(zero).as_nanos()).unwrap_or(u64::MAX));
        }
    }
    let mut out = arrivals.clone();
    for k in 0..n {
        let (mut taken, mut batches, mut open) = (0u64, 0u64, false);
        // When the processor's last stamped turn ended: what came before
        // waited in its queue for the next batch.
        let mut busy_until = 0u64;
        for (i, turn) in turns[k].iter().enumerate() {
            let want = turn.taken.saturating_sub(taken);
            let goes_on = turns[k]
                .get(i + 1)
                .is_some_and(|nt| nt.t == turn.t && nt.taken > turn.taken);
            if want > 0 {
                let idx = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
                let arrival = |x: u64| arrivals[k].get(idx(x)).copied().unwrap_or(turn.t);
                let new_batches = match (open, turn.batches) {
                    (false, Some(b)) => b.saturating_sub(batches),
                    _ => 1,
                };
                // A turn long after its segments came took none of them:
                // an idle processor takes a segment at once, so they went
                // in batches that sent nothing and this is a timer's turn.
                let timers = !open
                    && new_batches >= 1
                    && new_batches <= want
                    && arrival(turn.taken - 1).saturating_add(IDLE_WAKE) < turn.t;
                let silent = if timers {
                    new_batches
                } else {
                    new_batches.saturating_sub(1).min(want - 1)
                };
                let idx = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
                let arrival = |x: u64| arrivals[k].get(idx(x)).copied().unwrap_or(turn.t);
                let mut j = taken;
                let mut left = silent;
                let waited = (taken..turn.taken - 1)
                    .take_while(|x| arrival(*x) <= busy_until)
                    .count() as u64;
                if left > 0 && waited > 0 {
                    let at = arrival(j + waited - 1).max(busy_until);
                    for x in j..j + waited {
                        if let Some(o) = out[k].get_mut(idx(x)) {
                            *o = at;
                        }
                    }
                    j += waited;
                    left -= 1;
                }
                while left > 0 && j + 1 < turn.taken {
                    // What came with it (within a wake's time) went too,
                    // leaving one for each batch still to come.
                    let keep = left - 1 + u64::from(!timers);
                    let mut end = j + 1;
                    while end + keep < turn.taken && arrival(end) <= arrival(j) + SAME_WAKE {
                        end += 1;
                    }
                    let at = arrival(end - 1);
                    for x in j..end {
                        if let Some(o) = out[k].get_mut(idx(x)) {
                            *o = at;
                        }
                    }
                    j = end;
                    left -= 1;
                }
                if timers && left > 0 {
                    let at = arrival(turn.taken - 1);
                    for x in j..turn.taken {
                        if let Some(o) = out[k].get_mut(idx(x)) {
                            *o = at;
                        }
                    }
                    j = turn.taken;
                }
                for x in j..turn.taken {
                    if let Some(o) = out[k].get_mut(usize::try_from(x).unwrap_or(usize::MAX)) {
                        *o = turn.t;
                    }
                }
                batches += silent + u64::from(!open && !timers);
                taken = turn.taken;
            }
            open = goes_on;
            busy_until = u64::try_from(turn.ended.saturating_sub(zero).as_nanos()).unwrap_or(0);
        }
    }
    out
}

/// When each processor took each of its segments, from the trace's batch
/// records (processor K's Jth segment at `[K][J-1]`, ns since the trace's
/// zero: the clock reading of the batch that took it), for each
/// processor whose records are whole: numbered 1, 2, 3... without a gap,
/// each taking at least one segment more. None for a processor without
/// them (an older trace, records lost to a full trace queue, a file
/// rotated since the processor began).
pub(crate) fn recorded(trace: &Trace, n: usize) -> Vec<Option<Vec<u64>>> {
    let mut out: Vec<Option<Vec<u64>>> = vec![Some(Vec::new()); n];
    let mut last = vec![0u64; n];
    for b in &trace.batches {
        let (Some(slot), Some(last)) = (out.get_mut(b.cpu), last.get_mut(b.cpu)) else {
            continue;
        };
        let Some(times) = slot.as_mut() else {
            continue;
        };
        let taken = times.len() as u64;
        if b.batch != *last + 1 || b.taken <= taken {
            *slot = None;
            continue;
        }
        *last = b.batch;
        let more = usize::try_from(b.taken - taken).unwrap_or(usize::MAX);
        times.extend(std::iter::repeat_n(b.t, more));
    }
    // No records at all: the processor took nothing, or did not record.
    out.into_iter()
        .map(|o| o.filter(|t| !t.is_empty()))
        .collect()
}

/// When each processor took each of its segments: as its batch records
/// say where they are whole ([`recorded`]), else as [`plan`] guesses;
/// and, per processor, whether recorded.
pub(crate) fn when_taken(
    trace: &Trace,
    turns: &[Vec<Turn>],
    zero: Duration,
) -> (Vec<Vec<u64>>, Vec<bool>) {
    let mut plan = plan(trace, turns, zero);
    let mut exact = vec![false; plan.len()];
    for (k, r) in recorded(trace, plan.len()).into_iter().enumerate() {
        if let Some(mut r) = r {
            r.extend(plan[k].get(r.len()..).unwrap_or_default());
            plan[k] = r;
            exact[k] = true;
        }
    }
    (plan, exact)
}
