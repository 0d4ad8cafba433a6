//! The workload: seeded writes, overwrites and flushes, and its manifest.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use endio::{Bio, BioFlags, Completer, Engine, OpenOptions};

use crate::pattern::{BLOCK, word};

/// The longest write, in blocks.
const WRITE_BLOCKS_MAX: u64 = 16;
/// How long one wait for a completion may take before the run gives up.
const WAIT_MAX: Duration = Duration::from_secs(120);

/// A small seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Args {
    device: PathBuf,
    mode: String,
    seed: u64,
    ops: u64,
    size: u64,
    iodepth: usize,
    mark: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        device: PathBuf::new(),
        mode: String::new(),
        seed: 1,
        ops: 300,
        size: 16 << 20,
        iodepth: 8,
        mark: None,
    };
    let mut it = args.iter().cloned();
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--device" => a.device = v()?.into(),
            "--mode" => a.mode = v()?,
            "--seed" => a.seed = v()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--ops" => a.ops = v()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--size" => a.size = v()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--iodepth" => a.iodepth = v()?.parse().map_err(|e| format!("--iodepth: {e}"))?,
            "--mark" => a.mark = Some(v()?),
            "-h" | "--help" => {
                return Err("usage: crash_workload --device PATH --mode buffered|dontcache|dontcache-emulated|direct [--seed N] [--ops N] [--size BYTES] [--iodepth N] [--mark DM-NAME]".into());
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if a.device.as_os_str().is_empty() {
        return Err("--device is required".into());
    }
    if a.size < WRITE_BLOCKS_MAX * BLOCK || !a.size.is_multiple_of(BLOCK) {
        return Err(format!(
            "--size must be a multiple of {BLOCK} and at least {} bytes",
            WRITE_BLOCKS_MAX * BLOCK
        ));
    }
    if a.iodepth == 0 {
        return Err("--iodepth must be at least 1".into());
    }
    Ok(a)
}

/// What the submitter and the handlers share: the manifest in the order the
/// events happened, and the blocks of the writes in flight.
#[derive(Default)]
struct State {
    manifest: Vec<String>,
    busy: BTreeSet<u64>,
    in_flight: usize,
    acked: u64,
    failed: u64,
    flush_done: Option<Result<(), i32>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    /// Waits until `ready` holds; an error after [`WAIT_MAX`].
    fn wait_until(
        &self,
        mut ready: impl FnMut(&State) -> bool,
    ) -> Result<std::sync::MutexGuard<'_, State>, String> {
        let st = self.state.lock().unwrap();
        let (st, timeout) = self
            .changed
            .wait_timeout_while(st, WAIT_MAX, |s| !ready(s))
            .unwrap();
        if timeout.timed_out() {
            return Err(format!("no completion within {WAIT_MAX:?}"));
        }
        Ok(st)
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Runs the workload with `args` (after the subcommand); the exit status.
pub(crate) fn main(args: &[String]) -> i32 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crash_workload: {e}");
            return 2;
        }
    };
    match run(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("crash_workload: {e}");
            2
        }
    }
}

