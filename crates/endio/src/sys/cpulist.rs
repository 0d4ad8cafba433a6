//! The sysfs CPU list format (`0-3,8,12-15`), as in
//! `/sys/devices/system/cpu/{possible,online,offline}`.
//!
//! The parser is pure and the reader takes the sysfs root as a parameter, so
//! both are tested on strings and on fake trees.

use std::fmt;
use std::io;
use std::path::Path;

/// The largest CPU number endio accepts in a CPU list (the kernel's
/// `NR_CPUS` upper bound). A bound on everything: a corrupt file must not make
/// endio allocate per-CPU state for billions of CPUs.
pub const CPU_MAX: usize = 8191;

/// A CPU list that is not in the kernel's `cpulist` format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad CPU list {list:?}: {reason} (expected the kernel's format, e.g. \"0-3,8,12-15\")")]
pub struct CpuListError {
    list: String,
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    NotANumber(String),
    Reversed(usize, usize),
    TooLarge(usize),
    EmptyItem,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotANumber(s) => write!(f, "{s:?} is not a CPU number"),
            Reason::Reversed(a, b) => write!(f, "range {a}-{b} runs backwards"),
            Reason::TooLarge(n) => write!(f, "CPU {n} is above the limit of {CPU_MAX}"),
            Reason::EmptyItem => f.write_str("empty item between commas"),
        }
    }
}

/// Parses a CPU list such as `"0-3,8,12-15\n"` into sorted, deduplicated CPU
/// numbers. An empty (or all-blank) list is the empty set, as sysfs writes an
/// empty `offline` file when every CPU is online.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, CpuListError> {
    let err = |reason| CpuListError {
        list: list.to_owned(),
        reason,
    };
    let trimmed = list.trim();
    let mut cpus = Vec::new();
    if trimmed.is_empty() {
        return Ok(cpus);
    }
    let number = |s: &str| -> Result<usize, CpuListError> {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| err(Reason::NotANumber(s.to_owned())))?;
        if n > CPU_MAX {
            return Err(err(Reason::TooLarge(n)));
        }
        Ok(n)
    };
    for item in trimmed.split(',') {
        if item.trim().is_empty() {
            return Err(err(Reason::EmptyItem));
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(err(Reason::Reversed(a, b)));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(item)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Reads and parses `<sysfs_root>/devices/system/cpu/<name>`, where `name` is
/// `possible`, `present`, `online` or `offline`.
pub fn read_cpu_list(sysfs_root: &Path, name: &str) -> io::Result<Vec<usize>> {
    let path = sysfs_root.join("devices/system/cpu").join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read the CPU list {}: {e}", path.display()),
        )
    })?;
    parse_cpu_list(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(
            parse_cpu_list("0-3,8,12-15").unwrap(),
            vec![0, 1, 2, 3, 8, 12, 13, 14, 15]
        );
        assert_eq!(parse_cpu_list("5,1-2,2").unwrap(), vec![1, 2, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn refuses_bad_lists_with_a_reason() {
        for (bad, why) in [
            ("a", "not a CPU number"),
            ("0-", "not a CPU number"),
            ("-3", "not a CPU number"),
            ("3-1", "runs backwards"),
            ("0,,1", "empty item"),
            ("0,", "empty item"),
            ("99999", "above the limit"),
            ("0-99999", "above the limit"),
            ("1.5", "not a CPU number"),
        ] {
            let e = parse_cpu_list(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?} gave {e:?}, expected {why:?}");
            assert!(e.contains("0-3,8,12-15"), "{e:?} should show the format");
        }
    }

    #[test]
    fn reads_from_a_given_sysfs_root() {
        let root = std::env::temp_dir().join(format!("endio-sysfs-{}", std::process::id()));
        let dir = root.join("devices/system/cpu");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("possible"), "0-7\n").unwrap();
        std::fs::write(dir.join("online"), "0-2,5\n").unwrap();
        assert_eq!(
            read_cpu_list(&root, "possible").unwrap(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(read_cpu_list(&root, "online").unwrap(), vec![0, 1, 2, 5]);
        let missing = read_cpu_list(&root, "offline").unwrap_err().to_string();
        assert!(missing.contains("offline"), "{missing}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
