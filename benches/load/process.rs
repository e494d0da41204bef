//! callmux as a child process: its config, its start, and what /proc and its log say of it.

use super::*;

pub fn config_toml(fleet: &[FakeProvider], cache_ttl_ms: u64) -> String {
    let ids: Vec<&str> = fleet.iter().map(|p| p.id).collect();
    let org = OrgB::key(ORG, ORG_KEY).providers(&ids);
    let config = fleet.iter().fold(TestConfig::new().org(org), |config, p| {
        let provider = match p.kind {
            Kind::Agent => ProviderB::agent(p.id, &p.served.url),
            Kind::Bland => ProviderB::bland(p.id, &p.served.url, BLAND_KEY_VAR, BLAND_ORG),
        };
        config.provider(
            provider
                .set("timeout_ms", p.timeout_ms)
                .set("cache_ttl_ms", cache_ttl_ms),
        )
    });
    config.toml()
}

/// `callmux serve` on `config`, with the Bland key and `env` set, logging at `warn`.
pub fn start_callmux(config: &str, env: &[(&str, &str)]) -> Binary {
    let mut all = vec![(BLAND_KEY_VAR, BLAND_KEY)];
    all.extend_from_slice(env);
    Binary::start_quiet(config, &all)
}

/// What callmux has logged (at `warn`: warnings and errors only): how many lines, the last few.
pub fn log_report(callmux: &Binary) -> String {
    const KEEP: usize = 5;
    let lines = callmux.stderr_lines();
    let mut out = format!("{} line(s) at warn or above", lines.len());
    for line in &lines[lines.len().saturating_sub(KEEP)..] {
        out += &format!("\n    {line}");
    }
    out
}

/// A `VmHWM` or `VmRSS` figure from /proc, in KiB; `None` once the process is gone.
pub fn memory_kib(callmux: &Binary, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", callmux.pid())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak RSS so far, in KiB; says so on stderr if callmux has exited.
pub fn peak_rss_kib(callmux: &mut Binary) -> Option<u64> {
    if let Some(how) = callmux.try_wait() {
        eprintln!("callmux exited ({how}); {}", log_report(callmux));
    }
    memory_kib(callmux, "VmHWM")
}

pub fn open_fds(callmux: &Binary) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", callmux.pid())).ok()?;
    Some(dir.count())
}
