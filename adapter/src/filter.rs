//! The distribution filter: which processor gets a new connection.
//!
//! Every rule lives here. A port is served by the listeners that registered
//! it, in registration order ("the line"). With round-robin filtering the
//! adapter gives the 1st new connection of a port to the 1st live listener
//! in line, the 2nd to the 2nd, and wraps around; a listener whose
//! processor is down is skipped and, when it comes back, rejoins at its own
//! place in line. Without filtering (`none`, the NonStop default) the first
//! listener to register a port has exclusive use of it.

use std::collections::HashMap;

/// How new connections of a shared port are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Strict cyclic order over the live listeners of the port.
    RoundRobin,
    /// The first registered live listener takes every connection.
    None,
}

impl FilterMode {
    /// Parses the name used on the command line.
    pub fn from_name(s: &str) -> Option<FilterMode> {
        match s {
            "round-robin" => Some(FilterMode::RoundRobin),
            "none" => Some(FilterMode::None),
            _ => None,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FilterMode::RoundRobin => "round-robin",
            FilterMode::None => "none",
        }
    }
}

/// A registration the filter refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// One listening process per processor per port.
    #[error("port {port} is already served on processor {processor}")]
    DuplicateListener {
        /// The port.
        port: u16,
        /// The processor that has it already.
        processor: usize,
    },
    /// The processor number is beyond the adapter's processors.
    #[error("processor {processor} does not exist (processors: {count})")]
    NoSuchProcessor {
        /// The processor asked for.
        processor: usize,
        /// How many there are.
        count: usize,
    },
}

/// Where the filter placed a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The processor that gets the connection.
    pub processor: usize,
    /// The listener's place in the port's line (0-based).
    pub slot: usize,
}

#[derive(Debug, Default, Clone)]
struct PortLine {
    /// Processor of each listener, in registration order.
    listeners: Vec<usize>,
    /// The place in line that gets the next new connection.
    next: usize,
}

/// The distribution filter of one adapter.
#[derive(Debug, Clone)]
pub struct Filter {
    mode: FilterMode,
    up: Vec<bool>,
    ports: HashMap<u16, PortLine>,
}