fn run(a: &Args) -> Result<bool, String> {
    let (dontcache, emulated, direct) = match a.mode.as_str() {
        "buffered" => (false, false, false),
        "dontcache" => (true, false, false),
        "dontcache-emulated" => (true, true, false),
        "direct" => (false, false, true),
        m => {
            return Err(format!(
                "unknown --mode {m}: buffered, dontcache, dontcache-emulated or direct"
            ));
        }
    };
    let completer = Completer::builder().build().map_err(|e| e.to_string())?;
    let engine = Engine::builder(completer.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let dev = engine
        .open(
            &a.device,
            OpenOptions::new()
                .read(true)
                .write(true)
                .direct(direct)
                .dontcache(dontcache)
                .dontcache_emulated(emulated),
        )
        .map_err(|e| format!("{}: {e}", a.device.display()))?;
    let dc = match dev.dontcache_mode() {
        None => "off".to_string(),
        Some(m) => format!("{m:?}").to_lowercase(),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    let record = |line: String| shared.state.lock().unwrap().manifest.push(line);
    record(format!(
        "workload seed={} mode={} dontcache={dc} size={} block={BLOCK} ops={}",
        a.seed, a.mode, a.size, a.ops
    ));

    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let blocks = a.size / BLOCK;
    // A few hot blocks get most of the overwrites.
    let hot: Vec<u64> = (0..8)
        .map(|_| rng.below(blocks - WRITE_BLOCKS_MAX))
        .collect();
    let mut flushes = 0u64;
    let mut next_flush = 1 + rng.below(24);
    for id in 0..a.ops {
        let len_blocks = 1 + rng.below(WRITE_BLOCKS_MAX);
        let first = if rng.below(3) == 0 {
            hot[rng.below(hot.len() as u64) as usize]
        } else {
            rng.below(blocks - len_blocks + 1)
        };
        let range: Vec<u64> = (first..first + len_blocks).collect();
        // Never two writes in flight over one block; at most --iodepth.
        {
            let mut st = shared.wait_until(|s| {
                s.in_flight < a.iodepth && range.iter().all(|b| !s.busy.contains(b))
            })?;
            st.busy.extend(range.iter().copied());
            st.in_flight += 1;
            st.manifest
                .push(format!("W {id} {} {}", first * BLOCK, len_blocks * BLOCK));
        }
        let off = first * BLOCK;
        let len = (len_blocks * BLOCK) as usize;
        let mut buf = dev.buf(len);
        for (i, w) in buf.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&word(a.seed, id, off + 8 * i as u64).to_le_bytes());
        }
        let sh = Arc::clone(&shared);
        let bio = Bio::write(off, buf, move |ended: endio::EndedBio| {
            let mut st = sh.state.lock().unwrap();
            match ended.result() {
                Ok(n) if n == len => {
                    st.acked += 1;
                    st.manifest.push(format!("A {id} ok 0"));
                }
                Ok(_) => {
                    st.failed += 1;
                    st.manifest.push(format!("A {id} err {}", libc::EIO));
                }
                Err(e) => {
                    st.failed += 1;
                    st.manifest.push(format!("A {id} err {}", errno(&e)));
                }
            }
            for b in range {
                st.busy.remove(&b);
            }
            st.in_flight -= 1;
            sh.changed.notify_all();
        });
        dev.submit(bio.with_flags(BioFlags::COMPLETE_IN_TASK))
            .map_err(|e| e.to_string())?;

        if id + 1 == next_flush || id + 1 == a.ops {
            next_flush = id + 2 + rng.below(24);
            // Sometimes the flush waits for every write in flight first,
            // sometimes it races the writes still in flight.
            if rng.below(2) == 0 {
                drop(shared.wait_until(|s| s.in_flight == 0)?);
            }
            flushes += 1;
            let k = flushes;
            {
                let mut st = shared.state.lock().unwrap();
                st.flush_done = None;
                st.manifest.push(format!("F {k}"));
            }
            let sh = Arc::clone(&shared);
            dev.submit(Bio::flush(move |ended: endio::EndedBio| {
                let mut st = sh.state.lock().unwrap();
                let r = ended.result().map(|_| ()).map_err(|e| errno(&e));
                st.manifest.push(match r {
                    Ok(()) => format!("D {k} ok 0"),
                    Err(e) => format!("D {k} err {e}"),
                });
                st.flush_done = Some(r);
                sh.changed.notify_all();
            }))
            .map_err(|e| e.to_string())?;
            let ok = shared.wait_until(|s| s.flush_done.is_some())?.flush_done == Some(Ok(()));
            if let (true, Some(name)) = (ok, &a.mark) {
                let st = Command::new("dmsetup")
                    .args(["message", name, "0", "mark", &format!("flush-{k}")])
                    .status()
                    .map_err(|e| format!("dmsetup message: {e}"))?;
                if !st.success() {
                    return Err(format!("dmsetup message {name} 0 mark flush-{k}: {st}"));
                }
                record(format!("M {k}"));
            }
        }
    }
    drop(shared.wait_until(|s| s.in_flight == 0)?);
    dev.drain();
    if !completer.wait_idle(WAIT_MAX) {
        return Err(format!("handlers did not finish within {WAIT_MAX:?}"));
    }
    let mut st = shared.state.lock().unwrap();
    let flush_failed = st
        .manifest
        .iter()
        .any(|l| l.starts_with("D ") && !l.contains(" ok "));
    let end = format!(
        "end writes={} acked={} failed={} flushes={flushes}",
        a.ops, st.acked, st.failed
    );
    st.manifest.push(end);
    let mut out = std::io::stdout().lock();
    for l in &st.manifest {
        writeln!(out, "{l}").map_err(|e| e.to_string())?;
    }
    Ok(st.failed == 0 && !flush_failed)
}
