//! Maps and sets keyed by request ids, connection numbers and uids:
//! small integers, mostly a counter. One multiplication spreads them
//! across the table's buckets and tag bits, which is hash enough and much
//! cheaper than the standard library's SipHash, paid on every request,
//! reply and dispose notice. The high half of a key is folded into the
//! low half first, so that ids differing only above bit 31 spread too.
//! (A peer may still choose ids that collide: they live in its own
//! connection's table, at most `MAX_HELD` (v1, 256) or `CAPS_MAXINPROG`
//! + 1 (v2) of them, so that slows its own lookups only, and boundedly.)

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by an integer id.
pub(in crate::caps) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of integer ids.
pub(in crate::caps) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing: the key times 2^64 divided by the golden ratio.
#[derive(Default)]
pub(in crate::caps) struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(GOLDEN);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_i32(&mut self, v: i32) {
        self.write_u64(v as u32 as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 32)).wrapping_mul(GOLDEN);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Consecutive ids land in distinct buckets of a 128-bucket table and
    /// do not all share the top 7 bits (the table's tags).
    #[test]
    fn consecutive_ids_spread() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (1u64..=128).map(|i| b.hash_one(i)).collect();
        let buckets: IdSet<u64> = hashes.iter().map(|h| h & 127).collect();
        assert_eq!(buckets.len(), 128);
        let tags: IdSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tags.len() > 64, "{} tags", tags.len());
        // i64 and u32 keys go the same way as u64.
        assert_eq!(b.hash_one(5i64), b.hash_one(5u64));
        assert_eq!(b.hash_one(5u32), b.hash_one(5u64));
    }

    /// Ids that differ only above bit 31 (`k << 32`) spread over the
    /// buckets too (without the fold they all hashed to bucket 0).
    #[test]
    fn ids_differing_in_the_high_half_spread() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let buckets: IdSet<u64> = (1u64..=128).map(|k| b.hash_one(k << 32) & 127).collect();
        assert!(buckets.len() > 64, "{} buckets", buckets.len());
    }
}
