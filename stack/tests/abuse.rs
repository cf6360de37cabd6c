//! Remote abuse (issue 15): what one hostile peer can make a connection
//! do must stay bounded. Each test is a packet trace, the peer's segments
//! crafted with pnet, and checks a bound on the work or the output.

#[macro_use]
mod common;

use common::{Spec, H, PEER_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::Config;

/// The peer's next sequence number right after the handshake.
const P: u32 = PEER_ISS + 1;

/// One-byte segments in descending order across the whole receive window,
/// then the byte at RCV.NXT: every byte is delivered once and in order,
/// and the receive buffer copies each byte a bounded number of times (in
/// once, out once), not once per later arrival (quadratic).
#[test]
fn reassembly_descending_one_byte_segments_cost_linear_copies() {
    let mut h = H::established_with(Config::default(), 1460);
    let wnd = 65535u32;
    for i in (1..wnd).rev() {
        h.send(Spec::new(TcpFlags::ACK).seq(P + i).data(&[i as u8]));
    }
    h.recv_all();
    assert_eq!(h.conn.recv_available(), 0);
    send!(h, ACK, seq = P, data = &[0u8]);
    let got = h.read_all();
    assert_eq!(got.len(), wnd as usize);
    assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    let st = h.conn.stats();
    assert_eq!(st.bytes_in, u64::from(wnd));
    assert!(
        st.recv_bytes_copied <= 2 * u64::from(wnd),
        "{} bytes copied for {} received",
        st.recv_bytes_copied,
        wnd
    );
}
