//! A processor's batch record: every batch of segments a processor takes
//! while a pcapng file is written goes into the trace as a pcapng Custom
//! Block (type `0x40000BAD`, "not to be copied" by editors that change
//! the frames), so `vnic replay` gives each processor exactly the
//! batches it took, when it took them, even those that sent nothing
//! (which leave no stamped frame). Wireshark and tshark skip a custom
//! block whose Private Enterprise Number they do not know; the frames'
//! numbers do not change.
//!
//! The block's body is the PEN (32 bits, in the section's byte order)
//! and then one line of text, NUL-padded to 32 bits:
//!
//! ```text
//! vnic-batch/1 cpu=2 t=1234567 in=17 b=9
//! ```
//!
//! the processor, the clock reading the batch used (ns since the replay
//! block's epoch, as a frame's turn stamp), the segments it had taken
//! from its queue once the batch was taken, and the batch's number.

/// The pcapng Custom Block type vnic writes: the one whose contents a
/// pcapng editor must not copy into a changed file.
pub const CUSTOM_BLOCK: u32 = 0x4000_0BAD;

/// The Custom Block type a pcapng editor may copy: read as well.
pub const CUSTOM_BLOCK_COPYABLE: u32 = 0x0000_0BAD;

/// The Private Enterprise Number in vnic's custom blocks: 32473, the one
/// IANA reserves for documentation and examples (RFC 5612); vnic has
/// none of its own, and the text's first word names the format anyway.
pub const PEN: u32 = 32473;

/// The first word of a batch record's text, with the format's version.
pub const MAGIC: &str = "vnic-batch/1";

/// One batch a processor took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    /// The processor.
    pub cpu: usize,
    /// Its clock reading for the batch: ns since the replay block's epoch.
    pub t: u64,
    /// Segments it had taken from its queue after this batch.
    pub taken: u64,
    /// The batch's number (1 for the first): the `b=` of the frames it
    /// sent.
    pub batch: u64,
}

impl BatchRecord {
    /// The custom block's body: the PEN in `big_endian` or little-endian
    /// byte order (the section's), then the text, NUL-padded to 32 bits.
    pub fn encode(&self, big_endian: bool) -> Vec<u8> {
        let pen = if big_endian {
            PEN.to_be_bytes()
        } else {
            PEN.to_le_bytes()
        };
        let mut body = pen.to_vec();
        body.extend_from_slice(
            format!(
                "{MAGIC} cpu={} t={} in={} b={}",
                self.cpu, self.t, self.taken, self.batch
            )
            .as_bytes(),
        );
        while body.len() % 4 != 0 {
            body.push(0);
        }
        body
    }

