//! CommP throughput: 64 MiB on 1 and 2 threads, and one window-root check
//! (a 1,040,384-byte window, the proxy's default cache window).
//!
//! Run: `cargo bench --bench commp`. Criterion prints MiB/s or GiB/s per case.

use std::time::Duration;

use beam_edge::piece::commp::{window_root, CommP, DEFAULT_WINDOW_PADDED};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Deterministic incompressible bytes (xorshift64*), so no zero shortcut or
/// cache effect flatters the numbers.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn commp_throughput(c: &mut Criterion) {
    let data = pseudo_random(64 << 20);
    let mut group = c.benchmark_group("commp_64MiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    for threads in [1usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let mut hasher = CommP::with_threads(threads);
                    // 1 MiB updates, as the CLI and the upload path feed it.
                    for chunk in data.chunks(1 << 20) {
                        hasher.update(chunk);
                    }
                    black_box(hasher.finish())
                })
            },
        );
    }
    group.finish();
}

fn window_check(c: &mut Criterion) {
    let window = pseudo_random((DEFAULT_WINDOW_PADDED / 128 * 127) as usize);
    let mut group = c.benchmark_group("window_root");
    group.throughput(Throughput::Bytes(window.len() as u64));
    group.bench_function("1040384_bytes", |b| {
        b.iter(|| black_box(window_root(black_box(&window), DEFAULT_WINDOW_PADDED)))
    });
    group.finish();
}

criterion_group!(benches, commp_throughput, window_check);
criterion_main!(benches);
