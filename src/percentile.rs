//! Percentiles: the interpolation rule and the latency buckets that make rank lookups cheap.
//!
//! The rule is numpy's default and SQL's `percentile_cont`: for `n` sorted values and a fraction
//! `p`, rank `h = p·(n−1)`, and the result interpolates linearly between the values at ranks
//! `⌊h⌋` and `⌊h⌋+1`. The store keeps, per latency bucket, how many rows fall into it; buckets
//! are the top bits of an order-preserving transform of the value's IEEE-754 pattern, so bucket
//! order is value order and a bucket maps back to an exact value range for an index range pick.

/// Mantissa bits kept in a bucket id: 2^7 = 128 buckets per power of two, each spanning under
/// 0.8% of its values, so an index pick inside a bucket walks few entries.
const MANTISSA_BITS_KEPT: u32 = 7;
const SHIFT: u32 = 52 - MANTISSA_BITS_KEPT;

/// The value at fraction `p` (0..=1) of `sorted` (ascending), or `None` for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let (lo, frac) = rank(n as u64, p);
    let lo = lo as usize;
    let a = sorted[lo];
    let b = sorted.get(lo + 1).copied().unwrap_or(a);
    Some(interpolate(a, b, frac))
}

/// For `n` values, the lower rank (0-based) and the interpolation fraction of percentile `p`.
pub fn rank(n: u64, p: f64) -> (u64, f64) {
    let h = p * (n - 1) as f64;
    let lo = h.floor();
    let lo_rank = (lo as u64).min(n - 1);
    (lo_rank, h - lo)
}

/// `a + frac·(b − a)`, exact when `a == b` (so all-equal inputs give that value back).
pub fn interpolate(a: f64, b: f64, frac: f64) -> f64 {
    if frac == 0.0 || a == b {
        a
    } else {
        a + frac * (b - a)
    }
}

fn ordered_bits(v: f64) -> u64 {
    let v = if v == 0.0 { 0.0 } else { v }; // -0.0 and 0.0 are one value
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_ordered_bits(o: u64) -> f64 {
    let bits = if o >> 63 == 1 { o & !(1 << 63) } else { !o };
    f64::from_bits(bits)
}

/// The bucket holding `v`; buckets ascend with the values they hold.
pub fn bucket(v: f64) -> i64 {
    (ordered_bits(v) >> SHIFT) as i64
}

/// The smallest value of bucket `b` (every value `v` of the bucket has `v >= bucket_floor(b)`,
/// and every value of a lower bucket is below it).
pub fn bucket_floor(b: i64) -> f64 {
    // The transform is monotone, so the bucket's smallest pattern is its smallest value.
    from_ordered_bits((b as u64) << SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(2.5));
        assert_eq!(percentile(&v, 0.95), Some(3.8499999999999996));
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[0.1; 5], 0.95), Some(0.1));
    }

    proptest! {
        #[test]
        fn buckets_preserve_order(a in -1e12f64..1e12, b in -1e12f64..1e12) {
            if a < b {
                prop_assert!(bucket(a) <= bucket(b));
            }
            prop_assert!(bucket_floor(bucket(a)) <= a);
            prop_assert!(bucket_floor(bucket(a) + 1) > a);
        }
    }
}