    /// Reads a custom block's body back: `Ok(None)` when it is not
    /// vnic's (another PEN, another format), an error (one line) when it
    /// is vnic's and does not read.
    pub fn parse(body: &[u8]) -> Result<Option<BatchRecord>, String> {
        let Some((pen, text)) = body.split_first_chunk::<4>() else {
            return Ok(None);
        };
        if u32::from_be_bytes(*pen) != PEN && u32::from_le_bytes(*pen) != PEN {
            return Ok(None);
        }
        let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
        let Ok(text) = std::str::from_utf8(&text[..end]) else {
            return Ok(None);
        };
        let mut words = text.split(' ');
        if words.next() != Some(MAGIC) {
            return Ok(None);
        }
        let (mut cpu, mut t, mut taken, mut batch) = (None, None, None, None);
        for w in words {
            let (key, value) = w.split_once('=').unwrap_or((w, ""));
            let slot = match key {
                "cpu" => {
                    cpu = value.parse().ok();
                    continue;
                }
                "t" => &mut t,
                "in" => &mut taken,
                "b" => &mut batch,
                _ => continue, // a newer vnic's word
            };
            *slot = value.parse().ok();
        }
        match (cpu, t, taken, batch) {
            (Some(cpu), Some(t), Some(taken), Some(batch)) => Ok(Some(BatchRecord {
                cpu,
                t,
                taken,
                batch,
            })),
            _ => Err(format!(
                "a batch record without a readable cpu, t, in and b: \"{text}\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_in_either_byte_order() {
        let r = BatchRecord {
            cpu: 3,
            t: 1_234_567_890,
            taken: 17,
            batch: 9,
        };
        for be in [false, true] {
            let body = r.encode(be);
            assert_eq!(body.len() % 4, 0);
            assert_eq!(BatchRecord::parse(&body), Ok(Some(r)));
        }
    }

    #[test]
    fn a_foreign_block_is_not_a_record_and_a_malformed_one_is_an_error() {
        assert_eq!(BatchRecord::parse(&[]), Ok(None));
        assert_eq!(BatchRecord::parse(&[0, 0, 0, 9, b'x']), Ok(None));
        let mut other = PEN.to_le_bytes().to_vec();
        other.extend_from_slice(b"something else\0\0");
        assert_eq!(BatchRecord::parse(&other), Ok(None));
        let mut bad = PEN.to_le_bytes().to_vec();
        bad.extend_from_slice(b"vnic-batch/1 cpu=1 t=x in=2 b=1\0");
        let e = BatchRecord::parse(&bad).unwrap_err();
        assert!(e.contains("t=x"), "{e}");
        assert!(!e.contains('\n'));
        let mut cut = PEN.to_le_bytes().to_vec();
        cut.extend_from_slice(b"vnic-batch/1 cpu=1 t=");
        assert!(BatchRecord::parse(&cut).is_err());
        let mut newer = PEN.to_be_bytes().to_vec();
        newer.extend_from_slice(b"vnic-batch/1 cpu=1 t=5 in=2 b=1 more=7");
        assert_eq!(
            BatchRecord::parse(&newer),
            Ok(Some(BatchRecord {
                cpu: 1,
                t: 5,
                taken: 2,
                batch: 1
            }))
        );
    }

    /// A processor's batches go through its tracing sink into the pcapng
    /// file as custom blocks, between its frames, in order; a sink
    /// without a turn stamp (the adapter's) records none.
    #[test]
    fn a_processors_batches_reach_the_file_between_its_frames() {
        use crate::emit::{CaptureSink, FrameSink};
        use crate::trace::turn::TurnStamp;
        use crate::trace::{Origin, Tracer, TracingSink};
        use pcap_file::pcapng::{Block, PcapNgReader};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("vnic-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("b.pcapng");
        let o = super::super::tests::opts(Some(path.clone()), None);
        let t = Tracer::start_tuned(o, super::super::tests::tuning()).expect("start");
        let epoch = Instant::now();
        let turn = Arc::new(TurnStamp::new(epoch));
        let inner = Arc::new(CaptureSink::default());
        let cpu = TracingSink::new(inner.clone(), t.clone(), Origin::Processor(2)).with_turn(turn);
        let adapter = TracingSink::new(inner, t.clone(), Origin::Adapter);
        cpu.batch(epoch + Duration::from_micros(5), 3, 1);
        cpu.send_frame(&super::super::frames::udp4(b"x"))
            .expect("send");
        cpu.batch(epoch + Duration::from_micros(9), 4, 2);
        adapter.batch(epoch, 1, 1);
        t.close();
        let file = std::fs::File::open(&path).expect("file");
        let mut r = PcapNgReader::new(file).expect("pcapng");
        let mut seen = Vec::new();
        while let Some(b) = r.next_block() {
            match b.expect("block") {
                Block::Unknown(u) => {
                    assert_eq!(u.type_, CUSTOM_BLOCK);
                    let rec = BatchRecord::parse(&u.value).expect("reads").expect("ours");
                    seen.push(format!("{}/{}/{}/{}", rec.cpu, rec.t, rec.taken, rec.batch));
                }
                Block::EnhancedPacket(_) => seen.push("frame".into()),
                _ => {}
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(seen, ["2/5000/3/1", "frame", "2/9000/4/2"]);
        assert_eq!(t.stats().lost, 0);
    }
}
