//! Window geometry: how a piece is cut into aligned windows.
//!
//! A window is 2^k *padded* bytes of the piece's Fr32 layout, which is
//! 127·2^(k-7) raw bytes: exactly one subtree of the piece's CommP tree, so a
//! window can be verified against the PieceCID on its own. Window `i` holds
//! raw bytes `[i·W, min((i+1)·W, size))`; the last window is short.

use crate::http::range::ByteRange;

pub use crate::piece::WindowKey;

/// The window size of a cache, and the arithmetic on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Raw (unpadded) bytes per window.
    pub raw: u64,
}

impl Geometry {
    /// Geometry for windows of `padded` bytes (a power of two ≥ 128).
    pub fn from_padded(padded: u64) -> Geometry {
        Geometry {
            raw: padded / 128 * 127,
        }
    }

    /// Number of windows of a piece of `size` bytes.
    pub fn count(&self, size: u64) -> u64 {
        size.div_ceil(self.raw)
    }

    /// The window holding byte `offset`.
    pub fn index_of(&self, offset: u64) -> u64 {
        offset / self.raw
    }

    /// Raw byte span of window `index` of a piece of `size` bytes (`None` past the end).
    pub fn span(&self, index: u64, size: u64) -> Option<ByteRange> {
        let start = index.checked_mul(self.raw)?;
        if start >= size {
            return None;
        }
        let end = start.saturating_add(self.raw).min(size) - 1;
        Some(ByteRange::new(start, end))
    }

    /// Length of window `index` (0 past the end).
    pub fn len_of(&self, index: u64, size: u64) -> u64 {
        self.span(index, size).map_or(0, |s| s.len())
    }

    /// The windows that cover `range`, with the part of each that is wanted
    /// (offsets relative to the window start).
    pub fn plan(&self, range: ByteRange, size: u64) -> Vec<WindowSlice> {
        let first = self.index_of(range.start);
        let last = self.index_of(range.end.min(size.saturating_sub(1)));
        (first..=last)
            .filter_map(|i| {
                let span = self.span(i, size)?;
                let from = range.start.max(span.start) - span.start;
                let to = range.end.min(span.end) - span.start;
                Some(WindowSlice {
                    index: i,
                    from,
                    to,
                    window_len: span.len(),
                })
            })
            .collect()
    }
}

/// The wanted part of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSlice {
    /// Window index.
    pub index: u64,
    /// First wanted byte, relative to the window start.
    pub from: u64,
    /// Last wanted byte (inclusive), relative to the window start.
    pub to: u64,
    /// The window's full length.
    pub window_len: u64,
}

impl WindowSlice {
    /// True when the slice runs to the window's last byte.
    pub fn reaches_end(&self) -> bool {
        self.to + 1 == self.window_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 1_040_384;

    #[test]
    fn default_window_is_one_commp_subtree() {
        assert_eq!(Geometry::from_padded(1 << 20).raw, W);
        assert_eq!(Geometry::from_padded(128 << 10).raw, 130_048);
    }

    #[test]
    fn spans_and_counts() {
        let g = Geometry::from_padded(1 << 20);
        let size = 3 * W + 5;
        assert_eq!(g.count(size), 4);
        assert_eq!(g.count(W), 1);
        assert_eq!(g.count(0), 0);
        assert_eq!(g.span(0, size), Some(ByteRange::new(0, W - 1)));
        assert_eq!(g.span(3, size), Some(ByteRange::new(3 * W, 3 * W + 4)));
        assert_eq!(g.span(4, size), None);
        assert_eq!(g.len_of(3, size), 5);
        assert_eq!(g.span(u64::MAX, size), None);
    }

    #[test]
    fn plans_cover_exactly_the_range() {
        let g = Geometry::from_padded(1 << 20);
        let size = 3 * W + 5;
        let p = g.plan(ByteRange::new(W - 10, 2 * W + 9), size);
        assert_eq!(
            p,
            vec![
                WindowSlice {
                    index: 0,
                    from: W - 10,
                    to: W - 1,
                    window_len: W
                },
                WindowSlice {
                    index: 1,
                    from: 0,
                    to: W - 1,
                    window_len: W
                },
                WindowSlice {
                    index: 2,
                    from: 0,
                    to: 9,
                    window_len: W
                },
            ]
        );
        assert!(p[0].reaches_end() && p[1].reaches_end() && !p[2].reaches_end());
        let total: u64 = p.iter().map(|s| s.to - s.from + 1).sum();
        assert_eq!(total, W + 20);
        let last = g.plan(ByteRange::new(size - 1, size - 1), size);
        assert_eq!(
            last,
            vec![WindowSlice {
                index: 3,
                from: 4,
                to: 4,
                window_len: 5
            }]
        );
    }
}
