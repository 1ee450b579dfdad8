//! What the machine allows: the memory a run may use (checked against the library's estimate
//! before a model is built), the threads it may start, and the sizes given on the command
//! line (`--max-file-size 8G`).

use anyhow::{Result, bail};
use recur::MemoryEstimate;

/// A size in bytes: a number with an optional `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: the unit must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 512M, 8G, 1000000)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Bytes as a person reads them: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ if bytes == u64::MAX => "more than 16 EiB".into(),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

/// The memory this process may still use: the system's `MemAvailable` (from
/// `/proc/meminfo`), or the control group's limit less its usage where that is lower. `None`
/// where neither can be read (not Linux): then no check is made.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let system = meminfo.as_deref().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    // cgroup v2, then v1 ("max" or a huge number: no limit)
    let group = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    .iter()
    .find_map(|(limit, usage)| Some(read(limit)?.saturating_sub(read(usage).unwrap_or(0))));
    match (system, group) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses a run whose estimated memory is more than the memory available, in one line that
/// gives both and what to lower: `what` names the run (`training`, `sampling`), `lower` the
/// flags that shrink the part that grows with the batch.
pub fn check_memory(what: &str, est: &MemoryEstimate, lower: &str) -> Result<()> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    check_memory_against(what, est, lower, available)
}

/// [`check_memory`] against `available` bytes.
pub fn check_memory_against(
    what: &str,
    est: &MemoryEstimate,
    lower: &str,
    available: u64,
) -> Result<()> {
    let total = est.total();
    if total <= available {
        return Ok(());
    }
    let fixed = total - est.per_batch();
    let advice = if fixed > available {
        "lower --hidden-size, --num-layers or --embedding-size (the model itself does not fit)"
            .to_string()
    } else {
        format!("lower {lower}")
    };
    bail!(
        "{what} would need about {} ({} parameters: {} for weights, gradients and optimizer \
         state; {} for the batch's tape and activations), but {} of memory are available; {advice}",
        human(total),
        est.parameters,
        human(fixed),
        human(est.per_batch()),
        human(available),
    )
}

/// The threads the machine has.
pub fn machine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Refuses a thread count above the machine's (0 means all of them).
pub fn check_threads(flag: &str, threads: usize) -> Result<()> {
    let have = machine_threads();
    if threads > have {
        bail!(
            "{flag} {threads}: this machine runs {have} threads at once; give at most {have} (0 \
             uses them all)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert!(parse_size("8X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn a_run_that_does_not_fit_is_refused_with_its_estimate() {
        let est = MemoryEstimate {
            parameters: 1000,
            weights: 4000,
            gradients: 4000,
            optimizer: 8000,
            checkpoint: 12000,
            tape: 1 << 30,
            activations: 0,
        };
        assert!(check_memory_against("training", &est, "--batch-size", 2 << 30).is_ok());
        let err = check_memory_against("training", &est, "--batch-size or --bptt", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("about 1.0 GiB"), "{err}");
        assert!(err.contains("1.0 MiB of memory are available"), "{err}");
        assert!(err.contains("lower --batch-size or --bptt"), "{err}");
        let err = check_memory_against("training", &est, "--batch-size", 1000).unwrap_err();
        assert!(err.to_string().contains("the model itself"), "{err}");
    }
}
