//! A seeded, randomized write workload for crash-consistency checks: writes,
//! overwrites and flushes through endio onto a device, printing a manifest of
//! what was submitted, what was acknowledged and which flushes completed.
//!
//! ```text
//! crash_workload run --device PATH --mode buffered|dontcache|dontcache-emulated|direct
//!                [--seed N] [--ops N] [--size BYTES] [--iodepth N] [--mark DM-NAME] > MANIFEST
//! crash_workload check --log LOGDEV --manifest MANIFEST [--device PATH]
//! ```
//!
//! Every write covers whole 4 KiB blocks of the first `--size` bytes; its
//! data is a function of (seed, write id, offset), so a checker regenerates
//! it from the manifest alone. Two writes in flight never overlap, so the
//! writes to one block are ordered by their acknowledgements. With `--mark`,
//! after each completed flush the workload places a device-mapper mark
//! `flush-K` (`dmsetup message DM-NAME 0 mark flush-K`) before it submits the
//! next flush: in a `log-writes` log, the mark then sits after every write
//! that flush made durable.
//!
//! Manifest lines, in the order they happened (one lock orders them):
//!
//! ```text
//! workload seed=S mode=M dontcache=native|emulated|off size=BYTES block=4096 ops=N
//! W id offset len      write submitted
//! A id ok|err ERRNO    write acknowledged (its handler ran)
//! F k                  flush k submitted
//! D k ok|err ERRNO     flush k completed
//! M k                  mark flush-k placed
//! end writes=N acked=N failed=N flushes=N
//! ```
//!
//! A write acknowledged (`A ok`) before `F k` whose flush completed `ok`
//! must be on the device at mark `flush-k`, unless a later write to the same
//! block replaced it. `run` exits 1 on any failed write or flush.
//!
//! `check` replays a device-mapper `log-writes` log (see [`replay`]) into
//! memory and, at every mark `flush-K`, checks that oracle for every block
//! of the range, and that blocks no write covered are still zero (the range
//! starts zeroed). With `--device` it also compares the image after the
//! whole log with the device itself, read with `O_DIRECT`: the replay is
//! what the device holds. It exits 1 on any violation.

mod pattern;
mod replay;
mod workload;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("run") => workload::main(&args[1..]),
        Some("check") => replay::main(&args[1..]),
        _ => {
            eprintln!("usage: crash_workload run|check ... (see the example's docs)");
            2
        }
    };
    std::process::exit(code);
}
