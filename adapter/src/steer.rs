//! Receive-side scaling for a multi-queue TAP: which RX queue a frame
//! from the host lands on.
//!
//! A real multi-queue NIC hashes each packet's addresses and ports
//! (RSS) so every packet of one TCP connection reaches the same queue and
//! the same CPU. A TAP opened with `IFF_MULTI_QUEUE` picks a queue by
//! itself, from a table of the flows it saw written on each queue, which
//! ages out and fills up (a SYN flood fills it): a connection's frames
//! could then change queue, and the RX thread of the new queue would not
//! know the connection. So vnic attaches a steering program
//! (`TUNSETSTEERINGEBPF`): a few eBPF instructions that compute a
//! symmetric hash of the IP addresses and, for TCP and UDP, the ports.
//! The kernel takes its result modulo the number of queues. The hash
//! depends on the packet alone, so each RX thread owns its flows outright
//! (its flow table needs no lock) and never sees another thread's.
//!
//! The program reads the packet relative to its network header
//! (`SKF_NET_OFF`), which the kernel has set both on the TAP's transmit
//! path and when a test runs the program (`BPF_PROG_TEST_RUN`), so the
//! unit tests run the very instructions the TAP does. [`flow_hash`] is
//! the same function in Rust, checked against the program.

use crate::flowmap::FlowMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IOR('T', 224, int)`: attach a steering program to a TAP.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// `bpf(2)` commands.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// The program type a TAP accepts as its steering program.
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// `src_reg` of a 64-bit immediate load that names a map by its fd.
const PSEUDO_MAP_FD: u8 = 1;
/// The helper `bpf_map_lookup_elem`.
const FUNC_MAP_LOOKUP_ELEM: i32 = 1;

/// Loads relative to the network header.
const SKF_NET_OFF: i32 = -0x10_0000;
/// `offsetof(struct __sk_buff, protocol)`: the EtherType, network order.
const SKB_PROTOCOL: i16 = 16;

/// The multiplier that spreads the folded addresses over all 32 bits
/// (2^32 / golden ratio); the kernel keeps only the low 16 bits of the
/// result, so the top half is folded down afterwards.
const MIX: u32 = 0x9E37_79B1;

/// One eBPF instruction, as `struct bpf_insn` lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const ADD: u8 = 0x00;
const MOD: u8 = 0x90;
const CALL: u8 = 0x80;
const X: u8 = 0x08;
const MUL: u8 = 0x20;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const EXIT: u8 = 0x90;

/// One step of a program being written: an instruction, a jump to a
/// label, or a label. Jumps are written with labels, resolved by
/// [`assemble`], so the code reads top to bottom.
enum Op {
    I(Insn),
    /// Jump (conditional on `code` against `imm` in r0, or always) to a label.
    J(u8, i32, &'static str),
    L(&'static str),
}
use Op::{I, J, L};

fn ld_net(size: u8, off: i32) -> Op {
    I(insn(LD | ABS | size, 0, 0, 0, SKF_NET_OFF + off))
}

/// Builds the RSS program. Registers: r6 the packet (as `LD_ABS` wants it),
/// r7 the hash being folded, r8/r9 scratch (`LD_ABS` clobbers r1-r5).
fn program() -> Vec<Insn> {
    let mut ops = vec![I(insn(ALU64 | MOV | X, 6, 1, 0, 0))];
    ops.extend(rss_ops());
    ops.push(I(insn(JMP | EXIT, 0, 0, 0, 0)));
    assemble(ops)
}

/// The RSS hash of the packet in r6 (the context), left in r0. Starts at
/// label `rss` and ends at `rss_end` (after its last instruction).
fn rss_ops() -> Vec<Op> {
    let xor_r7 = || I(insn(ALU64 | XOR | X, 7, 0, 0, 0));
    // r0 = sport ^ dport from the 32-bit word of both ports at r8 + off.
    let ports = |off: i32| {
        [
            I(insn(LD | IND | W, 0, 8, 0, SKF_NET_OFF + off)),
            I(insn(ALU64 | MOV | X, 9, 0, 0, 0)),
            I(insn(ALU64 | RSH | K, 9, 0, 0, 16)),
            I(insn(ALU64 | AND | K, 0, 0, 0, 0xffff)),
            I(insn(ALU64 | XOR | X, 0, 9, 0, 0)),
        ]
    };
    let mut ops = vec![
        L("rss"),
        I(insn(ALU64 | MOV | K, 7, 0, 0, 0)),
        I(insn(ALU64 | MOV | K, 8, 0, 0, 0)),
        // r0 = skb->protocol (network order in a u32: 0x0800 reads 0x0008).
        I(insn(LDX | MEM | W, 0, 6, SKB_PROTOCOL, 0)),
        J(JEQ, 0x0008, "v4"),
        J(JEQ, 0xdd86, "v6"),
        I(insn(ALU64 | MOV | K, 0, 0, 0, 0)),
        J(JA, 0, "rss_end"),
        L("v4"),
        ld_net(W, 12),
        I(insn(ALU64 | MOV | X, 7, 0, 0, 0)),
        ld_net(W, 16),
        xor_r7(),
        // Ports only for an unfragmented TCP or UDP packet.
        ld_net(H, 6),
        I(insn(ALU64 | AND | K, 0, 0, 0, 0x3fff)),
        J(JNE, 0, "mix"),
        ld_net(B, 9),
        J(JEQ, 6, "v4ports"),
        J(JEQ, 17, "v4ports"),
        J(JA, 0, "mix"),
        L("v4ports"),
        ld_net(B, 0),
        I(insn(ALU64 | AND | K, 0, 0, 0, 0x0f)),
        I(insn(ALU64 | LSH | K, 0, 0, 0, 2)),
        I(insn(ALU64 | MOV | X, 8, 0, 0, 0)),
    ];
    ops.extend(ports(0));
    ops.push(xor_r7());
    ops.push(J(JA, 0, "mix"));
    ops.push(L("v6"));
    for off in (8..40).step_by(4) {
        ops.push(ld_net(W, off));
        ops.push(xor_r7());
    }
    ops.push(ld_net(B, 6));
    ops.push(J(JEQ, 6, "v6ports"));
    ops.push(J(JEQ, 17, "v6ports"));
    ops.push(J(JA, 0, "mix"));
    ops.push(L("v6ports"));
    ops.extend(ports(40));
    ops.push(xor_r7());
    ops.extend([
        L("mix"),
        I(insn(ALU | MOV | X, 0, 7, 0, 0)),
        I(insn(ALU | MUL | K, 0, 0, 0, MIX as i32)),
        I(insn(ALU | MOV | X, 1, 0, 0, 0)),
        I(insn(ALU | RSH | K, 1, 0, 0, 16)),
        I(insn(ALU | XOR | X, 0, 1, 0, 0)),
        L("rss_end"),
    ]);
    ops
}

/// Where the flow key is built on the program's stack: 40 bytes below
/// the frame pointer (r10), as [`crate::flowmap::FlowMap`] lays it out.
const KEY_AT: i16 = -40;

/// Builds the flow-steering program: a TCP segment whose 4-tuple is in
/// the flow map `map_fd` goes to the queue the map names (a processor's
/// own queue); everything else goes to one of the first `rss_queues`
/// queues by the RSS hash (the RX threads' queues).
fn flow_program(map_fd: RawFd, rss_queues: u32) -> Vec<Insn> {
    let stx = |off: i16| I(insn(STX | MEM | W, 10, 0, off, 0));
    let st = |off: i16, imm: i32| I(insn(ST | MEM | W, 10, 0, off, imm));
    let word = |i: i16| KEY_AT + 4 * i;
    let mut ops = vec![
        I(insn(ALU64 | MOV | X, 6, 1, 0, 0)),
        I(insn(LDX | MEM | W, 0, 6, SKB_PROTOCOL, 0)),
        J(JEQ, 0x0008, "fv4"),
        J(JEQ, 0xdd86, "fv6"),
        J(JA, 0, "miss"),
        // IPv4: an unfragmented TCP segment; the header length in r8.
        L("fv4"),
        ld_net(B, 9),
        J(JNE, 6, "miss"),
        ld_net(H, 6),
        I(insn(ALU64 | AND | K, 0, 0, 0, 0x3fff)),
        J(JNE, 0, "miss"),
        ld_net(B, 0),
        I(insn(ALU64 | AND | K, 0, 0, 0, 0x0f)),
        I(insn(ALU64 | LSH | K, 0, 0, 0, 2)),
        I(insn(ALU64 | MOV | X, 8, 0, 0, 0)),
        ld_net(W, 12),
        stx(word(0)),
        st(word(1), 0),
        st(word(2), 0),
        st(word(3), 0),
        ld_net(W, 16),
        stx(word(4)),
        st(word(5), 0),
        st(word(6), 0),
        st(word(7), 0),
        I(insn(LD | IND | W, 0, 8, 0, SKF_NET_OFF)),
        stx(word(8)),
        st(word(9), 4),
        J(JA, 0, "lookup"),
        // IPv6: TCP right behind the fixed header.
        L("fv6"),
        ld_net(B, 6),
        J(JNE, 6, "miss"),
    ];
    for i in 0..8i16 {
        ops.push(ld_net(W, 8 + 4 * i32::from(i)));
        ops.push(stx(word(i)));
    }
    ops.extend([
        ld_net(W, 40),
        stx(word(8)),
        st(word(9), 6),
        L("lookup"),
        // r1 = the map (the kernel turns the fd into its address).
        I(insn(LD | IMM | DW, 1, PSEUDO_MAP_FD, 0, map_fd)),
        I(insn(0, 0, 0, 0, 0)),
        I(insn(ALU64 | MOV | X, 2, 10, 0, 0)),
        I(insn(ALU64 | ADD | K, 2, 0, 0, i32::from(KEY_AT))),
        I(insn(JMP | CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM)),
        J(JEQ, 0, "miss"),
        I(insn(LDX | MEM | W, 0, 0, 0, 0)),
        I(insn(JMP | EXIT, 0, 0, 0, 0)),
        L("miss"),
    ]);
    if rss_queues > 1 {
        ops.extend(rss_ops());
        ops.push(I(insn(ALU | AND | K, 0, 0, 0, 0xffff)));
        ops.push(I(insn(ALU | MOD | K, 0, 0, 0, rss_queues as i32)));
    } else {
        ops.push(I(insn(ALU64 | MOV | K, 0, 0, 0, 0)));
    }
    ops.push(I(insn(JMP | EXIT, 0, 0, 0, 0)));
    assemble(ops)
}

/// Resolves the labels of `ops`: a label is the index of the next
/// instruction, a jump's offset counts from the instruction after it.
fn assemble(ops: Vec<Op>) -> Vec<Insn> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0i32;
    for op in &ops {
        match op {
            L(name) => {
                at.insert(*name, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n as usize);
    for op in ops {
        match op {
            I(i) => out.push(i),
            J(code, imm, label) => {
                let here = out.len() as i32;
                // Labels are this module's own constants: the unit
                // tests load the programs, so a missing one shows there.
                debug_assert!(at.contains_key(label), "label {label}");
                let off = at.get(label).copied().unwrap_or(here + 1) - here - 1;
                out.push(insn(JMP | code | K, 0, 0, off as i16, imm));
            }
            L(_) => {}
        }
    }
    out
}

/// The program's hash of an IP packet (starting at its IP header), in
/// Rust: what [`SteeringProgram`] returns for it. Symmetric: both
/// directions of a connection hash alike. The TAP keeps the low 16 bits
/// and takes them modulo the number of queues ([`queue_of`]).
pub fn flow_hash(packet: &[u8]) -> u32 {
    let be32 = |o: usize| -> Option<u32> {
        packet
            .get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ports = |o: usize| be32(o).map(|w| (w >> 16) ^ (w & 0xffff));
    let fold = || -> Option<u32> {
        let version = packet.first()? >> 4;
        let mut h = 0u32;
        match version {
            4 => {
                h = be32(12)? ^ be32(16)?;
                let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x3fff;
                if frag == 0 && matches!(packet.get(9)?, 6 | 17) {
                    h ^= ports(usize::from(packet[0] & 0x0f) * 4)?;
                }
            }
            6 => {
                for o in (8..40).step_by(4) {
                    h ^= be32(o)?;
                }
                if matches!(packet.get(6)?, 6 | 17) {
                    h ^= ports(40)?;
                }
            }
            _ => {}
        }
        Some(h)
    };
    // A load past the end stops the program with 0, as here.
    match fold() {
        Some(h) => {
            let m = h.wrapping_mul(MIX);
            m ^ (m >> 16)
        }
        None => 0,
    }
}

/// The queue the TAP picks for a hash: its low 16 bits modulo the queues.
pub fn queue_of(hash: u32, queues: usize) -> usize {
    usize::from(hash as u16) % queues.max(1)
}

/// The loaded steering program.
pub struct SteeringProgram {
    fd: OwnedFd,
}

pub(crate) fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zeroed, 128-byte `union bpf_attr` holding the
    // command's fields, and lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl SteeringProgram {
    /// Loads the RSS program into the kernel (needs CAP_BPF or root, or
    /// unprivileged BPF allowed).
    pub fn load() -> io::Result<SteeringProgram> {
        SteeringProgram::load_insns(&program(), b"vnic_rss", "the RSS steering program")
    }

    /// Loads the flow-steering program: a TCP segment whose 4-tuple is
    /// in `flows` goes to the queue the map names, everything else to one
    /// of the first `rss_queues` queues by the RSS hash ([`flow_hash`],
    /// [`queue_of`]). It is how a processor reads the frames of its own
    /// connections from a queue of its own, with no RX thread between
    /// (see [`crate::flowmap`]).
    pub fn load_flows(flows: &FlowMap, rss_queues: usize) -> io::Result<SteeringProgram> {
        let rss = u32::try_from(rss_queues.clamp(1, 1 << 16)).unwrap_or(1);
        SteeringProgram::load_insns(
            &flow_program(flows.as_raw_fd(), rss),
            b"vnic_flows",
            "the flow steering program",
        )
    }

    fn load_insns(insns: &[Insn], name: &[u8], what: &str) -> io::Result<SteeringProgram> {
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        // BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
        // log_size, log_buf, kern_version, prog_flags, prog_name.
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_PROG_TYPE_SOCKET_FILTER) | ((insns.len() as u64) << 32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        attr[3] = 1 | ((log.len() as u64) << 32);
        attr[4] = log.as_mut_ptr() as u64;
        let mut nm = [0u8; 16];
        for (d, s) in nm.iter_mut().take(15).zip(name) {
            *d = *s;
        }
        attr[6] = u64::from_le_bytes([nm[0], nm[1], nm[2], nm[3], nm[4], nm[5], nm[6], nm[7]]);
        attr[7] =
            u64::from_le_bytes([nm[8], nm[9], nm[10], nm[11], nm[12], nm[13], nm[14], nm[15]]);
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => {
                // SAFETY: the kernel returned a fresh fd that we now own.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                Ok(SteeringProgram { fd })
            }
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let last = text.lines().last().unwrap_or("").trim();
                Err(io::Error::new(
                    e.kind(),
                    if last.is_empty() {
                        format!("loading {what}: {e}")
                    } else {
                        format!("loading {what}: {e} ({last})")
                    },
                ))
            }
        }
    }

    /// Makes the program choose the queue of every frame the host sends
    /// into the TAP `tap` (any of its queue fds).
    pub fn attach(&self, tap: RawFd) -> io::Result<()> {
        let fd: libc::c_int = self.fd.as_raw_fd();
        // SAFETY: TUNSETSTEERINGEBPF reads one int (the program's fd).
        if unsafe { libc::ioctl(tap, TUNSETSTEERINGEBPF, &fd as *const libc::c_int) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs the program on `packet` (starting at its IP header) the way
    /// the kernel's test harness does; returns what the program returned.
    pub fn run(&self, packet: &[u8]) -> io::Result<u32> {
        // The harness wants an Ethernet frame: it reads the EtherType and
        // starts the network header behind it.
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(match packet.first().map(|b| b >> 4) {
            Some(6) => &[0x86, 0xdd],
            _ => &[0x08, 0x00],
        });
        frame.extend_from_slice(packet);
        let mut attr = [0u64; 16];
        attr[0] = self.fd.as_raw_fd() as u64;
        attr[1] = frame.len() as u64;
        attr[2] = frame.as_ptr() as u64;
        attr[4] = 1; // repeat
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok((attr[0] >> 32) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        for p in [program(), flow_program(3, 1), flow_program(3, 4)] {
            every_jump_lands_inside(&p);
        }
    }

    fn every_jump_lands_inside(p: &[Insn]) {
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == JMP && ins.code & 0xf0 != EXIT {
                let to = i as i64 + 1 + i64::from(ins.off);
                assert!((0..p.len() as i64).contains(&to), "jump at {i} to {to}");
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(JMP | EXIT));
    }

    #[test]
    fn queue_of_keeps_the_low_16_bits() {
        assert_eq!(queue_of(0x0001_0003, 4), 3);
        assert_eq!(queue_of(0xffff_0000, 3), 0);
        assert_eq!(queue_of(7, 0), 0);
    }
}
