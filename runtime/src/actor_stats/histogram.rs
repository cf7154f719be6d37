//! The handling-time histogram's buckets: `SUB` log-spaced buckets per power of two of
//! nanoseconds (atomics count into them), and quantiles read off bucket counts.

/// Sub-buckets per power of two in the histogram (4: a bucket's edges are at most 25 % apart).
pub(super) const SUB: u32 = 4;
/// Powers of two covered: durations up to 2^40 ns (about 18 minutes).
const OCTAVES: u32 = 40;
pub(super) const BUCKETS: usize = (OCTAVES * SUB) as usize;
// samples name buckets by a u16
const _: () = assert!(BUCKETS <= u16::MAX as usize);

/// The bucket of a duration in nanoseconds: `SUB` buckets per power of two.
pub(super) fn bucket_of(ns: u64) -> usize {
    if ns < u64::from(SUB) {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // ns >= 2^exp
    let sub = ((ns >> (exp - 2)) & 0b11) as u32; // the two bits after the leading one
    (((exp - 1) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The upper edge (exclusive) of a bucket, in nanoseconds.
pub(super) fn bucket_upper(b: usize) -> u64 {
    let b = b as u32;
    if b < SUB {
        return u64::from(b) + 1;
    }
    let exp = b / SUB + 1;
    let sub = u64::from(b % SUB);
    (1u64 << exp) + (sub + 1) * (1u64 << (exp - 2))
}

/// The value under which `q` (0..1) of the counted durations fall, as a bucket's upper edge in
/// nanoseconds; 0 when nothing was counted.
pub(super) fn quantile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return bucket_upper(b);
        }
    }
    bucket_upper(counts.len() - 1)
}
