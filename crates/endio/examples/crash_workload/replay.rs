//! Replays a device-mapper `log-writes` log and checks the workload's
//! oracle at every flush mark.
//!
//! The log's format (all integers little-endian; a "block" is the logged
//! device's logical block size, `sectorsize`):
//!
//! 1. Block 0, the super: `magic: u64` (`0x6a736677736872`), `version: u64`
//!    (1), `nr_entries: u64`, `sectorsize: u32`.
//! 2. From block 1, `nr_entries` entries one after another. Each starts with
//!    a header block: `sector: u64`, `nr_sectors: u64`, `flags: u64`,
//!    `data_len: u64` (sectors in blocks of the logged device). `flags`:
//!    1 flush, 2 FUA, 4 discard, 8 mark, 16 metadata.
//! 3. A mark's name (`data_len` bytes) follows its header inside the header
//!    block; a discard has no data; any other entry is followed by
//!    `nr_sectors` blocks of the data written at `sector`.
//!
//! Entries are in the order the writes reached stable storage: a write is
//! logged when the next flush after its completion completes, so replaying a
//! prefix of the log gives what the device held at that point of a crash.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::pattern::{BLOCK, word};

const MAGIC: u64 = 0x006a_7366_7773_6872;
const FLAG_DISCARD: u64 = 4;
const FLAG_MARK: u64 = 8;
/// Violations printed in full (the rest are counted).
const REPORTED_MAX: u64 = 10;

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One write of the manifest.
struct Write {
    off: u64,
    len: u64,
    /// Index in the manifest of its acknowledgement, if it succeeded.
    acked_ok_at: Option<usize>,
}

/// The manifest, as far as the oracle needs it.
struct Manifest {
    seed: u64,
    size: u64,
    writes: Vec<Write>,
    /// Flush k (1-based) → index of its `F` line, when it completed ok.
    flush_ok_at: HashMap<u64, usize>,
    /// Flushes whose mark the workload placed.
    marked: Vec<u64>,
}

fn field(header: &str, key: &str) -> Result<u64, String> {
    header
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| format!("manifest header has no {key}"))?
        .parse()
        .map_err(|e| format!("manifest {key}: {e}"))
}

fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .filter(|l| l.starts_with("workload "))
        .ok_or("manifest has no workload line")?;
    let mut m = Manifest {
        seed: field(header, "seed")?,
        size: field(header, "size")?,
        writes: Vec::new(),
        flush_ok_at: HashMap::new(),
        marked: Vec::new(),
    };
    let mut submitted_at = HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |j: usize| -> Result<u64, String> {
            f.get(j)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("manifest line {}: {line}", i + 1))
        };
        match f.first().copied() {
            Some("W") => {
                let id = num(1)?;
                if id != m.writes.len() as u64 {
                    return Err(format!("manifest line {}: write ids out of order", i + 1));
                }
                m.writes.push(Write {
                    off: num(2)?,
                    len: num(3)?,
                    acked_ok_at: None,
                });
            }
            Some("A") if f.get(2) == Some(&"ok") => {
                let w = m
                    .writes
                    .get_mut(num(1)? as usize)
                    .ok_or("ack of an unknown write")?;
                w.acked_ok_at = Some(i);
            }
            Some("F") => {
                submitted_at.insert(num(1)?, i);
            }
            Some("D") if f.get(2) == Some(&"ok") => {
                let k = num(1)?;
                let at = *submitted_at
                    .get(&k)
                    .ok_or("flush completed before it was submitted")?;
                m.flush_ok_at.insert(k, at);
            }
            Some("M") => m.marked.push(num(1)?),
            _ => {}
        }
    }
    Ok(m)
}

/// The writes covering each block, in the order they were submitted (two
/// never overlap in flight, so this is also the order they were applied).
fn writes_per_block(m: &Manifest) -> Vec<Vec<usize>> {
    let mut per = vec![Vec::new(); (m.size / BLOCK) as usize];
    for (id, w) in m.writes.iter().enumerate() {
        for b in w.off / BLOCK..(w.off + w.len) / BLOCK {
            per[b as usize].push(id);
        }
    }
    per
}

/// Fills `out` with what write `id` (or nothing: zeros) put at `off`.
fn version(seed: u64, id: Option<usize>, off: u64, out: &mut [u8]) {
    for (i, w) in out.chunks_exact_mut(8).enumerate() {
        let v = id.map_or(0, |id| word(seed, id as u64, off + 8 * i as u64));
        w.copy_from_slice(&v.to_le_bytes());
    }
}

