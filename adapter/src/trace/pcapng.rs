//! The pcapng file: a Section Header Block and an Interface Description
//! Block naming the TAP, then one Enhanced Packet Block per frame with the
//! adapter's decision as its comment. Blocks are built by `pcap-file`'s
//! writer into a [`DirectFile`]'s aligned buffer and go to the disk with
//! `O_DIRECT` once [`SYNC_BYTES`] have gathered or at a flush; after
//! either the file ends exactly on a block boundary, so a file cut off by
//! SIGKILL reads cleanly up to the last one. With a size limit the
//! file rotates: FILE, then `STEM-1.EXT`, `STEM-2.EXT`, ... (the extension
//! is kept so Wireshark still knows the format), each a complete pcapng.
//! With a file limit as well (`--pcap-max-files N`, tcpdump's `-W`) the
//! files form a ring: after `STEM-(N-1).EXT` the next rotation truncates
//! FILE and starts it again with fresh headers, so at most N files exist
//! and they hold the newest frames.

use super::direct::DirectFile;
use super::{Direction, FrameRecord, SNAPLEN};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::blocks::unknown::UnknownBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A pcapng option carries at most 65535 bytes; comments are cut well
/// below that (at a character boundary).
const MAX_COMMENT: usize = 4096;

/// Pending bytes that make [`PcapFile::write`] send them to the disk: big
/// enough that the writes are few (one per MiB of frames), small enough
/// that a killed vnic loses little.
const SYNC_BYTES: usize = 4 << 20;

/// The output buffer's starting size: [`SYNC_BYTES`] plus room for one
/// more block of the largest kind, so it never has to grow.
const BUFFER_BYTES: usize = SYNC_BYTES + SNAPLEN + 2 * MAX_COMMENT;

/// One pcapng output, possibly rotating over several files.
pub(crate) struct PcapFile {
    base: PathBuf,
    iface: String,
    mac: [u8; 6],
    max_bytes: Option<u64>,
    /// How many files the rotation cycles through (`None`: no limit).
    max_files: Option<u32>,
    snaplen: usize,
    /// Which file is being written: 0 is `base`, K is `STEM-K.EXT`.
    index: u32,
    path: PathBuf,
    out: PcapNgWriter<DirectFile>,
    /// Bytes in this file, written or waiting in `out`.
    size: u64,
    /// Packets in this file.
    packets: u64,
    /// The Section Header Block's comment of every file (the replay
    /// block).
    comment: Option<String>,
}

impl PcapFile {
    /// Creates `base` (truncating it) and writes the headers to it.
    /// `max_bytes` starts a new file when the current one would grow past
    /// it; `max_files` (only with `max_bytes`) makes the rotation a ring
    /// of that many files.
    pub fn create(
        base: PathBuf,
        iface: &str,
        mac: [u8; 6],
        max_bytes: Option<u64>,
        max_files: Option<u32>,
        snaplen: usize,
        comment: Option<String>,
    ) -> io::Result<PcapFile> {
        let (out, size) = open(&base, iface, mac, snaplen, comment.as_deref())?;
        Ok(PcapFile {
            path: base.clone(),
            base,
            iface: iface.to_owned(),
            mac,
            max_bytes,
            max_files,
            snaplen,
            index: 0,
            out,
            size,
            packets: 0,
            comment,
        })
    }

    /// The file being written now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one frame with its decision text; returns true if a new
    /// file was started for it.
    pub fn write(&mut self, rec: &FrameRecord, comment: &str) -> io::Result<bool> {
        let comment = cut(comment, MAX_COMMENT);
        let need = epb_len(rec.len, comment.len());
        let mut rotated = false;
        if let Some(max) = self.max_bytes {
            if self.packets > 0 && self.size + need > max {
                self.rotate()?;
                rotated = true;
            }
        }
        self.out
            .write_pcapng_block(packet_block(rec, comment))
            .map_err(io::Error::other)?;
        self.size += need;
        self.packets += 1;
        if self.out.get_ref().unsynced() >= SYNC_BYTES {
            self.out.get_mut().write_blocks()?;
        }
        Ok(rotated)
    }

    /// Appends a processor's batch record as a Custom Block (see
    /// [`super::batch`]); it is not a packet, and a file is never
    /// rotated for one.
    pub fn write_batch(&mut self, b: &super::batch::BatchRecord) -> io::Result<()> {
        let body = b.encode(cfg!(target_endian = "big"));
        let block = UnknownBlock {
            type_: super::batch::CUSTOM_BLOCK,
            length: 0,
            value: Cow::Owned(body),
        };
        let len = block.value.len() as u64 + 12;
        self.out
            .write_pcapng_block(block)
            .map_err(io::Error::other)?;
        self.size += len;
        if self.out.get_ref().unsynced() >= SYNC_BYTES {
            self.out.get_mut().write_blocks()?;
        }
        Ok(())
    }

