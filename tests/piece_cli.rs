//! The `piece-cid` command on real files: output lines, `--v1`, the layer
//! file, and its refusals.

use std::path::PathBuf;

use beam_edge::piece::cli::{write_piece_cids, PieceCidCommandError};
use beam_edge::piece::commp::{verify_layer, DEFAULT_WINDOW_PADDED};
use beam_edge::piece::PieceCid;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("piece-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(
    files: &[PathBuf],
    v1: bool,
    layer: Option<&std::path::Path>,
) -> Result<String, PieceCidCommandError> {
    let mut out = Vec::new();
    write_piece_cids(files, v1, layer, DEFAULT_WINDOW_PADDED, &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

#[test]
fn prints_one_line_per_file_in_v2_or_v1() {
    let dir = TempDir::new("lines");
    let zeros = dir.0.join("zeros-1024");
    let quads = dir.0.join("quads");
    std::fs::write(&zeros, vec![0u8; 1024]).expect("write");
    let q: Vec<u8> = (0u8..4).flat_map(|b| std::iter::repeat_n(b, 127)).collect();
    std::fs::write(&quads, q).expect("write");
    let files = [zeros.clone(), quads.clone()];

    let v2 = run(&files, false, None).expect("runs");
    assert_eq!(
        v2,
        format!(
            "bafkzcibd6adqn7d6skbjnziw7kw6tbvsr6jnisspes4tkscsem3wu6mqe66br6bt  {}\n\
             bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {}\n",
            zeros.display(),
            quads.display()
        )
    );
    let v1 = run(&files, true, None).expect("runs");
    assert_eq!(
        v1,
        format!(
            "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy  {}\n\
             baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi  {}\n",
            zeros.display(),
            quads.display()
        )
    );
}

#[test]
fn writes_the_layer_as_raw_nodes() {
    let dir = TempDir::new("layer");
    let input = dir.0.join("two-and-a-bit-windows");
    let data: Vec<u8> = (0..2 * 1_040_384 + 10).map(|i| (i % 241) as u8).collect();
    std::fs::write(&input, &data).expect("write");
    let layer_path = dir.0.join("layer.bin");

    let line = run(std::slice::from_ref(&input), false, Some(&layer_path)).expect("runs");
    let cid: PieceCid = line
        .split_whitespace()
        .next()
        .expect("a CID")
        .parse()
        .expect("valid CID");
    let raw = std::fs::read(&layer_path).expect("layer written");
    assert_eq!(raw.len(), 3 * 32);
    let layer: Vec<[u8; 32]> = raw
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    assert_eq!(verify_layer(&cid, DEFAULT_WINDOW_PADDED, &layer), Ok(()));
    assert!(
        !dir.0.join("layer.bin.tmp").exists(),
        "temp file renamed away"
    );
}

#[test]
fn refuses_what_it_cannot_do() {
    let dir = TempDir::new("refuse");
    let small = dir.0.join("small");
    std::fs::write(&small, [1u8; 100]).expect("write");
    let layer_path = dir.0.join("layer.bin");

    let err =
        run(&[small.clone(), small.clone()], false, Some(&layer_path)).expect_err("two files");
    assert_eq!(
        err.to_string(),
        "--layer takes exactly one input file, got 2"
    );

    let err = run(std::slice::from_ref(&small), false, None).expect_err("too small");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: payload of 100 bytes is too small: a piece holds at least 127 bytes",
            small.display()
        )
    );

    let missing = dir.0.join("missing");
    let err = run(std::slice::from_ref(&missing), false, None).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("reading {}: ", missing.display())),
        "{err}"
    );

    let err = run(&[], false, None).expect_err("no input");
    assert_eq!(err.to_string(), "no input files (use - for standard input)");
}
