//! How a harness cuts a client's stream into the pieces TCP might have
//! delivered: sizes from the input's hash, so a failing input replays
//! the same cuts.

/// Cuts `len` bytes into pieces whose sizes come from `seed` (a fixed
/// xorshift stream, so a failing input replays the same cuts): pieces
/// of 1 to `max` bytes.
pub fn pieces(len: usize, seed: u64, max: usize) -> Vec<usize> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (1 + (x % max.max(1) as u64) as usize).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// A 64-bit FNV-1a hash of `data`: the seed of [`pieces`] for an input.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
