//! Process pairs: which processor backs up which.
//!
//! NonStop pairs a primary process with a backup in another processor:
//! the primary checkpoints its state to the backup, which takes over when
//! the primary's processor fails. In vnic a pair is (primary processor,
//! port) → backup processor: `--pairs` backs every processor K up by
//! K+1 (mod N) on every port, and a config file's `[[listener]] backup =
//! K` pairs that listener's processor with K on its port. The processors
//! read it to know where to send their checkpoints; the RX threads read
//! it to know where a dead processor's connections went, so that their
//! next segment reaches the backup instead of being answered with RST.
//! It is fixed at start.

use std::collections::HashMap;

/// The process pairs of one vnic, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    /// Per processor: its backup on every port, unless `ports` says
    /// otherwise (`--pairs`).
    every_port: Vec<Option<usize>>,
    /// (primary, port) → backup: a config file's listeners.
    ports: HashMap<(usize, u16), usize>,
}

impl Pairs {
    /// No pairs: a failed processor's connections are reset.
    pub fn none() -> Pairs {
        Pairs::default()
    }

    /// `--pairs` on `processors` processors: K is backed up by K+1 (mod
    /// N), so every processor is one pair's primary and another's backup,
    /// as NonStop spreads pairs over its CPUs. None with one processor.
    pub fn ring(processors: usize) -> Pairs {
        let every_port = (0..processors)
            .map(|k| (processors > 1).then(|| (k + 1) % processors))
            .collect();
        Pairs {
            every_port,
            ports: HashMap::new(),
        }
    }

    /// Pairs `primary`'s connections to `port` with `backup` (a config
    /// file's listener with `backup = K`); a processor is never its own
    /// backup.
    pub fn set_port(&mut self, primary: usize, port: u16, backup: usize) {
        if primary != backup {
            self.ports.insert((primary, port), backup);
        }
    }

    /// The processor that keeps `primary`'s checkpoints of connections to
    /// `port`, if any.
    pub fn backup_of(&self, primary: usize, port: u16) -> Option<usize> {
        self.ports
            .get(&(primary, port))
            .copied()
            .or_else(|| self.every_port.get(primary).copied().flatten())
    }

    /// True when no processor has a backup.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.every_port.iter().all(Option::is_none)
    }

    /// Every pair, for status: (primary, port or None for every port,
    /// backup), by primary then port.
    pub fn list(&self) -> Vec<(usize, Option<u16>, usize)> {
        let mut v: Vec<(usize, Option<u16>, usize)> = self
            .every_port
            .iter()
            .enumerate()
            .filter_map(|(k, b)| b.map(|b| (k, None, b)))
            .chain(self.ports.iter().map(|(&(k, port), &b)| (k, Some(port), b)))
            .collect();
        v.sort();
        v
    }

    /// The processors `primary` sends checkpoints to (its backups on any
    /// port), each once.
    pub fn backups_of(&self, primary: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .list()
            .into_iter()
            .filter(|&(k, _, _)| k == primary)
            .map(|(_, _, b)| b)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_backs_each_processor_up_by_the_next() {
        let p = Pairs::ring(4);
        assert_eq!(p.backup_of(0, 80), Some(1));
        assert_eq!(p.backup_of(3, 7), Some(0));
        assert_eq!(p.backup_of(4, 80), None, "no such processor");
        assert!(Pairs::ring(1).is_empty());
        assert!(Pairs::none().is_empty());
        assert_eq!(p.backups_of(2), vec![3]);
    }

    #[test]
    fn a_listeners_backup_overrides_the_ring_on_its_port() {
        let mut p = Pairs::ring(4);
        p.set_port(1, 8080, 3);
        p.set_port(2, 8080, 2); // never its own backup
        assert_eq!(p.backup_of(1, 8080), Some(3));
        assert_eq!(p.backup_of(1, 80), Some(2));
        assert_eq!(p.backup_of(2, 8080), Some(3));
        assert_eq!(p.backups_of(1), vec![2, 3]);
        let mut only = Pairs::none();
        only.set_port(0, 80, 2);
        assert!(!only.is_empty());
        assert_eq!(only.list(), vec![(0, Some(80), 2)]);
        assert_eq!(only.backup_of(1, 80), None);
    }
}
