//! The TAP device: attach to an existing one (made with `ip tuntap add dev
//! NAME mode tap user $USER`, so vnic runs without root) or create it.
//!
//! The device ioctls are made here through libc (the `tun-tap` crate cannot
//! ask for `IFF_VNET_HDR` or `TUNSETOFFLOAD`). Two modes:
//!
//! - plain (`--offload off`): one Ethernet frame per read/write, at most
//!   one MTU, checksums always complete; works on any TAP, also one made by
//!   another tool.
//! - offload (`--offload on`): every frame is preceded by a
//!   [`VnetHeader`]; the kernel may hand us TCP segments of up to 64 KiB
//!   (TSO/GSO) whose checksum is left partial, so one read carries what
//!   would otherwise be forty.

use crate::emit::FrameSink;
use crate::error::AdapterError;
use crate::vnet::{self, VnetHeader, F_NEEDS_CSUM, VNET_HDR_LEN};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `_IOW('T', 202, int)`: attach the fd to a TUN/TAP interface.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOW('T', 208, unsigned int)`: which offloads the kernel may use on us.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

/// The largest frame a read can return: an IPv4/IPv6 packet of 65,535
/// bytes behind an Ethernet header (with room for a VLAN tag). RX buffers
/// are this big, so a 64 KiB segment from the kernel is never cut.
pub const MAX_FRAME_LEN: usize = 65_535 + 18;

/// `struct ifreq` as TUNSETIFF reads and writes it: the name, the flags,
/// and padding to the kernel's 40 bytes.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP device: Ethernet frames in and out, no packet-info prefix,
/// and with offload a virtio-net header on each frame.
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    offload: bool,
    /// Held by the first queue of a multi-queue TAP: see [`claim`].
    claim: parking_lot::Mutex<Option<std::os::unix::net::UnixListener>>,
    /// The eventfd that wakes a reader waiting in [`TapDevice::recv_frame`].
    wake: Option<std::sync::Arc<OwnedFd>>,
}

/// Frames each queue of a TAP with processor queues holds (its
/// `txqueuelen`): as deep as a processor's own queue.
pub const PROCESSOR_RING: u32 = 8192;

/// Sets the TAP's `txqueuelen` (the depth of each of its queues' rings,
/// frames the host sent that vnic has not read yet) to at least `len`.
fn set_tx_queue_len(name: &str, len: u32) -> io::Result<()> {
    #[repr(C)]
    struct IfReqQlen {
        name: [libc::c_char; libc::IFNAMSIZ],
        qlen: libc::c_int,
        _pad: [u8; 20],
    }
    let mut req = IfReqQlen {
        name: [0; libc::IFNAMSIZ],
        qlen: 0,
        _pad: [0; 20],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: a fresh socket, only used for the two ioctls below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFTXQLEN/SIOCSIFTXQLEN read and write one `struct
    // ifreq` (name, then an int), which `IfReqQlen` lays out in 40 bytes.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFTXQLEN,
            &mut req as *mut IfReqQlen,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let want = libc::c_int::try_from(len).unwrap_or(libc::c_int::MAX);
    if req.qlen >= want {
        return Ok(());
    }
    req.qlen = want;
    // SAFETY: as above.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFTXQLEN,
            &mut req as *mut IfReqQlen,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wakes the RX thread reading a TAP queue (see [`TapDevice::rx_waker`]).
#[derive(Clone, Debug)]
pub struct RxWaker(std::sync::Arc<OwnedFd>);

