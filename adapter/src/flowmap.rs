//! The flow table in the kernel: which TAP queue each connection's
//! frames go to, so a processor reads its own connections' frames with no
//! thread between it and the TAP.
//!
//! Without it every frame is read by an RX thread and handed to the
//! processor that holds its connection: a queue push, and, when the
//! processor sleeps, a wake-up, per frame. In a profile of short HTTP
//! connections that hand-off (scheduler switches and wake-ups between the
//! two threads, the RX thread's own polls and sleeps) was about a third
//! of vnic's CPU, the largest part vnic adds to what a one-thread stack
//! such as smoltcp pays.
//!
//! So with `--processor-queues` the TAP has a queue per processor besides
//! the RX threads' queues, and its steering program
//! ([`crate::steer::SteeringProgram::load_flows`]) looks each frame's
//! 4-tuple up in this map (an eBPF hash map): a hit goes to the queue the
//! map names, a miss (a new SYN, ARP, NDP, ICMP, UDP, anything not a
//! plain TCP segment) to the RX threads as before. The RX thread that
//! places a connection writes its entry before the SYN goes to the
//! processor ([`crate::rx::RxQueue`]); the processor deletes it when it
//! forgets the connection, before it reports the flow closed. Frames that
//! reach a processor's queue without its connection (a race with that
//! deletion) go back to the RX thread, which decides as it always did.
//! The map is only a shortcut: a failed insert (the map is full) leaves
//! the connection on the RX path, correct and slower.
//!
//! The key is the tuple as the steering program builds it from the
//! packet's headers (loads convert each 32-bit word to host order): the
//! source address in four words (IPv4: one and three zeros), the
//! destination address likewise, the ports word (source port in the high
//! half), and the family (4 or 6). Hand-written against `bpf(2)` (as the
//! steering program is): the map needs four commands, which a BPF crate
//! would bring with a loader and an ELF parser we have no use for.

use crate::steer::bpf;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use vnic_stack::FourTuple;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_TYPE_HASH: u32 = 1;
/// Entries are allocated as they are inserted, not all at creation.
const BPF_F_NO_PREALLOC: u32 = 1;

/// The key: ten 32-bit words in host order (see the module docs).
type Key = [u32; 10];

/// The kernel's flow table of a TAP with processor queues.
#[derive(Debug)]
pub struct FlowMap {
    fd: OwnedFd,
    capacity: u32,
}

impl FlowMap {
    /// Creates an empty map for at most `capacity` connections (needs
    /// CAP_BPF or root).
    pub fn create(capacity: usize) -> io::Result<FlowMap> {
        let capacity = u32::try_from(capacity.clamp(1, 1 << 24)).unwrap_or(1 << 24);
        let mut attr = [0u64; 16];
        // map_type, key_size | value_size, max_entries | map_flags.
        attr[0] = u64::from(BPF_MAP_TYPE_HASH) | ((std::mem::size_of::<Key>() as u64) << 32);
        attr[1] = 4 | (u64::from(capacity) << 32);
        attr[2] = u64::from(BPF_F_NO_PREALLOC);
        let fd = bpf(BPF_MAP_CREATE, &mut attr)
            .map_err(|e| io::Error::new(e.kind(), format!("creating the flow map: {e}")))?;
        // SAFETY: the kernel returned a fresh fd that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(FlowMap { fd, capacity })
    }

    /// Most connections the map holds.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The key the steering program builds for a frame of `tuple` sent
    /// by its remote end.
    fn key(tuple: &FourTuple) -> Key {
        let mut k = [0u32; 10];
        let words = |a: IpAddr, out: &mut [u32]| match a {
            IpAddr::V4(v4) => out[0] = u32::from_be_bytes(v4.octets()),
            IpAddr::V6(v6) => {
                for (w, c) in out.iter_mut().zip(v6.octets().chunks_exact(4)) {
                    *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        };
        words(tuple.remote.ip(), &mut k[0..4]);
        words(tuple.local.ip(), &mut k[4..8]);
        k[8] = (u32::from(tuple.remote.port()) << 16) | u32::from(tuple.local.port());
        k[9] = match tuple.local {
            SocketAddr::V4(_) => 4,
            SocketAddr::V6(_) => 6,
        };
        k
    }

    /// Steers `tuple`'s frames to TAP queue `queue`; false if the map
    /// refused (full): the frames then keep going to the RX threads.
    pub fn insert(&self, tuple: &FourTuple, queue: usize) -> bool {
        let key = FlowMap::key(tuple);
        let value = u32::try_from(queue).unwrap_or(0);
        let mut attr = [0u64; 16];
        attr[0] = self.fd.as_raw_fd() as u64;
        attr[1] = key.as_ptr() as u64;
        attr[2] = &value as *const u32 as u64;
        // attr[3] = flags: BPF_ANY (insert or replace).
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).is_ok()
    }

    /// Stops steering `tuple` (its frames go to the RX threads again).
    pub fn remove(&self, tuple: &FourTuple) {
        let key = FlowMap::key(tuple);
        let mut attr = [0u64; 16];
        attr[0] = self.fd.as_raw_fd() as u64;
        attr[1] = key.as_ptr() as u64;
        // ENOENT (never inserted, the map was full) is not an error here.
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }

    /// The queue `tuple` is steered to, if any.
    pub fn get(&self, tuple: &FourTuple) -> Option<usize> {
        FlowMap::lookup_key(self.fd.as_raw_fd(), &FlowMap::key(tuple))
    }

    fn lookup_key(fd: RawFd, key: &Key) -> Option<usize> {
        let mut value = 0u32;
        let mut attr = [0u64; 16];
        attr[0] = fd as u64;
        attr[1] = key.as_ptr() as u64;
        attr[2] = &mut value as *mut u32 as u64;
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).ok()?;
        Some(value as usize)
    }

    /// Every key in the map (a walk: for rare events, status and tests).
    fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        loop {
            let mut next: Key = [0; 10];
            let mut attr = [0u64; 16];
            attr[0] = self.fd.as_raw_fd() as u64;
            attr[1] = keys.last().map_or(0, |k| k.as_ptr() as u64);
            attr[2] = next.as_mut_ptr() as u64;
            if bpf(BPF_MAP_GET_NEXT_KEY, &mut attr).is_err() || keys.len() > self.capacity() {
                return keys;
            }
            keys.push(next);
        }
    }

    /// Removes every entry that steers to `queue` (its processor failed:
    /// the RX threads then answer its connections' frames); returns how
    /// many. Walks the whole map: only for that rare event.
    pub fn remove_queue(&self, queue: usize) -> usize {
        let fd = self.fd.as_raw_fd();
        let doomed: Vec<Key> = self
            .keys()
            .into_iter()
            .filter(|k| FlowMap::lookup_key(fd, k) == Some(queue))
            .collect();
        for k in &doomed {
            let mut attr = [0u64; 16];
            attr[0] = fd as u64;
            attr[1] = k.as_ptr() as u64;
            let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
        }
        doomed.len()
    }

    /// Entries in the map (walks it: for status and tests).
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    /// True when the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AsRawFd for FlowMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
