//! fio's spellings of `endio bench`'s options: those that mean what an
//! endio option means become it (with a note on standard error saying which
//! endio option that is), those endio has no counterpart for are refused
//! with a message that says what endio does instead. Options fio and endio
//! spell alike (`--rw`, `--bs`, `--size`, `--iodepth`, `--runtime`,
//! `--rwmixread`, `--numjobs`) need nothing here; `--filename`, `--time_based` and
//! `--randseed` are clap aliases.
//!
//! The translation is a pure function of the arguments after `bench`, so it
//! is tested on strings; it looks at each argument once.

/// An argument list turned into endio's spellings, with a note per
/// translation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Translated {
    pub(crate) args: Vec<String>,
    pub(crate) notes: Vec<String>,
}

/// fio's batching options: endio has nothing to set.
const BATCH_OPTIONS: [&str; 6] = [
    "iodepth_batch",
    "iodepth_batch_submit",
    "iodepth_batch_complete",
    "iodepth_batch_complete_min",
    "iodepth_batch_complete_max",
    "iodepth_low",
];

/// Translates the arguments of `endio bench` (after the word `bench`).
pub(crate) fn translate(args: &[String]) -> Result<Translated, String> {
    let mut out = Translated {
        args: Vec::with_capacity(args.len()),
        notes: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(option) = arg.strip_prefix("--") else {
            out.args.push(arg.clone());
            continue;
        };
        let (name, inline) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (option, None),
        };
        // The value of an option that takes one: inline, else the next
        // argument unless it is an option.
        let mut value = |takes_next: bool| -> Option<String> {
            if inline.is_some() {
                return inline.clone();
            }
            if takes_next && args.get(i).is_some_and(|a| !a.starts_with("--")) {
                i += 1;
                return Some(args[i - 1].clone());
            }
            None
        };
        match name {
            "direct" => {
                let mode = match value(true).as_deref() {
                    None | Some("1") => "direct",
                    Some("0") => "buffered",
                    Some(v) => {
                        return Err(format!(
                            "--direct={v}: fio's direct takes 0 or 1; endio spells it --mode direct (or --mode buffered)"
                        ));
                    }
                };
                out.note(arg, &format!("--mode {mode}"));
                out.push(&["--mode", mode]);
            }
            "output-format" => match value(true).as_deref() {
                Some("json" | "json+") => {
                    out.note(
                        arg,
                        "--json - (the JSON on standard output, the table on standard error)",
                    );
                    out.push(&["--json", "-"]);
                }
                Some("normal") => out.ignored(arg, "the table is endio's default output"),
                Some(v) => {
                    return Err(format!(
                        "--output-format={v}: endio writes a table, or JSON with --json FILE (--json - for standard output); there is no {v} output"
                    ));
                }
                None => {
                    return Err(
                        "--output-format needs a value; for fio's JSON use endio's --json -".into(),
                    );
                }
            },
            "ioengine" => {
                let v = value(true).unwrap_or_default();
                let backend = match v.as_str() {
                    "io_uring" => "uring",
                    "psync" | "sync" | "pvsync" | "pvsync2" => "threads",
                    "null" => "null",
                    "libaio" | "posixaio" => {
                        return Err(format!(
                            "--ioengine={v}: endio has no {v} engine; --backend uring submits through io_uring (what libaio offers and more), --backend threads through a pool of threads doing pread/pwrite"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "--ioengine={v}: endio chooses its I/O path with --backend uring, threads or null (io_uring, a thread pool doing pread/pwrite, or memory)"
                        ));
                    }
                };
                out.note(arg, &format!("--backend {backend}"));
                out.push(&["--backend", backend]);
            }
            "end_fsync" => {
                let v = value(true);
                let on = !matches!(v.as_deref(), Some("0" | "false"));
                let endio = if on {
                    "--end-fsync=true"
                } else {
                    "--end-fsync=false"
                };
                out.note(arg, endio);
                out.push(&[endio]);
            }
            "verify" if inline.is_some() => {
                out.note(
                    arg,
                    "--verify (endio checks a crc32c pattern; there is one kind)",
                );
                out.push(&["--verify"]);
            }
            "name" => {
                let _ = value(true);
                out.ignored(arg, "endio names each job MODE-RW");
            }
            "invalidate" => {
                let _ = value(true);
                out.ignored(arg, "endio drops the target's page cache before every job");
            }
            "group_reporting" => out.note(
                arg,
                "nothing: endio's table shows each job as the aggregate of its --numjobs clones",
            ),
            n if BATCH_OPTIONS.contains(&n) => {
                return Err(format!(
                    "--{n}: endio has nothing to set here: each lane submits everything queued on it in one system call and reaps every completion it finds; drop --{n} (--iodepth sets how many I/Os are in flight)"
                ));
            }
            _ => out.args.push(arg.clone()),
        }
    }
    Ok(out)
}

impl Translated {
    fn push(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
    }

    fn ignored(&mut self, fio: &str, why: &str) {
        self.notes.push(format!(
            "note: fio's {fio} needs nothing in endio ({why}); left out"
        ));
    }

    fn note(&mut self, fio: &str, endio: &str) {
        self.notes
            .push(format!("note: fio's {fio} is endio's {endio}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<Vec<String>, String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        translate(&args).map(|t| t.args)
    }

    #[test]
    fn fio_spellings_with_the_same_meaning_become_endio_options() {
        assert_eq!(
            t(&["--direct=1", "--bs", "4k"]).unwrap(),
            ["--mode", "direct", "--bs", "4k"]
        );
        assert_eq!(t(&["--direct", "0"]).unwrap(), ["--mode", "buffered"]);
        assert_eq!(t(&["--output-format=json"]).unwrap(), ["--json", "-"]);
        assert_eq!(t(&["--ioengine=io_uring"]).unwrap(), ["--backend", "uring"]);
        assert_eq!(
            t(&["--ioengine", "psync"]).unwrap(),
            ["--backend", "threads"]
        );
        assert_eq!(t(&["--end_fsync=0"]).unwrap(), ["--end-fsync=false"]);
        assert_eq!(t(&["--name=job1", "--rw=read"]).unwrap(), ["--rw=read"]);
        assert_eq!(t(&["--verify=crc32c"]).unwrap(), ["--verify"]);
        // Spelled alike: clap takes `--numjobs=4` and `--numjobs 4`.
        assert_eq!(t(&["--numjobs=4"]).unwrap(), ["--numjobs=4"]);
        assert_eq!(t(&["--numjobs", "1"]).unwrap(), ["--numjobs", "1"]);
        // endio's own options are left alone.
        assert_eq!(
            t(&["--verify", "--mode", "direct", "--json", "-"]).unwrap(),
            ["--verify", "--mode", "direct", "--json", "-"]
        );
    }

    #[test]
    fn fio_options_without_a_counterpart_are_refused_with_what_to_do() {
        let e = t(&["--iodepth_batch_submit=8"]).unwrap_err();
        assert!(e.contains("--iodepth"), "{e}");
        let e = t(&["--ioengine=libaio"]).unwrap_err();
        assert!(e.contains("--backend uring"), "{e}");
        let e = t(&["--output-format=terse"]).unwrap_err();
        assert!(e.contains("--json"), "{e}");
        let e = t(&["--direct=2"]).unwrap_err();
        assert!(e.contains("--mode direct"), "{e}");
    }
}