/// The oracle at flush `k`: every block holds the last write acknowledged
/// before flush k was submitted (zeros if none), or a later write to it;
/// each byte from one of those (a later write may be torn by the crash).
/// Returns the blocks that do not.
fn check_flush(m: &Manifest, per: &[Vec<usize>], image: &[u8], k: u64, flush_at: usize) -> u64 {
    let mut bad = 0;
    let mut cands: Vec<Vec<u8>> = Vec::new();
    for (b, ids) in per.iter().enumerate() {
        let off = b as u64 * BLOCK;
        let got = &image[off as usize..(off + BLOCK) as usize];
        let durable = ids
            .iter()
            .rposition(|&id| m.writes[id].acked_ok_at.is_some_and(|a| a < flush_at));
        let allowed: Vec<Option<usize>> = match durable {
            Some(p) => ids[p..].iter().map(|&id| Some(id)).collect(),
            None => std::iter::once(None)
                .chain(ids.iter().map(|&id| Some(id)))
                .collect(),
        };
        cands.clear();
        for id in &allowed {
            let mut v = vec![0u8; BLOCK as usize];
            version(m.seed, *id, off, &mut v);
            cands.push(v);
        }
        if cands.iter().any(|c| c == got) {
            continue;
        }
        let torn_ok = (0..BLOCK as usize).all(|i| cands.iter().any(|c| c[i] == got[i]));
        if !torn_ok {
            bad += 1;
            if bad <= REPORTED_MAX {
                eprintln!(
                    "violation at flush-{k}: block {b} (offset {off}) holds none of: {}",
                    allowed
                        .iter()
                        .map(|id| id.map_or("zeros".into(), |i| format!("write {i}")))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    bad
}

struct Args {
    log: PathBuf,
    manifest: PathBuf,
    device: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let (mut log, mut manifest, mut device) = (None, None, None);
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--log" => log = Some(v.into()),
            "--manifest" => manifest = Some(v.into()),
            "--device" => device = Some(v.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        log: log.ok_or("--log is required")?,
        manifest: manifest.ok_or("--manifest is required")?,
        device,
    })
}

/// Replays and checks; the exit status.
pub(crate) fn main(args: &[String]) -> i32 {
    match parse_args(args).and_then(|a| check(&a)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("crash_workload check: {e}");
            2
        }
    }
}

fn check(a: &Args) -> Result<bool, String> {
    let text = std::fs::read_to_string(&a.manifest)
        .map_err(|e| format!("{}: {e}", a.manifest.display()))?;
    let m = parse_manifest(&text)?;
    let per = writes_per_block(&m);
    let file = File::open(&a.log).map_err(|e| format!("{}: {e}", a.log.display()))?;
    let mut log = BufReader::with_capacity(1 << 20, file);
    let mut sb = [0u8; 512];
    log.read_exact(&mut sb)
        .map_err(|e| format!("log super: {e}"))?;
    if le64(&sb, 0) != MAGIC || le64(&sb, 8) != 1 {
        return Err("not a log-writes log (magic or version)".into());
    }
    let entries = le64(&sb, 16);
    let ss = u32::from_le_bytes(sb[24..28].try_into().unwrap()) as usize;
    if !(512..=4096).contains(&ss) || !ss.is_power_of_two() {
        return Err(format!("log sector size {ss}"));
    }
    let mut skip = vec![0u8; ss - 512];
    log.read_exact(&mut skip).map_err(|e| e.to_string())?;

    let mut image = vec![0u8; m.size as usize];
    let mut block = vec![0u8; ss];
    let (mut marks, mut outside, mut violations, mut logged) = (Vec::new(), 0u64, 0u64, 0u64);
    for _ in 0..entries {
        log.read_exact(&mut block)
            .map_err(|e| format!("log entry: {e}"))?;
        let (sector, nr, flags, data_len) = (
            le64(&block, 0),
            le64(&block, 8),
            le64(&block, 16),
            le64(&block, 24),
        );
        if flags & FLAG_MARK != 0 {
            let end = (32 + data_len as usize).min(ss);
            let name = String::from_utf8_lossy(&block[32..end]).into_owned();
            if let Some(k) = name
                .strip_prefix("flush-")
                .and_then(|k| k.parse::<u64>().ok())
            {
                let at = *m
                    .flush_ok_at
                    .get(&k)
                    .ok_or_else(|| format!("mark {name} of a flush that did not complete"))?;
                violations += check_flush(&m, &per, &image, k, at);
                marks.push(k);
            }
            continue;
        }
        let (start, len) = (sector * ss as u64, nr * ss as u64);
        let in_range = start + len <= m.size;
        if !in_range && len > 0 {
            outside += 1;
            eprintln!(
                "violation: a write at byte {start}, {len} bytes, outside the workload's {} bytes",
                m.size
            );
        }
        if flags & FLAG_DISCARD != 0 {
            if in_range {
                image[start as usize..(start + len) as usize].fill(0);
            }
            continue;
        }
        let mut data = vec![0u8; len as usize];
        log.read_exact(&mut data)
            .map_err(|e| format!("log data: {e}"))?;
        if in_range && len > 0 {
            image[start as usize..(start + len) as usize].copy_from_slice(&data);
            logged += 1;
        }
    }
    let missing: Vec<u64> = m
        .marked
        .iter()
        .filter(|k| !marks.contains(k))
        .copied()
        .collect();
    let mut mismatch = 0u64;
    if let Some(dev) = &a.device {
        mismatch = compare_with_device(dev, &image)?;
    }
    println!(
        "check: {} log entries ({logged} writes in range), flush marks checked {}, violations {violations}, outside {outside}, marks missing {}, replay vs device {}",
        entries,
        marks.len(),
        missing.len(),
        match (&a.device, mismatch) {
            (None, _) => "not compared".to_string(),
            (Some(_), 0) => "identical".to_string(),
            (Some(_), n) => format!("{n} blocks differ"),
        }
    );
    Ok(violations == 0 && outside == 0 && missing.is_empty() && mismatch == 0 && !marks.is_empty())
}

/// Blocks of `image` that differ from the device (read with `O_DIRECT`, so
/// from the device, not from a cache).
fn compare_with_device(dev: &std::path::Path, image: &[u8]) -> Result<u64, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| format!("{}: {e}", dev.display()))?;
    let chunk = 1 << 20;
    let mut buf = endio::Buf::zeroed(chunk, 4096);
    let mut differ = 0;
    for (i, want) in image.chunks(chunk).enumerate() {
        let got = &mut buf[..want.len()];
        f.read_exact_at(got, (i * chunk) as u64)
            .map_err(|e| format!("{}: {e}", dev.display()))?;
        differ += got
            .chunks(BLOCK as usize)
            .zip(want.chunks(BLOCK as usize))
            .filter(|(g, w)| g != w)
            .count() as u64;
    }
    Ok(differ)
}
