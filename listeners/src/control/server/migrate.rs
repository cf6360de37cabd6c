//! `vnic ctl connection move` and `vnic ctl processor K drain`: live
//! migration asked from the control socket (see `processor/migrate.rs`
//! for how a connection moves).

use super::*;
use crate::processor::{DrainReport, Migration, MoveResult};
use std::net::SocketAddr;
use vnic_stack::FourTuple;

/// How long a move waits for the processors' answers.
const MOVE_WAIT: Duration = Duration::from_secs(5);

/// How long a drain waits for its processor to be done (the processor
/// gives up on what it cannot move after ten seconds).
const DRAIN_WAIT: Duration = Duration::from_secs(20);

/// Parses `ADDR:PORT-ADDR:PORT` (either end first; IPv6 as `[ADDR]:PORT`)
/// into the two 4-tuples it may name.
pub fn parse_connection(text: &str) -> Result<[FourTuple; 2], String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("connection {text:?}: write ADDR:PORT-ADDR:PORT"))?;
    let parse = |s: &str| {
        s.trim().parse::<SocketAddr>().map_err(|_| {
            format!("connection {text:?}: {s:?} is not ADDR:PORT ([ADDR]:PORT for IPv6)")
        })
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a.is_ipv4() != b.is_ipv4() {
        return Err(format!("connection {text:?}: one end IPv4, the other IPv6"));
    }
    Ok([
        FourTuple {
            local: a,
            remote: b,
        },
        FourTuple {
            local: b,
            remote: a,
        },
    ])
}

impl Runtime {
    /// Why processor `id` cannot take part in a move, if it cannot.
    fn unable(&self, id: usize) -> Option<String> {
        let Some(p) = self.registry.processors.get(id) else {
            return Some(format!(
                "processor {id} does not exist (processors: 0..{})",
                self.queues.len().saturating_sub(1)
            ));
        };
        if let Some(why) = p.failure.lock().clone() {
            return Some(format!("processor {id} has failed: {why}"));
        }
        if p.down.load(Ordering::Relaxed) {
            return Some(format!("processor {id} is down"));
        }
        None
    }

    /// `connection-move`: the processor that holds `connection` moves it
    /// to `to`.
    pub(super) fn move_connection(&self, connection: &str, to: usize) -> Response {
        let tuples = match parse_connection(connection) {
            Ok(t) => t,
            Err(e) => return Response::error(e),
        };
        if let Some(why) = self.unable(to) {
            return Response::error(why);
        }
        for tuple in tuples {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut asked = 0;
            for q in &self.queues {
                let m = Migration::One {
                    tuple,
                    to,
                    answer: tx.clone(),
                };
                if q.send(ToProcessor::Migrate(Box::new(m))).is_ok() {
                    asked += 1;
                }
            }
            drop(tx);
            // Every processor's answer, not the first: the connection may
            // reach `to` before `to` reads the request, which it then
            // answers with `AlreadyThere`, perhaps before the holder's
            // `Moved` arrives (taken for a refusal, the move that did
            // happen would be asked again, the other way).
            let deadline = Instant::now() + MOVE_WAIT;
            let mut answers = Vec::with_capacity(asked);
            for _ in 0..asked {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(r) => answers.push(r),
                    Err(_) => return Response::error("the processors did not answer in time"),
                }
            }
            let moved = |what: String| Response {
                notes: vec![format!("{} > {} {what}", tuple.remote, tuple.local)],
                ..Response::ok()
            };
            if answers.contains(&MoveResult::Moved) {
                return moved(format!("moved to processor {to}"));
            }
            if answers.contains(&MoveResult::Reset) {
                return Response::error(format!(
                    "{} > {}: its app cannot move (no checkpoint): the connection was reset",
                    tuple.remote, tuple.local
                ));
            }
            if answers.contains(&MoveResult::AlreadyThere) {
                return moved(format!("is on processor {to} already"));
            }
            if let Some(MoveResult::Busy(why)) =
                answers.iter().find(|r| matches!(r, MoveResult::Busy(_)))
            {
                return Response::error(format!(
                    "{} > {} not moved now: {why}; try again",
                    tuple.remote, tuple.local
                ));
            }
        }
        Response::error(format!("no processor holds connection {connection}"))
    }

    /// `processor K drain`: out of the rotation, every connection moved
    /// to the other live processors in turn, then down.
    pub(super) fn drain_processor(&self, id: usize) -> Response {
        if let Some(why) = self.unable(id) {
            return Response::error(why);
        }
        let targets: Vec<usize> = (0..self.queues.len())
            .filter(|&k| k != id && self.unable(k).is_none())
            .collect();
        if targets.is_empty() {
            return Response::error(format!(
                "no other processor is up to take processor {id}'s connections"
            ));
        }
        // Out of the rotation first, so nothing new lands on it.
        let takeovers = self.filter.lock().set_up_report(id, false);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let m = Migration::Drain {
            targets,
            answer: tx,
        };
        let sent = self
            .queues
            .get(id)
            .is_some_and(|q| q.send(ToProcessor::Migrate(Box::new(m))).is_ok());
        if !sent {
            return Response::error(format!("processor {id} has stopped"));
        }
        let DrainReport {
            moved,
            reset,
            time_wait,
        } = match rx.recv_timeout(DRAIN_WAIT) {
            Ok(r) => r,
            Err(_) => return Response::error(format!("processor {id} did not finish its drain")),
        };
        let mut notes: Vec<String> = takeovers.iter().map(|t| t.to_string()).collect();
        notes.push(format!(
            "processor {id} drained: {moved} connections moved, {reset} reset; it is down"
        ));
        if time_wait > 0 {
            notes.push(format!(
                "processor {id}'s {time_wait} connections in TIME-WAIT moved with them"
            ));
        }
        Response {
            notes,
            ..Response::ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_named_by_its_two_ends_in_either_order() {
        let [a, b] = parse_connection("10.0.0.2:80-10.0.0.1:40000").expect("v4");
        assert_eq!(a.local, "10.0.0.2:80".parse().expect("addr"));
        assert_eq!(b.local, "10.0.0.1:40000".parse().expect("addr"));
        assert_eq!(a.remote, b.local);
        let [c, _] = parse_connection("[fd00::2]:80-[fd00::1]:5000").expect("v6");
        assert_eq!(c.local.port(), 80);
        for bad in [
            "10.0.0.2:80",
            "10.0.0.2-10.0.0.1:5",
            "10.0.0.2:80-[fd00::1]:5",
            "x-y",
        ] {
            let e = parse_connection(bad).expect_err(bad);
            assert!(e.starts_with("connection "), "{e}");
            assert!(!e.contains('\n'));
        }
    }
}
