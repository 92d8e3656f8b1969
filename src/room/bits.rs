//! Flags, one bit each: the room's per-event flags (`referenced`: 1 MiB as
//! a `Vec<bool>` at Matrix HQ's million events, 122 KiB as bits).

/// A vector of flags, a bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, on: bool) {
        if self.len % 64 == 0 {
            self.words.push(0);
        }
        self.len += 1;
        self.set(self.len - 1, on);
    }

    /// Flag `i`.
    ///
    /// # Panics
    /// If `i` is past the end.
    pub(super) fn get(&self, i: usize) -> bool {
        assert!(i < self.len, "flag {i} of {}", self.len);
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Sets flag `i`.
    ///
    /// # Panics
    /// If `i` is past the end.
    pub(super) fn set(&mut self, i: usize, on: bool) {
        assert!(i < self.len, "flag {i} of {}", self.len);
        let bit = 1u64 << (i % 64);
        if on {
            self.words[i / 64] |= bit;
        } else {
            self.words[i / 64] &= !bit;
        }
    }

    /// Keeps the first `len` flags.
    pub(super) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.len = len;
        self.words.truncate(len.div_ceil(64));
        if len % 64 != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (len % 64)) - 1;
            }
        }
    }

    /// The flags as bytes, the first flag the low bit of the first byte.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let bytes = self.words.iter().flat_map(|w| w.to_le_bytes());
        bytes.take(self.len.div_ceil(8)).collect()
    }

    /// `len` flags from [`to_bytes`](Self::to_bytes); `None` unless
    /// `bytes` holds exactly that many (no bit set past the last flag).
    pub(super) fn from_bytes(bytes: &[u8], len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        let bits = Bits { words, len };
        // Nothing set after the last flag.
        let tail_clean = match bits.words.last() {
            Some(last) if len % 64 != 0 => last >> (len % 64) == 0,
            _ => true,
        };
        tail_clean.then_some(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags read back as set, through pushes, sets, cuts and bytes, at
    /// every length around word and byte boundaries.
    #[test]
    fn flags_read_back_as_set() {
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 200] {
            let want: Vec<bool> = (0..n).map(|i| i % 3 == 0 || i % 7 == 1).collect();
            let mut b = Bits::default();
            want.iter().for_each(|on| b.push(*on));
            assert_eq!(b.len(), n);
            assert_eq!((0..n).map(|i| b.get(i)).collect::<Vec<_>>(), want, "{n}");
            let bytes = b.to_bytes();
            assert_eq!(bytes.len(), n.div_ceil(8));
            assert_eq!(Bits::from_bytes(&bytes, n), Some(b.clone()));
            assert_eq!(Bits::from_bytes(&bytes, n + 8), None, "too few bytes");
            if n % 8 != 0 {
                let mut extra = bytes.clone();
                *extra.last_mut().unwrap() |= 0x80;
                assert_eq!(Bits::from_bytes(&extra, n), None, "a bit past the last flag");
            }
            for cut in [0, n / 2, n.saturating_sub(1)] {
                let mut c = b.clone();
                c.truncate(cut);
                c.push(true);
                assert_eq!((0..cut).map(|i| c.get(i)).collect::<Vec<_>>(), want[..cut], "{n} cut to {cut}");
                assert!(c.get(cut), "the flag pushed after a cut reads as pushed");
                if n > 0 {
                    c.set(cut, false);
                    assert!(!c.get(cut));
                }
            }
        }
    }
}
