#[macro_use]
mod common;
use common::{Spec, H, OUR_ISS};
use pnet_packet::tcp::TcpFlags;
use vnic_stack::Config;
const U: u32 = OUR_ISS + 1;
const MSS: u32 = 1460;

#[test]
fn scratch_order() {
    let mut h = H::established_spec(Config::default(), Spec::new(TcpFlags::SYN).mss(1460).sack_perm(true));
    h.conn.send(&[7u8; 200_000]);
    let out = h.recv_all();
    println!("initial {}", out.len());
    // ack first 6, keep 4 out
    send!(h, ACK, ack = U + 6 * MSS);
    let out = h.recv_all();
    println!("after ack: {} cwnd {}", out.len(), h.conn.stats().cwnd);
    let una = U + 6 * MSS;
    for k in 1..=3u32 {
        send!(h, ACK, ack = una, sack = &[(una + MSS, una + (1 + k) * MSS)]);
        let out = h.recv_all();
        println!("sack {k}: {:?} cwnd {}", out.iter().map(|o| (o.seq - U) / MSS).collect::<Vec<_>>(), h.conn.stats().cwnd);
    }
}