    /// Writes the whole blocks built so far to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.get_mut().sync()
    }

    /// Flushes and closes the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()
    }

    /// Finishes the current file and starts the next one: `STEM-K.EXT`
    /// with K one higher, or, at the file limit, FILE again (truncated,
    /// with fresh headers).
    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        let index = next_index(self.index, self.max_files);
        let path = rotated_path(&self.base, index);
        // With one file in the ring this truncates the file `out` still
        // has open; that is fine, `out` was flushed above and is dropped
        // without writing anything more.
        let (out, size) = open(
            &path,
            &self.iface,
            self.mac,
            self.snaplen,
            self.comment.as_deref(),
        )?;
        self.index = index;
        self.path = path;
        self.out = out;
        self.size = size;
        self.packets = 0;
        Ok(())
    }
}

/// The index of the file after file `index`: the next one up, or 0
/// (the base file) once `max_files` files have been used.
fn next_index(index: u32, max_files: Option<u32>) -> u32 {
    let next = index.saturating_add(1);
    match max_files {
        Some(n) if next >= n => 0,
        _ => next,
    }
}

/// The name of the `index`th file: `trace.pcapng` → `trace-1.pcapng`;
/// a name without extension gets `-1` appended.
pub(crate) fn rotated_path(base: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, base.extension()) {
        (Some(stem), Some(ext)) => format!("{stem}-{index}.{}", ext.to_string_lossy()),
        (Some(stem), None) => format!("{stem}-{index}"),
        (None, _) => format!("trace-{index}.pcapng"),
    };
    base.with_file_name(name)
}

/// The first bytes of every pcapng file: a Section Header Block's type
/// (the same in both byte orders).
const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The SHB's byte-order magic, at offset 8, as little- and big-endian
/// files write it.
const BYTE_ORDER_MAGIC: [[u8; 4]; 2] = [[0x4d, 0x3c, 0x2b, 0x1a], [0x1a, 0x2b, 0x3c, 0x4d]];

/// Opens `path` to write a trace into, empty. vnic often runs as root and
/// the path may come from a less trusted caller (the control socket), so:
///
/// - a new file is created with mode 0600 whatever the umask (a trace
///   holds the traffic), never through a symbolic link (`O_EXCL`);
/// - an existing one is opened with `O_NOFOLLOW` (a symbolic link is
///   refused), must be a regular file, and is truncated only if it is
///   empty or a pcapng (a file written by an earlier trace, or the ring
///   coming round); anything else is left untouched and is an error.
///   It keeps its owner and mode.
///
/// Only the last component is checked for links: the directories on the
/// way are the caller's to trust.
pub(crate) fn open_file(path: &Path) -> io::Result<File> {
    let new = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path);
    match new {
        Ok(f) => {
            // The umask may have taken bits away; 0600 exactly.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            return Ok(f);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    // A cheap look first, so a device or a FIFO is never even opened.
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(refuse(SYMLINK));
    }
    if !meta.file_type().is_file() {
        return Err(refuse(NOT_FILE));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse(SYMLINK),
            _ => e,
        })?;
    // What was opened is what counts (the path may have changed since).
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse(NOT_FILE));
    }
    if meta.len() > 0 && !is_pcapng(&f) {
        return Err(refuse(
            "it exists and is not a pcapng file: vnic does not overwrite it \
             (remove it or choose another name)",
        ));
    }
    f.set_len(0)?;
    Ok(f)
}

const SYMLINK: &str = "it is a symbolic link: trace files are never opened through one \
                       (give the real path)";
const NOT_FILE: &str = "it is not a regular file";

/// True if `f` starts with a pcapng Section Header Block.
fn is_pcapng(f: &File) -> bool {
    let mut head = [0u8; 12];
    if f.read_exact_at(&mut head, 0).is_err() {
        return false;
    }
    head[..4] == SHB_TYPE && BYTE_ORDER_MAGIC.iter().any(|m| head[8..12] == *m)
}

/// Opens `path` (see [`open_file`]) and writes the SHB and IDB to it,
/// flushed, so even a file with no packet is a valid pcapng.
fn open(
    path: &Path,
    iface: &str,
    mac: [u8; 6],
    snaplen: usize,
    comment: Option<&str>,
) -> io::Result<(PcapNgWriter<DirectFile>, u64)> {
    let file = open_file(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write pcap file {}: {e}", path.display()),
        )
    })?;
    let file = DirectFile::new(file, BUFFER_BYTES);
    let mut out = start_section(file, iface, mac, snaplen, comment)?;
    let size = out.get_ref().len();
    out.get_mut().sync()?;
    Ok((out, size))
}