impl Filter {
    /// A filter for `processors` processors, all up, no port served yet.
    pub fn new(mode: FilterMode, processors: usize) -> Filter {
        Filter {
            mode,
            up: vec![true; processors],
            ports: HashMap::new(),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> FilterMode {
        self.mode
    }

    /// Changes the mode; the lines and their positions are kept.
    pub fn set_mode(&mut self, mode: FilterMode) {
        self.mode = mode;
    }

    /// Registers a listener of `port` on `processor` at the end of the line.
    pub fn register(&mut self, port: u16, processor: usize) -> Result<(), FilterError> {
        if processor >= self.up.len() {
            return Err(FilterError::NoSuchProcessor {
                processor,
                count: self.up.len(),
            });
        }
        let line = self.ports.entry(port).or_default();
        if line.listeners.contains(&processor) {
            return Err(FilterError::DuplicateListener { port, processor });
        }
        line.listeners.push(processor);
        Ok(())
    }

    /// True if some listener registered `port`.
    pub fn serves(&self, port: u16) -> bool {
        self.ports
            .get(&port)
            .is_some_and(|l| !l.listeners.is_empty())
    }

    /// Marks a processor up or down; a down processor gets no new connections.
    pub fn set_up(&mut self, processor: usize, up: bool) {
        if let Some(u) = self.up.get_mut(processor) {
            *u = up;
        }
    }

    /// True if `processor` exists and is up.
    pub fn is_up(&self, processor: usize) -> bool {
        self.up.get(processor).copied().unwrap_or(false)
    }

    /// Chooses the processor for a new connection to `port` and advances
    /// the line. None if no live listener serves the port.
    pub fn pick(&mut self, port: u16) -> Option<Pick> {
        let up = &self.up;
        let line = self.ports.get_mut(&port)?;
        let n = line.listeners.len();
        let is_up = |slot: usize| up.get(line.listeners[slot]).copied().unwrap_or(false);
        match self.mode {
            FilterMode::None => (0..n).find(|&s| is_up(s)).map(|slot| Pick {
                processor: line.listeners[slot],
                slot,
            }),
            FilterMode::RoundRobin => {
                let start = line.next % n.max(1);
                let slot = (0..n).map(|i| (start + i) % n).find(|&s| is_up(s))?;
                line.next = (slot + 1) % n;
                Some(Pick {
                    processor: line.listeners[slot],
                    slot,
                })
            }
        }
    }

    /// The processors serving `port`, in line order.
    pub fn listeners(&self, port: u16) -> &[usize] {
        self.ports
            .get(&port)
            .map(|l| l.listeners.as_slice())
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four(mode: FilterMode) -> Filter {
        let mut f = Filter::new(mode, 4);
        for p in 0..4 {
            f.register(80, p).expect("register");
        }
        f
    }

    fn picks(f: &mut Filter, port: u16, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| f.pick(port).map(|p| p.processor).unwrap_or(usize::MAX))
            .collect()
    }

    #[test]
    fn round_robin_cycles_over_four_and_wraps() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 10), vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn round_robin_slot_is_place_in_line() {
        let mut f = Filter::new(FilterMode::RoundRobin, 4);
        f.register(80, 2).expect("register");
        f.register(80, 0).expect("register");
        assert_eq!(
            f.pick(80),
            Some(Pick {
                processor: 2,
                slot: 0
            })
        );
        assert_eq!(
            f.pick(80),
            Some(Pick {
                processor: 0,
                slot: 1
            })
        );
        assert_eq!(
            f.pick(80),
            Some(Pick {
                processor: 2,
                slot: 0
            })
        );
    }

    #[test]
    fn each_port_has_its_own_line() {
        let mut f = four(FilterMode::RoundRobin);
        for p in 0..4 {
            f.register(7, p).expect("register");
        }
        assert_eq!(picks(&mut f, 80, 2), vec![0, 1]);
        assert_eq!(picks(&mut f, 7, 1), vec![0]);
        assert_eq!(picks(&mut f, 80, 1), vec![2]);
    }

    #[test]
    fn none_gives_everything_to_first_registered() {
        let mut f = Filter::new(FilterMode::None, 4);
        for p in [3, 1, 0, 2] {
            f.register(80, p).expect("register");
        }
        assert_eq!(picks(&mut f, 80, 8), vec![3; 8]);
    }

    #[test]
    fn down_processor_is_skipped_and_rejoins_in_place() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 1), vec![0]);
        f.set_up(1, false);
        assert_eq!(picks(&mut f, 80, 6), vec![2, 3, 0, 2, 3, 0]);
        f.set_up(1, true);
        assert_eq!(picks(&mut f, 80, 4), vec![1, 2, 3, 0]);
    }

    #[test]
    fn none_falls_to_next_live_listener() {
        let mut f = four(FilterMode::None);
        f.set_up(0, false);
        assert_eq!(picks(&mut f, 80, 3), vec![1, 1, 1]);
    }

    #[test]
    fn unserved_port_and_all_down_pick_nothing() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(f.pick(81), None);
        assert!(!f.serves(81));
        for p in 0..4 {
            f.set_up(p, false);
        }
        assert_eq!(f.pick(80), None);
    }

    #[test]
    fn duplicate_listener_refused() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(
            f.register(80, 2),
            Err(FilterError::DuplicateListener {
                port: 80,
                processor: 2
            })
        );
        assert_eq!(
            f.register(80, 9),
            Err(FilterError::NoSuchProcessor {
                processor: 9,
                count: 4
            })
        );
    }

    #[test]
    fn mode_switch_at_run_time() {
        let mut f = four(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 2), vec![0, 1]);
        f.set_mode(FilterMode::None);
        assert_eq!(picks(&mut f, 80, 2), vec![0, 0]);
        f.set_mode(FilterMode::RoundRobin);
        assert_eq!(picks(&mut f, 80, 2), vec![2, 3]);
    }
}
