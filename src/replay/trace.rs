//! Reading a trace to replay: the replay block (the Section Header
//! Block's comment), the adapter's MAC (the Interface Description Block),
//! and every frame with its time, direction and decision comment.

use super::ReplayError;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::path::Path;
use std::time::Duration;
use vnic_adapter::trace::batch::{self, BatchRecord};
use vnic_adapter::trace::block::{BlockError, ReplayBlock};
use vnic_adapter::trace::Direction;

/// One frame of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFrame {
    /// Its number in the file, from 1, as Wireshark counts (Wireshark
    /// 4 lists a custom block, such as a batch record, as a record too).
    pub number: usize,
    /// Its timestamp: time since 1970.
    pub at: Duration,
    /// Read from the TAP (`In`) or written to it (`Out`).
    pub dir: Direction,
    /// The frame's bytes as recorded.
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data` when cut).
    pub original_len: usize,
    /// The decision comment (`in cpu=2 flow`, `out cpu=2`, ...).
    pub comment: String,
}

/// A trace as read.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The replay block, if the trace has one.
    pub block: Option<ReplayBlock>,
    /// The section comment that was not a readable replay block, and why.
    pub block_error: Option<BlockError>,
    /// The adapter's MAC (the interface's `if_MACaddr`).
    pub mac: Option<[u8; 6]>,
    /// Every frame, in file order.
    pub frames: Vec<TraceFrame>,
    /// Every batch a processor took, in file order (traces written
    /// before vnic recorded batches have none).
    pub batches: Vec<BatchRecord>,
    /// Batch records that did not read: how many, and the first one's
    /// error.
    pub bad_batches: (usize, Option<String>),
}

impl Trace {
    /// Reads the pcapng file at `path`.
    pub fn read(path: &Path) -> Result<Trace, ReplayError> {
        let bytes = std::fs::read(path).map_err(|e| ReplayError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Trace::from_bytes(&bytes).map_err(|e| match e {
            ReplayError::Format(why) => ReplayError::Read {
                path: path.display().to_string(),
                why,
            },
            e => e,
        })
    }

    /// Reads a pcapng held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, ReplayError> {
        let bad =
            |e: pcap_file::PcapError| ReplayError::Format(format!("not a readable pcapng: {e}"));
        let mut r = PcapNgReader::new(bytes).map_err(bad)?;
        let mut t = Trace::default();
        // Records as Wireshark numbers them: frames and custom blocks.
        let mut records = 0;
        for o in &r.section().options {
            if let SectionHeaderOption::Comment(c) = o {
                match ReplayBlock::parse(c) {
                    Ok(b) => t.block = Some(b),
                    Err(BlockError::NotABlock) => {}
                    Err(e) => t.block_error = Some(e),
                }
            }
        }
        while let Some(block) = r.next_block() {
            match block.map_err(bad)? {
                Block::InterfaceDescription(i) => {
                    for o in &i.options {
                        if let InterfaceDescriptionOption::IfMacAddr(m) = o {
                            if let Ok(mac) = <[u8; 6]>::try_from(m.as_ref()) {
                                t.mac.get_or_insert(mac);
                            }
                        }
                    }
                }
                Block::EnhancedPacket(p) => {
                    let mut comment = String::new();
                    let mut flags = 0;
                    for o in &p.options {
                        match o {
                            EnhancedPacketOption::Comment(c) => comment = c.to_string(),
                            EnhancedPacketOption::Flags(f) => flags = *f,
                            _ => {}
                        }
                    }
                    records += 1;
                    let number = records;
                    // epb_flags bits 0-1: 01 inbound, 10 outbound; a file
                    // without them says it in the comment.
                    let dir = match (flags & 3, comment.split(' ').next()) {
                        (1, _) | (0, Some("in")) => Direction::In,
                        (2, _) | (0, Some("out")) => Direction::Out,
                        _ => {
                            return Err(ReplayError::Format(format!(
                                "frame {number}: neither its flags nor its comment say \
                                 whether it came in or went out"
                            )))
                        }
                    };
                    t.frames.push(TraceFrame {
                        number,
                        at: p.timestamp,
                        dir,
                        original_len: p.original_len as usize,
                        data: p.data.to_vec(),
                        comment,
                    });
                }
                Block::Unknown(u)
                    if u.type_ == batch::CUSTOM_BLOCK
                        || u.type_ == batch::CUSTOM_BLOCK_COPYABLE =>
                {
                    records += 1;
                    match BatchRecord::parse(&u.value) {
                        Ok(Some(b)) => t.batches.push(b),
                        Ok(None) => {} // another tool's custom block
                        Err(e) => {
                            t.bad_batches.0 += 1;
                            t.bad_batches.1.get_or_insert(e);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(t)
    }
}

/// A frame's TCP segment as etherparse slices it, with the sender's and
/// the receiver's socket addresses: what the test emitter and the
/// scripted apps both read from a trace's frames. None for anything but
/// TCP over IPv4 or IPv6.
pub(crate) fn tcp_slice(
    frame: &[u8],
) -> Option<(
    std::net::SocketAddr,
    std::net::SocketAddr,
    etherparse::TcpSlice<'_>,
)> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::net::{IpAddr, SocketAddr};
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(v)) => (
            IpAddr::V4(v.header().source_addr()),
            IpAddr::V4(v.header().destination_addr()),
        ),
        Some(NetSlice::Ipv6(v)) => (
            IpAddr::V6(v.header().source_addr()),
            IpAddr::V6(v.header().destination_addr()),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        return None;
    };
    Some((
        SocketAddr::new(src, t.source_port()),
        SocketAddr::new(dst, t.destination_port()),
        t,
    ))
}
