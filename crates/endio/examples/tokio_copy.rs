//! Copies a file with one future per block on tokio's multi-thread
//! runtime, 64 blocks in flight, both files dontcache, and checks the copy.
//! Without arguments it copies a 64 MiB temporary file.
//!
//! ```text
//! cargo run --release -p endio --example tokio_copy -- [SRC DST]
//! ```

use std::io;

use endio::{Completer, Device, Engine, OpenOptions};

const BLOCK: u64 = 1 << 20;
const IN_FLIGHT: u64 = 64;

/// Copies block `i` from `src` to `dst`.
async fn copy_block(src: Device, dst: Device, i: u64, size: u64) -> io::Result<()> {
    let len = BLOCK.min(size - i * BLOCK) as usize;
    let (n, buf) = src.read_async(src.buf(len), i * BLOCK).await;
    if n? != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "source shrank",
        ));
    }
    let (n, _) = dst.write_async(buf, i * BLOCK).await;
    n.map(drop)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp = std::env::temp_dir();
    let (src, dst, made) = match (args.next(), args.next()) {
        (Some(s), Some(d)) => (s.into(), d.into(), false),
        _ => (
            tmp.join("endio-tokio-src"),
            tmp.join("endio-tokio-dst"),
            true,
        ),
    };
    if made {
        std::fs::write(
            &src,
            (0..64u32 << 20)
                .map(|i| (i >> 12) as u8)
                .collect::<Vec<_>>(),
        )?;
    }
    let engine = Engine::builder(Completer::builder().build()?).build()?;
    let options = OpenOptions::new().dontcache(true);
    let from = engine.open(&src, options.read(true))?;
    let size = std::fs::metadata(&src)?.len();
    let to = engine.open(&dst, options.write(true).read(true).create(true))?;

    let rt = tokio::runtime::Builder::new_multi_thread().build()?;
    let started = std::time::Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..size.div_ceil(BLOCK) {
            if tasks.len() as u64 >= IN_FLIGHT {
                tasks.join_next().await.expect("a task")??;
            }
            tasks.spawn(copy_block(from.clone(), to.clone(), i, size));
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let (flushed, _) = to.sync_async().await;
        flushed?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let elapsed = started.elapsed();
    assert!(
        std::fs::read(&src)? == std::fs::read(&dst)?,
        "the copy differs"
    );
    println!(
        "copied {} MiB in {elapsed:.2?} ({} backend), the copy is equal",
        size >> 20,
        engine.backend()
    );
    if made {
        std::fs::remove_file(&src)?;
        std::fs::remove_file(&dst)?;
    }
    Ok(())
}