/// A pcapng writer on `to` that has written the Section Header Block and
/// the Interface Description Block naming the TAP (interface 0, Ethernet,
/// nanosecond timestamps): how a trace file and a live capture stream
/// both begin. `comment` (the replay block) is the section's comment.
pub(crate) fn start_section<W: io::Write>(
    to: W,
    iface: &str,
    mac: [u8; 6],
    snaplen: usize,
    comment: Option<&str>,
) -> io::Result<PcapNgWriter<W>> {
    let mut options = vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
        "vnic {}",
        env!("CARGO_PKG_VERSION")
    )))];
    if let Some(c) = comment {
        options.push(SectionHeaderOption::Comment(Cow::Owned(c.to_owned())));
    }
    let shb = SectionHeaderBlock {
        endianness: Endianness::native(),
        options,
        ..Default::default()
    };
    let mut out = PcapNgWriter::with_section_header(to, shb).map_err(io::Error::other)?;
    let m = mac;
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: u32::try_from(snaplen).unwrap_or(u32::MAX),
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(iface.to_owned())),
            InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                "vnic emulated adapter on TAP {iface}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ))),
            InterfaceDescriptionOption::IfMacAddr(Cow::Owned(mac.to_vec())),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    out.write_pcapng_block(idb).map_err(io::Error::other)?;
    Ok(out)
}

/// The Enhanced Packet Block of one recorded frame: its direction in
/// `epb_flags` and the decision text (cut to [`MAX_COMMENT`]) as its
/// comment. Trace files and live captures write the same block.
pub(crate) fn packet_block<'a>(rec: &'a FrameRecord, comment: &'a str) -> EnhancedPacketBlock<'a> {
    let comment = cut(comment, MAX_COMMENT);
    // epb_flags bits 0-1: 01 inbound, 10 outbound (Wireshark shows
    // it as frame.packet_flags_direction).
    let flags = match rec.dir {
        Direction::In => 1,
        Direction::Out => 2,
    };
    let mut options = Vec::with_capacity(2);
    options.push(EnhancedPacketOption::Flags(flags));
    if !comment.is_empty() {
        options.push(EnhancedPacketOption::Comment(Cow::Borrowed(comment)));
    }
    EnhancedPacketBlock {
        interface_id: 0,
        timestamp: rec.when.duration_since(UNIX_EPOCH).unwrap_or_default(),
        original_len: u32::try_from(rec.original_len).unwrap_or(u32::MAX),
        data: Cow::Borrowed(rec.frame()),
        options,
    }
}

/// The size of an EPB with `data` bytes, the flags option and a
/// `comment` of that length.
fn epb_len(data: usize, comment: usize) -> u64 {
    let pad4 = |n: usize| n.div_ceil(4) * 4;
    let flags = 4 + 4;
    let comment = if comment > 0 { 4 + pad4(comment) } else { 0 };
    let opts = flags + comment + 4;
    (12 + 20 + pad4(data) + opts) as u64
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension() {
        let b = Path::new("/tmp/x/trace.pcapng");
        assert_eq!(rotated_path(b, 0), b);
        assert_eq!(rotated_path(b, 2), Path::new("/tmp/x/trace-2.pcapng"));
        assert_eq!(
            rotated_path(Path::new("cap"), 1),
            Path::new("cap-1").to_path_buf()
        );
    }

    #[test]
    fn a_file_limit_turns_the_rotation_into_a_ring() {
        let walk = |max: Option<u32>| {
            let mut i = 0;
            let mut seen = vec![i];
            for _ in 0..7 {
                i = next_index(i, max);
                seen.push(i);
            }
            seen
        };
        assert_eq!(walk(None), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(walk(Some(3)), [0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(walk(Some(1)), [0; 8]);
        assert_eq!(next_index(u32::MAX, None), u32::MAX);
    }

    #[test]
    fn comments_are_cut_at_a_char_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn epb_length_matches_what_the_writer_writes() {
        let mut w = PcapNgWriter::new(Vec::new()).expect("writer");
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .expect("idb");
        for (data, comment) in [(0, 0), (1, 1), (60, 7), (61, 12), (1514, 30)] {
            let before = w.get_ref().len();
            let c = "x".repeat(comment);
            let d = vec![0u8; data];
            let mut options = vec![EnhancedPacketOption::Flags(1)];
            if comment > 0 {
                options.push(EnhancedPacketOption::Comment(Cow::Borrowed(c.as_str())));
            }
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Default::default(),
                original_len: data as u32,
                data: Cow::Borrowed(&d),
                options,
            })
            .expect("epb");
            let got = (w.get_ref().len() - before) as u64;
            assert_eq!(got, epb_len(data, comment), "data {data} comment {comment}");
        }
    }
}