impl RxWaker {
    /// Rings: the reader's wait ends at once.
    pub fn wake(&self) {
        let one = 1u64;
        // SAFETY: an eventfd write takes 8 bytes from `one`.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// One frame read by a [`FrameSource`]: its length in the buffer, and
/// whether its TCP checksum may be taken on trust.
///
/// It exists because with offload the kernel leaves the checksum of its
/// own segments partial (only the pseudo-header sum): verifying it would
/// drop every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// Bytes of the frame at the start of the buffer.
    pub len: usize,
    /// The kernel vouched for the frame's transport checksum (partial or
    /// already checked): the RX path must not verify it.
    pub checksum_trusted: bool,
}

impl TapDevice {
    /// Attaches to TAP `name` in plain mode (no offload), creating it if it
    /// does not exist.
    pub fn open(name: &str) -> Result<TapDevice, AdapterError> {
        TapDevice::open_with(name, false)
    }

    /// Attaches to TAP `name`, creating it if it does not exist; with
    /// `offload`, asks for virtio-net headers and lets the kernel use
    /// checksum offload and TSO (IPv4 and IPv6) on the device.
    pub fn open_with(name: &str, offload: bool) -> Result<TapDevice, AdapterError> {
        TapDevice::attach(name, offload, false)
    }

    /// Attaches `queues` queues of TAP `name` (creating it if it does not
    /// exist), one device per queue, like the RX queues of a multi-queue
    /// NIC. With more than one, the TAP is multi-queue and the RSS
    /// steering program ([`crate::steer`]) chooses each frame's queue by
    /// its addresses and ports, so a connection always arrives on the
    /// same one. Every queue can send.
    pub fn open_queues(
        name: &str,
        offload: bool,
        queues: usize,
    ) -> Result<Vec<TapDevice>, AdapterError> {
        if queues <= 1 {
            return Ok(vec![TapDevice::open_with(name, offload)?]);
        }
        TapDevice::open_steered(name, offload, queues, |_| {
            crate::steer::SteeringProgram::load()
                .map_err(|e| io::Error::new(e.kind(), format!("{e}; --rx-queues above 1 needs it")))
        })
    }

    /// Attaches `rss_queues + processors` queues of TAP `name` (creating
    /// it if it does not exist): the first `rss_queues` for the RX
    /// threads, then one for each processor, which reads the frames of
    /// its own connections there. The flow-steering program
    /// ([`crate::steer::SteeringProgram::load_flows`]) sends a frame whose
    /// 4-tuple is in `flows` to the queue the map names, and everything
    /// else to the RX queues by the RSS hash.
    pub fn open_processor_queues(
        name: &str,
        offload: bool,
        rss_queues: usize,
        processors: usize,
        flows: &crate::flowmap::FlowMap,
    ) -> Result<Vec<TapDevice>, AdapterError> {
        let rss = rss_queues.max(1);
        let queues = TapDevice::open_steered(name, offload, rss + processors, |_| {
            crate::steer::SteeringProgram::load_flows(flows, rss)
                .map_err(|e| io::Error::new(e.kind(), format!("{e}; --processor-queues needs it")))
        })?;
        if let Some(first) = queues.first() {
            // A processor's queue is the TAP's own ring now, not vnic's
            // (8192 deep): at the TAP's default of 1000 frames a burst of
            // small segments for one processor overflowed it, and the
            // kernel dropped frames of its other connections with them.
            if let Err(e) = set_tx_queue_len(first.name(), PROCESSOR_RING) {
                log::info!("{}: txqueuelen stays as it was: {e}", first.name());
            }
        }
        Ok(queues)
    }

    /// Attaches `queues` queues of a multi-queue TAP and attaches the
    /// steering program `program` makes.
    fn open_steered(
        name: &str,
        offload: bool,
        queues: usize,
        program: impl FnOnce(&TapDevice) -> io::Result<crate::steer::SteeringProgram>,
    ) -> Result<Vec<TapDevice>, AdapterError> {
        let claim = claim(name)?;
        let mut first = TapDevice::attach(name, offload, true)?;
        *first.claim.get_mut() = Some(claim);
        program(&first)
            .and_then(|p| p.attach(first.fd.as_raw_fd()))
            .map_err(|source| AdapterError::Io {
                tap: first.name.clone(),
                source,
            })?;
        let mut all = vec![first];
        for _ in 1..queues {
            let q = TapDevice::attach(&all[0].name, offload, true)?;
            all.push(q);
        }
        Ok(all)
    }

