//! `endio stat PATH...`: the page-cache residency of files and block
//! devices, as `fincore` prints it plus dirty and writeback pages
//! (`cachestat(2)`; `mincore(2)` where the kernel lacks it, which sees
//! cached pages only).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::bench::units::fmt_bytes;

/// Options of `endio stat`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatArgs {
    /// Files or block devices.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Print a JSON array, one object per path.
    #[arg(long)]
    json: bool,

    /// Print byte counts instead of sizes like 1.5 MiB.
    #[arg(long, short = 'b')]
    bytes: bool,
}

/// The residency of one path.
#[derive(Debug, Clone, Serialize)]
struct PathStat {
    path: PathBuf,
    /// `file` or `block_device`.
    kind: &'static str,
    size_bytes: u64,
    cached_bytes: u64,
    cached_pages: u64,
    dirty_bytes: u64,
    dirty_pages: u64,
    writeback_bytes: u64,
    writeback_pages: u64,
    page_size: u64,
    /// `cachestat` or `mincore` (dirty and writeback read 0 from mincore).
    source: &'static str,
}

fn stat_one(path: &Path) -> anyhow::Result<PathStat> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        bail!(
            "{} is a directory; give the files in it (e.g. {}/*)",
            path.display(),
            path.display()
        );
    }
    let kind = if ft.is_block_device() {
        "block_device"
    } else if ft.is_file() {
        "file"
    } else {
        bail!(
            "{} is neither a regular file nor a block device: it has no page cache",
            path.display()
        );
    };
    let file = File::open(path).with_context(|| {
        format!(
            "cannot open {} for reading; residency needs read access (root for most block devices)",
            path.display()
        )
    })?;
    let size = if kind == "block_device" {
        endio::testing::block_device_size(&file)
            .with_context(|| format!("cannot read the size of {}", path.display()))?
    } else {
        meta.len()
    };
    let r = endio::residency(&file, 0..0)
        .with_context(|| format!("cannot read the page-cache residency of {}", path.display()))?;
    let pages = |b: u64| b / r.page_size.max(1);
    Ok(PathStat {
        path: path.to_owned(),
        kind,
        size_bytes: size,
        cached_bytes: r.cached_bytes,
        cached_pages: pages(r.cached_bytes),
        dirty_bytes: r.dirty_bytes,
        dirty_pages: pages(r.dirty_bytes),
        writeback_bytes: r.writeback_bytes,
        writeback_pages: pages(r.writeback_bytes),
        page_size: r.page_size,
        source: match r.source {
            endio::CacheStatSource::Cachestat => "cachestat",
            endio::CacheStatSource::Mincore => "mincore",
        },
    })
}

/// Runs `endio stat`: every path is reported; any that fails makes the
/// exit status non-zero after the others are printed.
pub(crate) fn run(args: &StatArgs) -> anyhow::Result<()> {
    let mut stats = Vec::new();
    let mut failed = 0;
    for p in &args.paths {
        match stat_one(p) {
            Ok(s) => stats.push(s),
            Err(e) => {
                eprintln!("endio stat: {e:#}");
                failed += 1;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &stats)?;
        writeln!(out)?;
    } else if !stats.is_empty() {
        let size = |b: u64| {
            if args.bytes {
                b.to_string()
            } else {
                fmt_bytes(b)
            }
        };
        writeln!(
            out,
            "{:>10} {:>9} {:>10} {:>7} {:>10} {:>7} {:>10}  FILE",
            "RES", "PAGES", "DIRTY", "PAGES", "WRITEBACK", "PAGES", "SIZE"
        )?;
        for s in &stats {
            writeln!(
                out,
                "{:>10} {:>9} {:>10} {:>7} {:>10} {:>7} {:>10}  {}",
                size(s.cached_bytes),
                s.cached_pages,
                size(s.dirty_bytes),
                s.dirty_pages,
                size(s.writeback_bytes),
                s.writeback_pages,
                size(s.size_bytes),
                s.path.display()
            )?;
        }
        if stats.iter().any(|s| s.source == "mincore") {
            writeln!(
                out,
                "note: this kernel has no cachestat(2); residency is from mincore(2), which cannot see dirty or writeback pages (shown as 0)"
            )?;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} paths could not be read", args.paths.len());
    }
    Ok(())
}
