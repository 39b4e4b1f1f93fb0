//! `media::index_of` on files made by the real ffmpeg (installed by
//! `make test`): from a file's first 64 KiB alone it must name the byte where
//! the real index starts (MP4 `moov` after `mdat`, ffmpeg's default; WebM
//! `Cues`, which ffmpeg writes at the end), and say "forward" for a
//! `+faststart` MP4, whose index comes first.

use std::path::Path;
use std::process::Command;

use beam_edge::media::{index_of, IndexPlace};

fn ffmpeg(dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-t", "4"])
        .args(extra)
        .arg(&out)
        .status()
        .expect("run ffmpeg (apt-get install -y ffmpeg)");
    assert!(status.success(), "ffmpeg failed: {status}");
    std::fs::read(&out).unwrap()
}

/// The offset of the top-level MP4 box `kind`, walking the whole file.
fn box_offset(mp4: &[u8], kind: &[u8; 4]) -> Option<u64> {
    let mut at = 0usize;
    while at + 8 <= mp4.len() {
        let len = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        if &mp4[at + 4..at + 8] == kind {
            return Some(at as u64);
        }
        assert!(len >= 8, "a box of {len} bytes at {at}");
        at += len;
    }
    None
}

const HEAD: usize = 64 << 10;

#[test]
fn a_tail_moov_is_named_from_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = ffmpeg(
        dir.path(),
        "tail.mp4",
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let moov = box_offset(&mp4, b"moov").unwrap();
    assert!(
        moov as usize > HEAD,
        "the clip is too small: moov at {moov}"
    );
    let size = mp4.len() as u64;
    match index_of(&mp4[..HEAD], size) {
        IndexPlace::Beyond(r) => {
            assert_eq!(r.start, moov);
            assert_eq!(r.end, size - 1);
        }
        other => panic!("expected the moov at {moov}, got {other:?}"),
    }
}

#[test]
fn a_faststart_mp4_needs_no_jump() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = ffmpeg(
        dir.path(),
        "fast.mp4",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-movflags",
            "+faststart",
        ],
    );
    assert!(box_offset(&mp4, b"moov").unwrap() < box_offset(&mp4, b"mdat").unwrap());
    assert_eq!(
        index_of(&mp4[..HEAD], mp4.len() as u64),
        IndexPlace::Forward
    );
}

#[test]
fn webm_cues_are_named_from_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let webm = ffmpeg(
        dir.path(),
        "clip.webm",
        &["-c:v", "libvpx", "-b:v", "2M", "-deadline", "realtime"],
    );
    let size = webm.len() as u64;
    assert!(webm.len() > HEAD, "the clip is too small: {size} bytes");
    match index_of(&webm[..HEAD], size) {
        IndexPlace::Beyond(r) => {
            // The element there is Cues (EBML id 0x1C53BB6B).
            let at = r.start as usize;
            assert_eq!(&webm[at..at + 4], &[0x1c, 0x53, 0xbb, 0x6b], "at {at}");
            assert!(r.end < size);
        }
        other => panic!("expected the Cues past the head, got {other:?}"),
    }
}
