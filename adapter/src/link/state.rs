//! The links' state machine, sans-IO: what each link's health is, which
//! one is active, and what changes when an event comes in. It exists so
//! the rules of failover (who takes over, when a returning link stands by
//! or takes back, when nothing is left) are one pure function with its
//! own tests; [`super::Links`] applies its transitions to the devices.

/// Why a link is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The host side took the TAP down (netlink: IFF_UP or IFF_RUNNING off).
    HostDown,
    /// The TAP was deleted (netlink RTM_DELLINK, or reads say EBADFD).
    Deleted,
    /// A write or read on the link failed.
    IoFailed,
    /// `vnic ctl link NAME down`.
    Admin,
}

impl Cause {
    /// The word `vnic status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Cause::HostDown => "host-down",
            Cause::Deleted => "deleted",
            Cause::IoFailed => "io-error",
            Cause::Admin => "admin-down",
        }
    }
}

/// Something that happened to one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The host says the TAP is up and running (`true`) or not.
    Host(bool),
    /// The TAP is gone.
    Deleted,
    /// The TAP is there again and vnic attached to it anew.
    Reattached,
    /// A write or read failed.
    IoFailed,
    /// `vnic ctl link NAME up` (`true`) or `down`.
    Admin(bool),
}

/// What [`LinkTable::apply`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Link `link` stopped being usable, for `cause`.
    Failed {
        /// The link.
        link: usize,
        /// Why.
        cause: Cause,
    },
    /// Link `link` is usable again (a standby unless it is activated too).
    Returned {
        /// The link.
        link: usize,
    },
    /// Link `to` is the active link now; `from` was (None at start or
    /// after every link had failed).
    Activated {
        /// The link that was active.
        from: Option<usize>,
        /// The new active link.
        to: usize,
        /// True when `to` took back over from a working link (`--failback`).
        failback: bool,
    },
    /// No link is usable: nothing can be sent until one returns.
    NoneLeft,
}

/// The health of one link, as the four sources of news see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Health {
    host_down: bool,
    deleted: bool,
    io_failed: bool,
    admin_down: bool,
}

impl Health {
    /// The first reason the link cannot be used, if any.
    fn cause(&self) -> Option<Cause> {
        if self.admin_down {
            Some(Cause::Admin)
        } else if self.deleted {
            Some(Cause::Deleted)
        } else if self.host_down {
            Some(Cause::HostDown)
        } else if self.io_failed {
            Some(Cause::IoFailed)
        } else {
            None
        }
    }
}

/// Every link's health and the active one. Link 0 (the first `--tap`)
/// is the preferred link: active at start, and taking back over when it
/// returns if `failback` is set.
#[derive(Clone, Debug)]
pub struct LinkTable {
    health: Vec<Health>,
    active: Option<usize>,
    failback: bool,
}

impl LinkTable {
    /// `links` links, all usable, link 0 active.
    pub fn new(links: usize, failback: bool) -> LinkTable {
        LinkTable {
            health: vec![Health::default(); links],
            active: (links > 0).then_some(0),
            failback,
        }
    }

    /// The active link, if any is usable.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Why link `link` cannot be used (None: it can, or it does not exist).
    pub fn cause(&self, link: usize) -> Option<Cause> {
        self.health.get(link).and_then(Health::cause)
    }

    /// True if link `link` can carry frames.
    pub fn usable(&self, link: usize) -> bool {
        self.health.get(link).is_some_and(|h| h.cause().is_none())
    }

    /// True once the link's device is gone for good (deleted, not
    /// reattached).
    pub fn deleted(&self, link: usize) -> bool {
        self.health.get(link).is_some_and(|h| h.deleted)
    }

    /// Applies `event` on link `link` and returns what changed, in order.
    /// Unknown links change nothing.
    pub fn apply(&mut self, link: usize, event: Event) -> Vec<Transition> {
        let Some(h) = self.health.get_mut(link) else {
            return Vec::new();
        };
        let before = h.cause();
        match event {
            Event::Host(up) => {
                h.host_down = !up;
                // The host bringing the link back up clears an I/O failure
                // (a write refused while it was down).
                if up {
                    h.io_failed = false;
                }
            }
            Event::Deleted => h.deleted = true,
            Event::Reattached => {
                h.deleted = false;
                h.io_failed = false;
            }
            Event::IoFailed => h.io_failed = true,
            Event::Admin(up) => h.admin_down = !up,
        }
        let after = h.cause();
        let mut out = Vec::new();
        match (before, after) {
            (None, Some(cause)) => out.push(Transition::Failed { link, cause }),
            (Some(_), None) => out.push(Transition::Returned { link }),
            _ => {}
        }
        out.extend(self.choose());
        out
    }

