//! Window planning, measured: `Geometry::plan` for the 1 MiB range a player
//! asks for and for a whole 4 GiB piece (about 4,100 windows), with 1 MiB
//! (padded) windows. Planning runs once per request before any byte moves,
//! so it must stay far below a request's cost even for the largest range.
//!
//! `cargo bench --bench window_plan`.

use std::hint::black_box;

use beam_edge::cache::window::Geometry;
use beam_edge::http::range::ByteRange;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PIECE: u64 = 4 << 30;

fn plan(c: &mut Criterion) {
    let g = Geometry::from_padded(1 << 20);
    let mut group = c.benchmark_group("window_plan");

    // Unaligned, so it straddles two windows like most player requests.
    let small = ByteRange::new(3_000_000, 3_000_000 + (1 << 20) - 1);
    assert_eq!(g.plan(small, PIECE).len(), 2);
    group.throughput(Throughput::Elements(2));
    group.bench_function("1MiB_range", |b| {
        b.iter(|| g.plan(black_box(small), black_box(PIECE)))
    });

    let whole = ByteRange::new(0, PIECE - 1);
    let windows = g.plan(whole, PIECE).len() as u64;
    assert_eq!(windows, g.count(PIECE));
    group.throughput(Throughput::Elements(windows));
    group.bench_function("4GiB_range", |b| {
        b.iter(|| g.plan(black_box(whole), black_box(PIECE)))
    });
    group.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