    fn attach(name: &str, offload: bool, multi: bool) -> Result<TapDevice, AdapterError> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            return Err(AdapterError::BadName(name.to_string()));
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(AdapterError::NoTunDevice(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        }
        let map = |e: io::Error| map_open_error(name, e, multi);
        let path = CString::new("/dev/net/tun").map_err(|e| map(io::Error::other(e)))?;
        // SAFETY: a valid NUL-terminated path and plain flags.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(map(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP
                | IFF_NO_PI
                | if offload { IFF_VNET_HDR } else { 0 }
                | if multi { IFF_MULTI_QUEUE } else { 0 },
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which
        // `IfReq` lays out (40 bytes), on an fd we own.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) } < 0 {
            return Err(map(io::Error::last_os_error()));
        }
        let given: Vec<u8> = req
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let name = String::from_utf8(given).unwrap_or_else(|_| name.to_string());
        let io_err = |source: io::Error| AdapterError::Io {
            tap: name.clone(),
            source,
        };
        if offload {
            let features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            // SAFETY: TUNSETOFFLOAD takes its flags by value.
            let r = unsafe {
                libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(features))
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return Err(io_err(io::Error::new(
                    e.kind(),
                    format!("TUNSETOFFLOAD (checksum, TSO): {e}"),
                )));
            }
        }
        set_non_blocking(fd.as_raw_fd()).map_err(io_err)?;
        Ok(TapDevice {
            fd,
            name,
            offload,
            claim: parking_lot::Mutex::new(None),
            wake: None,
        })
    }

    /// Gives up the claim on a multi-queue TAP (see [`claim`]) before
    /// this device is dropped: once the TAP was deleted (Ethernet
    /// failover), so that a TAP made again under its name can be attached
    /// while some writer still holds this dead one.
    pub fn release_claim(&self) {
        self.claim.lock().take();
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when frames carry a virtio-net header (opened with offload).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The device's MTU as the kernel sees it (1500 if it cannot be read).
    pub fn mtu(&self) -> usize {
        std::fs::read_to_string(format!("/sys/class/net/{}/mtu", self.name()))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500)
    }

    /// Waits up to `timeout` for a frame; `Ok(None)` when none came. With
    /// offload, a partial checksum is completed here, so the frame checks
    /// like a plain one (for readers that do not look at
    /// [`RxFrame::checksum_trusted`]).
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        Ok(self.recv_inner(buf, timeout, true)?.map(|f| f.len))
    }

    /// Waits up to `timeout` for a frame; `Ok(None)` when none came. The
    /// fd is non-blocking: a busy link costs one read per frame, and poll
    /// is only called when the queue is empty.
    pub fn recv_frame(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<RxFrame>> {
        self.recv_inner(buf, timeout, false)
    }

    /// One frame if one is waiting, without waiting: `Ok(None)` when the
    /// queue is empty. For a processor that reads its own queue from its
    /// event loop (the fd is in its epoll).
    pub fn try_recv_frame(&self, buf: &mut [u8]) -> io::Result<Option<RxFrame>> {
        loop {
            match self.read_once(buf, false) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes [`TapDevice::recv_frame`] also return (with `Ok(None)`)
    /// when the returned [`RxWaker`] is rung: the processors ring the RX
    /// thread that reads this queue when they hand it a frame of theirs
    /// to decide on. Call before the device is shared.
    pub fn rx_waker(&mut self) -> io::Result<RxWaker> {
        if let Some(w) = &self.wake {
            return Ok(RxWaker(w.clone()));
        }
        // SAFETY: plain flags; a fresh fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        self.wake = Some(fd.clone());
        Ok(RxWaker(fd))
    }

    fn recv_inner(
        &self,
        buf: &mut [u8],
        timeout: Duration,
        complete: bool,
    ) -> io::Result<Option<RxFrame>> {
        let mut polled = false;
        loop {
            match self.read_once(buf, complete) {
                Ok(Some(f)) => return Ok(Some(f)),
                // A frame we cannot interpret (header refused): read on.
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if polled {
                return Ok(None);
            }
            let wake = self.wake.as_ref().map_or(-1, |w| w.as_raw_fd());
            let mut pfd = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let count = if wake < 0 { 1 } else { 2 };
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: `count` valid pollfds.
            let r = unsafe { libc::poll(pfd.as_mut_ptr(), count, ms) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if pfd[1].revents != 0 {
                let mut n = 0u64;
                // SAFETY: an eventfd read takes 8 bytes into `n`.
                unsafe { libc::read(wake, (&mut n as *mut u64).cast(), 8) };
                return Ok(None);
            }
            if r == 0 {
                return Ok(None);
            }
            polled = true;
        }
    }

    /// One non-blocking read. `Ok(None)`: a frame was read but refused
    /// (too short for its header, or a GSO type we never asked for).
    fn read_once(&self, buf: &mut [u8], complete: bool) -> io::Result<Option<RxFrame>> {
        if !self.offload {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(Some(RxFrame {
                len: n as usize,
                checksum_trusted: false,
            }));
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: two iovecs over buffers we hold mutably for the call.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RxFrame::from_offload_read(&hdr, buf, n as usize, complete))
    }
}

impl RxFrame {
    /// The frame one read from a TAP with offload gave: `read` bytes in
    /// all, the virtio-net header in `hdr` and the frame after it in
    /// `buf`. With `complete`, a partial checksum is completed in `buf`
    /// (the frame then checks like a plain one). None for a read the RX
    /// path cannot interpret (shorter than the header, a GSO type vnic
    /// never asked for). Public so the `offload` fuzz target (fuzz/) gets
    /// frames exactly as the RX thread does.
    pub fn from_offload_read(
        hdr: &[u8; VNET_HDR_LEN],
        buf: &mut [u8],
        read: usize,
        complete: bool,
    ) -> Option<RxFrame> {
        if read < VNET_HDR_LEN {
            return None;
        }
        let h = VnetHeader::decode(hdr).ok()?;
        let len = (read - VNET_HDR_LEN).min(buf.len());
        let mut trusted = h.checksum_trusted();
        if complete && h.flags & F_NEEDS_CSUM != 0 {
            trusted = !vnet::complete_checksum(&mut buf[..len], h.csum_start, h.csum_offset);
        }
        Some(RxFrame {
            len,
            checksum_trusted: trusted,
        })
    }
}

/// Maps a failure to open /dev/net/tun or attach to `name` to what the
/// user can act on.
fn map_open_error(name: &str, e: io::Error, multi: bool) -> AdapterError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AdapterError::Permission {
            tap: name.to_string(),
            source: e,
        },
        Some(libc::EBUSY) => AdapterError::Busy {
            tap: name.to_string(),
        },
        Some(libc::ENOENT) | Some(libc::ENODEV) => AdapterError::NoTunDevice(e),
        Some(libc::EINVAL) if multi => AdapterError::Io {
            tap: name.to_string(),
            source: io::Error::new(
                e.kind(),
                format!("{e}: {name} exists as a single-queue device; make it with `ip tuntap add dev {name} mode tap multi_queue`, or use --rx-queues 1"),
            ),
        },
        Some(libc::EINVAL) => AdapterError::Io {
            tap: name.to_string(),
            source: io::Error::new(
                e.kind(),
                format!("{e}: is {name} a TUN (not TAP) device, or made with other flags (multi_queue)?"),
            ),
        },
        _ => AdapterError::Io {
            tap: name.to_string(),
            source: e,
        },
    }
}

/// Claims TAP `name` in this network namespace for this process: a
/// single-queue TAP refuses a second reader by itself (EBUSY), but a
/// multi-queue one would let a second vnic attach more queues and take a
/// share of the frames. The claim is an abstract Unix socket named after
/// the TAP: abstract names live in the network namespace, like the TAP,
/// and vanish with the process however it ends, so a crash leaves nothing
/// stale behind.
fn claim(name: &str) -> Result<std::os::unix::net::UnixListener, AdapterError> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!("vnic-tap-{name}"))
        .map_err(|e| AdapterError::Io {
            tap: name.to_string(),
            source: e,
        })?;
    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => AdapterError::Busy {
            tap: name.to_string(),
        },
        _ => AdapterError::Io {
            tap: name.to_string(),
            source: e,
        },
    })
}

