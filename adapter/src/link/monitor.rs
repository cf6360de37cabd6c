//! The link monitor thread: hears the kernel's link news ([`netlink`]),
//! turns it into events for [`Links`], reattaches a TAP that was deleted
//! and made again, and sends the announcements a takeover (or a returning
//! link's reserved address) calls for, on [`announce::SCHEDULE`]. It
//! sleeps in `poll` on the netlink socket and an eventfd that
//! [`Links`] rings when something must be announced, so a failure the
//! kernel reports is acted on within milliseconds.

use super::netlink::{self, LinkNews, LinkWatch};
use super::state::Event;
use super::{announce, Links, Notice};
use crate::tap::TapDevice;
use crate::trace::{Direction, Tracer};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Announcements still to send for one notice.
struct Pending {
    notice: Notice,
    start: Instant,
    /// Index into [`announce::SCHEDULE`] of the next round.
    step: usize,
}

impl Pending {
    fn due(&self) -> Instant {
        self.start + announce::SCHEDULE[self.step.min(announce::SCHEDULE.len() - 1)]
    }
}

/// Starts the monitor of `links`: it runs until `halt` is set. Link
/// state the kernel reports at start is taken in first (a TAP down
/// already is a failed link from the start).
pub fn spawn(
    links: Arc<Links>,
    tracer: Arc<Tracer>,
    halt: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let watch = LinkWatch::open()?;
    // SAFETY: plain flags; a fresh fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let bell = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
    {
        let bell = bell.clone();
        links.set_waker(Arc::new(move || {
            let one = 1u64;
            // SAFETY: an eventfd write takes 8 bytes from `one`.
            unsafe { libc::write(bell.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }));
    }
    resync(&links);
    std::thread::Builder::new()
        .name("vnic-links".into())
        .spawn(move || run(&links, &tracer, &halt, &watch, &bell))
}

/// Takes in each link's state as the kernel has it now (at start, and
/// after news was lost).
fn resync(links: &Links) {
    for (i, l) in links.links().iter().enumerate() {
        match netlink::is_up(l.name()) {
            Some(up) => links.report(i, Event::Host(up)),
            None => links.report(i, Event::Deleted),
        }
    }
}

fn run(links: &Links, tracer: &Tracer, halt: &AtomicBool, watch: &LinkWatch, bell: &OwnedFd) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut news = Vec::new();
    while !halt.load(Ordering::Relaxed) {
        for (at, notice) in links.take_notices() {
            if let Notice::Takeover(_) = notice {
                // Only the last takeover's link announces the addresses.
                pending.retain(|p| !matches!(p.notice, Notice::Takeover(_)));
            }
            pending.push(Pending {
                notice,
                start: at,
                step: 0,
            });
        }
        let now = Instant::now();
        for p in pending.iter_mut().filter(|p| p.due() <= now) {
            announce_round(links, tracer, p.notice);
            p.step += 1;
        }
        pending.retain(|p| p.step < announce::SCHEDULE.len());
        let wait = pending
            .iter()
            .map(|p| p.due().saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        let mut fds = [
            libc::pollfd {
                fd: watch.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: bell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = i32::try_from(wait.as_millis()).unwrap_or(100);
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if r <= 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let mut n = 0u64;
            // SAFETY: an eventfd read takes 8 bytes into `n`.
            unsafe { libc::read(bell.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        }
        if fds[0].revents != 0 {
            news.clear();
            if let Err(e) = watch.read(&mut news) {
                log::info!("link news lost ({e}): reading every link's state again");
                resync(links);
            }
            for n in &news {
                take_news(links, n);
            }
        }
    }
}

/// Applies what the kernel said about one link, if it is one of ours.
fn take_news(links: &Links, news: &LinkNews) {
    let Some(i) = links.find(news.name()) else {
        return;
    };
    match *news {
        LinkNews::Removed { .. } => links.report(i, Event::Deleted),
        LinkNews::Changed { up, admin_up, .. } => {
            // A TAP deleted and made again, once the host sets it up (a
            // TAP being deleted only ever says down; one nobody attached
            // to has no carrier, so it is up but not running until vnic
            // attaches): attach to it anew.
            if admin_up && links.device(i, 0).is_none() {
                match TapDevice::open_queues(news.name(), links.offload(), links.rx_queues()) {
                    Ok(q) => links.reattach(i, q),
                    Err(e) => log::warn!("link {}: cannot attach again: {e}", news.name()),
                }
            }
            links.report(i, Event::Host(up));
        }
    }
}

/// One round of announcements for `notice`, on the link it names, each
/// frame traced with a comment that names the link.
fn announce_round(links: &Links, tracer: &Tracer, notice: Notice) {
    let (link, frames, what) = match notice {
        Notice::Takeover(i) => {
            // A takeover overtaken by another is not announced.
            if links.active() != Some(i) {
                return;
            }
            let Some(l) = links.links().get(i) else {
                return;
            };
            let cfg = links.config();
            let mut frames = announce::takeover_frames(l.mac(), &cfg.ipv4, &cfg.ipv6);
            frames.extend(l.link_ip().map(|ip| announce::gratuitous_arp(l.mac(), ip)));
            (i, frames, "takeover announcement")
        }
        Notice::Returned(i) => {
            let Some(l) = links.links().get(i) else {
                return;
            };
            let Some(ip) = l.link_ip() else {
                return;
            };
            (
                i,
                vec![announce::gratuitous_arp(l.mac(), ip)],
                "reserved address announcement",
            )
        }
    };
    let name = links.links().get(link).map_or("?", |l| l.name());
    let mut sent = 0;
    for f in &frames {
        if links.send_on(link, f).is_ok() {
            sent += 1;
            tracer.record(Direction::Out, f, &format!("link {name}: {what}"));
        }
    }
    links.count_announced(link, sent);
}
