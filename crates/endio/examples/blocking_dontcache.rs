//! Writes 64 MiB with dontcache and reads it back with the blocking API,
//! then prints how much of the file the page cache still holds.
//!
//! ```text
//! cargo run --release -p endio --example blocking_dontcache -- [PATH]
//! ```
//!
//! Without PATH it uses a temporary file in `/var/tmp`, removed at the end.

use endio::{Completer, Engine, OpenOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::Builder::new()
        .prefix("endio-example-")
        .tempfile_in("/var/tmp")?;
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| temp.path().display().to_string());
    let engine = Engine::builder(Completer::builder().build()?).build()?;
    let options = OpenOptions::new().read(true).write(true).create(true);
    let dev = engine.open(&path, options.dontcache(true))?;

    let data = vec![0xa5; 64 << 20];
    dev.write_all_at(&data, 0)?;
    dev.sync_data()?;
    let mut back = vec![0; data.len()];
    dev.read_exact_at(&mut back, 0)?;
    assert!(back == data, "read back differs");

    dev.drain(); // the pages leave the cache after the I/O: wait for that
    let r = endio::residency(std::fs::File::open(&path)?, 0..0)?;
    println!(
        "wrote and read 64 MiB of {path} ({:?} dontcache, {} backend)",
        dev.dontcache_mode().unwrap(),
        dev.backend()
    );
    println!(
        "page cache holds {} KiB of it ({} KiB dirty), by {:?}",
        r.cached_bytes >> 10,
        r.dirty_bytes >> 10,
        r.source
    );
    std::fs::remove_file(&path)?;
    Ok(())
}