    /// Makes the active link a usable one: the lowest usable link when
    /// the active one failed (or none was), link 0 on failback.
    fn choose(&mut self) -> Option<Transition> {
        let from = self.active;
        let first = (0..self.health.len()).find(|&i| self.usable(i));
        let to = match from {
            Some(a) if self.usable(a) => {
                if self.failback && first.is_some_and(|f| f < a) {
                    first
                } else {
                    return None;
                }
            }
            _ => first,
        };
        match to {
            Some(to) => {
                self.active = Some(to);
                Some(Transition::Activated {
                    from,
                    to,
                    failback: from.is_some_and(|a| self.usable(a)),
                })
            }
            None if from.is_some() => {
                self.active = None;
                Some(Transition::NoneLeft)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_link_failing_hands_over_to_the_standby() {
        let mut t = LinkTable::new(2, false);
        assert_eq!(t.active(), Some(0));
        let tr = t.apply(0, Event::Host(false));
        assert_eq!(
            tr,
            vec![
                Transition::Failed {
                    link: 0,
                    cause: Cause::HostDown
                },
                Transition::Activated {
                    from: Some(0),
                    to: 1,
                    failback: false
                }
            ]
        );
        assert_eq!(t.active(), Some(1));
        assert_eq!(t.cause(0), Some(Cause::HostDown));
    }

    #[test]
    fn returning_link_stands_by_without_failback() {
        let mut t = LinkTable::new(2, false);
        t.apply(0, Event::Host(false));
        let tr = t.apply(0, Event::Host(true));
        assert_eq!(tr, vec![Transition::Returned { link: 0 }]);
        assert_eq!(t.active(), Some(1));
    }

    #[test]
    fn returning_first_link_takes_back_over_with_failback() {
        let mut t = LinkTable::new(2, true);
        t.apply(0, Event::Admin(false));
        let tr = t.apply(0, Event::Admin(true));
        assert_eq!(
            tr,
            vec![
                Transition::Returned { link: 0 },
                Transition::Activated {
                    from: Some(1),
                    to: 0,
                    failback: true
                }
            ]
        );
    }

    #[test]
    fn standby_failing_changes_no_active_link() {
        let mut t = LinkTable::new(2, false);
        let tr = t.apply(1, Event::IoFailed);
        assert_eq!(
            tr,
            vec![Transition::Failed {
                link: 1,
                cause: Cause::IoFailed
            }]
        );
        assert_eq!(t.active(), Some(0));
    }

    #[test]
    fn every_link_failed_leaves_none_then_the_first_back_is_active() {
        let mut t = LinkTable::new(2, false);
        t.apply(0, Event::Deleted);
        let tr = t.apply(1, Event::Host(false));
        assert_eq!(tr.last(), Some(&Transition::NoneLeft));
        assert_eq!(t.active(), None);
        let tr = t.apply(1, Event::Host(true));
        assert_eq!(
            tr,
            vec![
                Transition::Returned { link: 1 },
                Transition::Activated {
                    from: None,
                    to: 1,
                    failback: false
                }
            ]
        );
        assert!(t.deleted(0));
        assert!(!t.usable(0), "a deleted TAP is not usable until reattached");
        t.apply(0, Event::Reattached);
        assert!(t.usable(0));
    }

    #[test]
    fn a_second_cause_keeps_the_link_failed_until_both_clear() {
        let mut t = LinkTable::new(2, false);
        t.apply(0, Event::Admin(false));
        assert!(t.apply(0, Event::Host(false)).is_empty());
        assert!(t.apply(0, Event::Admin(true)).is_empty(), "host still down");
        assert_eq!(t.cause(0), Some(Cause::HostDown));
        assert_eq!(
            t.apply(0, Event::Host(true)),
            vec![Transition::Returned { link: 0 }]
        );
    }

    #[test]
    fn io_failure_clears_when_the_host_says_up_again() {
        let mut t = LinkTable::new(2, false);
        t.apply(0, Event::IoFailed);
        assert_eq!(t.active(), Some(1));
        assert_eq!(
            t.apply(0, Event::Host(true)),
            vec![Transition::Returned { link: 0 }]
        );
        assert!(t.apply(7, Event::IoFailed).is_empty(), "unknown link");
    }
}
