//! Time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford
//! base32). The caller supplies the time and the randomness, so this stays pure.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Encodes a 26-character ULID from a millisecond timestamp and 80 bits of randomness.
pub fn ulid(ms: u64, random: u128) -> String {
    let value: u128 = ((ms as u128 & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = ALPHABET[((value >> shift) & 0x1F) as usize];
    }
    out.iter().map(|&b| b as char).collect()
}

/// True when `s` has the shape of an id made by [`ulid`] (optionally behind a `prefix_`).
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_sort_by_time() {
        let a = ulid(1_700_000_000_000, u128::MAX);
        let b = ulid(1_700_000_000_001, 0);
        assert!(a < b);
        assert_eq!(a.len(), 26);
        assert!(is_ulid(&a) && is_ulid(&b));
    }

    #[test]
    fn the_same_inputs_give_the_same_id() {
        assert_eq!(ulid(42, 7), ulid(42, 7));
        assert_ne!(ulid(42, 7), ulid(42, 8));
    }

    #[test]
    fn lowercase_or_short_strings_are_not_ulids() {
        assert!(!is_ulid("01hx"));
        assert!(!is_ulid(&ulid(1_700_000_000_000, u128::MAX).to_lowercase()));
    }
}
