//! The memory tier, measured with 1 MiB windows: a get that hits (what every
//! hot request pays per window), a get that misses, and a put into a full
//! tier, which must evict. Windows share one buffer (`Bytes` clones), so the
//! figures are the tier's bookkeeping (TinyUFO admission and S3-FIFO
//! eviction, key check), not a memcpy.
//!
//! `cargo bench --bench memory_tier`.

use std::hint::black_box;
use std::sync::Arc;

use beam_edge::cache::memory::MemoryTier;
use beam_edge::cache::window::WindowKey;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

const WINDOW: u64 = 1 << 20;
/// Windows the tier holds in these benches (a 64 MiB budget).
const HELD: u64 = 64;

fn cid() -> Arc<str> {
    Arc::from("bafkzcibcaapbench0000000000000000000000000000000000000000000000")
}

fn tier(c: &mut Criterion) {
    let cid = cid();
    let window = Bytes::from(vec![0x5a_u8; WINDOW as usize]);
    let mut group = c.benchmark_group("memory_tier");

    // A tier with room to spare, holding HELD windows: every get hits.
    let warm = MemoryTier::new(4 * HELD * WINDOW, WINDOW);
    for i in 0..HELD {
        black_box(warm.put(WindowKey::new(cid.clone(), i), window.clone()));
    }
    let keys: Vec<WindowKey> = (0..HELD).map(|i| WindowKey::new(cid.clone(), i)).collect();
    assert!(
        keys.iter().all(|k| warm.get(k).is_some()),
        "every window admitted"
    );
    let mut n = 0usize;
    group.bench_function("get_hit_1MiB", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            let got = warm.get(black_box(&keys[n]));
            debug_assert!(got.is_some());
            got
        })
    });
    let absent = WindowKey::new(cid.clone(), 1 << 40);
    group.bench_function("get_miss", |b| b.iter(|| warm.get(black_box(&absent))));

    // A full tier: each put of a new window evicts one (or is refused).
    let full = MemoryTier::new(HELD * WINDOW, WINDOW);
    for i in 0..HELD {
        black_box(full.put(WindowKey::new(cid.clone(), i), window.clone()));
    }
    let mut next = HELD;
    group.bench_function("put_evict_1MiB", |b| {
        b.iter(|| {
            next += 1;
            black_box(full.put(WindowKey::new(cid.clone(), next), window.clone()))
        })
    });
    let s = full.stats();
    assert!(s.bytes <= HELD * WINDOW, "over budget: {} bytes", s.bytes);
    assert!(s.evictions > 0, "a full tier evicted");
    group.finish();
}

criterion_group!(benches, tier);
criterion_main!(benches);
