//! The floor under TLS for a hot 1 MiB response: what any userspace TLS
//! stack must do per byte on this CPU before it reaches the socket. Each
//! 1 MiB body is cut into 16 KiB TLS 1.3 records; each record is copied out
//! of a 64 MiB source (the memory tier's windows are colder than the cache)
//! into a fresh buffer and sealed in place with AES-GCM by `ring`, the
//! crypto rustls (and so Pingora's TLS listener) uses. The kernel copy and
//! the syscalls, which plain HTTP pays too, are not part of it.
//!
//! `cargo bench --bench tls_record`. `benches/tls.sh` measures the whole
//! path; docs/src/performance.md sets the two side by side.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

const BODY: usize = 1 << 20;
const RECORD: usize = 16 * 1024;
const SOURCE: usize = 64 << 20;
const TAG: usize = 16;

/// Seals one body's records with `key`, each copied from `source` at
/// `offset`, as a record layer does: 5-byte header, payload, content type,
/// tag. Returns the ciphertext bytes written (to keep the work observable).
fn seal_body(key: &LessSafeKey, source: &[u8], offset: usize, seq: &mut u64) -> usize {
    let mut written = 0;
    for chunk in source[offset..offset + BODY].chunks(RECORD) {
        let mut record = Vec::with_capacity(5 + chunk.len() + 1 + TAG);
        record.extend_from_slice(&[23, 3, 3, 0, 0]);
        record.extend_from_slice(chunk);
        record.push(23);
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        *seq += 1;
        let (header, payload) = record.split_at_mut(5);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&*header),
                payload,
            )
            .expect("seal");
        record.extend_from_slice(tag.as_ref());
        written += black_box(record).len();
    }
    written
}

fn records(c: &mut Criterion) {
    let source: Vec<u8> = (0..SOURCE).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut group = c.benchmark_group("tls_record");
    group.throughput(Throughput::Bytes(BODY as u64));

    for (name, alg, len) in [
        ("aes_128_gcm", &AES_128_GCM, 16),
        ("aes_256_gcm", &AES_256_GCM, 32),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &vec![7u8; len]).expect("key"));
        let mut seq = 0u64;
        let mut at = 0usize;
        group.bench_function(format!("copy_and_seal_1MiB/{name}"), |b| {
            b.iter(|| {
                at = (at + BODY) % SOURCE;
                let n = seal_body(&key, &source, at, &mut seq);
                assert_eq!(n, BODY + (BODY / RECORD) * (5 + 1 + TAG));
            })
        });
    }

    // The copy alone, for the split between copy and cipher.
    let mut at = 0usize;
    let mut dst = vec![0u8; BODY];
    group.bench_function("copy_1MiB", |b| {
        b.iter(|| {
            at = (at + BODY) % SOURCE;
            dst.copy_from_slice(&source[at..at + BODY]);
            black_box(&dst);
        })
    });
    group.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
