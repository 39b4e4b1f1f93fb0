//! What beam-edge remembers about pieces. For now the per-piece metadata
//! (size and content type) learnt from the upstream; the window cache
//! (memory and disk tiers) builds on it.

pub mod disk;
pub mod memory;
pub mod meta;
pub mod window;