/// Sets O_NONBLOCK on `fd`.
fn set_non_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with valid commands.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where frames come from: the TAP, or a wrapper around it (impairment).
pub trait FrameSource: Send {
    /// Waits up to `timeout` for a frame; `Ok(None)` when none came. The
    /// frame's checksums are complete.
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>>;

    /// Like [`FrameSource::recv_timeout`], and also says whether the
    /// frame's TCP checksum may be taken on trust. Sources without a
    /// virtio-net header keep this default: nothing is trusted.
    fn recv_frame(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<RxFrame>> {
        Ok(self.recv_timeout(buf, timeout)?.map(|len| RxFrame {
            len,
            checksum_trusted: false,
        }))
    }

    /// With several links (Ethernet failover): the link the last frame
    /// came in on, for the trace's comments. None for one device.
    fn link(&self) -> Option<&'static str> {
        None
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl FrameSource for std::sync::Arc<TapDevice> {
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        TapDevice::recv_timeout(self, buf, timeout)
    }

    fn recv_frame(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<RxFrame>> {
        TapDevice::recv_frame(self, buf, timeout)
    }
}

impl TapDevice {
    /// Writes `frame` behind the virtio-net header `hdr` (offload only).
    fn write_with_header(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        self.write_parts(&[frame], hdr)
    }

    /// A large frame made of `parts` (at most three), written in one
    /// vectored write behind `hdr`: what [`FrameSink::send_gso_parts`]
    /// does, for sinks that hold only a shared reference to the frame.
    pub(crate) fn send_gso_slices(&self, parts: &[&[u8]], hdr: &VnetHeader) -> io::Result<()> {
        if !self.offload {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.write_parts(parts, hdr)
    }

    /// Writes the frame made of `parts`, in order, behind the virtio-net
    /// header `hdr`, in one vectored write (offload only).
    fn write_parts(&self, parts: &[&[u8]], hdr: &VnetHeader) -> io::Result<()> {
        let hdr = hdr.encode();
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 4];
        let mut n = 0;
        for part in std::iter::once(&hdr[..]).chain(parts.iter().copied()) {
            if part.is_empty() {
                continue;
            }
            let Some(slot) = iov.get_mut(n) else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            *slot = libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            };
            n += 1;
        }
        // SAFETY: `n` iovecs over buffers that outlive the call; the
        // kernel only reads them.
        if unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), n as libc::c_int) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl FrameSink for TapDevice {
    fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let n = if self.offload {
            // Checksums complete, at most an MTU: the plain header.
            return self.write_with_header(frame, &VnetHeader::PLAIN);
        } else {
            // SAFETY: writes frame.len() bytes from frame.
            unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn gso(&self) -> bool {
        self.offload
    }

    fn send_gso_frame(&self, frame: &[u8], hdr: &VnetHeader) -> io::Result<()> {
        if !self.offload {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.write_with_header(frame, hdr)
    }

    fn send_gso_parts(
        &self,
        head: &mut Vec<u8>,
        tail: [&[u8]; 2],
        hdr: &VnetHeader,
    ) -> io::Result<()> {
        self.send_gso_slices(&[head, tail[0], tail[1]], hdr)
    }
}
