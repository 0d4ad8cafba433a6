//! Sizes and durations as fio writes them, and their display.

use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Parses a byte count: a whole number with an optional suffix `k`, `m`,
/// `g` or `t` (powers of 1024, as fio's sizes), optionally followed by
/// `i`/`ib`/`b` (`4k`, `4K`, `4KiB`, `1M`, `1g`, `512`, `512b`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let num = num.replace('_', "");
    let unit = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => KIB,
        "m" | "mb" | "mi" | "mib" => MIB,
        "g" | "gb" | "gi" | "gib" => GIB,
        "t" | "tb" | "ti" | "tib" => TIB,
        _ => 0,
    };
    let n: Option<u64> = num.parse().ok();
    match (n, unit) {
        (Some(n), unit) if unit > 0 => n
            .checked_mul(unit)
            .ok_or_else(|| format!("{s:?} is too large; sizes go up to 16 EiB (e.g. 1G, 64T)")),
        _ => Err(format!(
            "{s:?} is not a size; use a whole number of bytes with an optional k, m, g or t suffix (powers of 1024), e.g. 4k, 8M or 1G"
        )),
    }
}

/// Parses a duration as fio's `runtime`: a number of seconds (`10`,
/// `2.5`) or a number with a unit `ms`, `s`, `m` or `h` (`500ms`, `1m`).
pub(crate) fn parse_runtime(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => -1.0,
    };
    match num.parse::<f64>() {
        Ok(n) if scale > 0.0 && n.is_finite() && n > 0.0 && n * scale < 1e9 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        Ok(n) if scale > 0.0 && n == 0.0 => Err(format!(
            "{s:?}: the runtime must be > 0 (a job of no time does no I/O); give e.g. 10 or 500ms, or leave --runtime out to stop after --size bytes"
        )),
        _ => Err(format!(
            "{s:?} is not a duration; use seconds (10, 2.5) or a number with ms, s, m or h (500ms, 1m)"
        )),
    }
}

/// `1.0 GiB`, `12.5 MiB`, `4.0 KiB`, `512 B`.
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= TIB {
        format!("{:.1} TiB", b / TIB as f64)
    } else if bytes >= GIB {
        format!("{:.1} GiB", b / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else if bytes >= KIB {
        format!("{:.1} KiB", b / KIB as f64)
    } else {
        format!("{bytes} B")
    }
}

/// Bytes in MiB.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_fio() {
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
    }

    #[test]
    fn bad_sizes_name_the_fix() {
        for bad in ["", "abc", "1.5G", "4x", "-1", "k", "99999999999T"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("e.g."), "{e}");
        }
    }

    #[test]
    fn durations_parse_like_fio() {
        assert_eq!(parse_runtime("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_runtime("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_runtime("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_runtime("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0", "x", "1y", "-1s"] {
            assert!(parse_runtime(bad).is_err(), "{bad}");
        }
        for zero in ["0", "0s", "0.0", "0ms"] {
            let e = parse_runtime(zero).unwrap_err();
            assert!(e.contains("must be > 0"), "{zero}: {e}");
        }
    }

    #[test]
    fn bytes_display_in_binary_units() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(4096), "4.0 KiB");
        assert_eq!(fmt_bytes(1 << 30), "1.0 GiB");
        assert_eq!(fmt_bytes(3 << 19), "1.5 MiB");
    }
}
