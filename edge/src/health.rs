//! Board health from Linux interfaces that Raspberry Pi OS and JetPack both expose; each value
//! is optional because laptops and containers lack some of them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use svit_protocol::Health;

use crate::pipeline::Stats;

fn read_num(path: &str) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn sample(started: Instant, stats: &Stats) -> Health {
    let (mut total, mut avail) = (0u64, 0u64);
    if let Ok(s) = std::fs::read_to_string("/proc/meminfo") {
        for line in s.lines() {
            let kb = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("MemTotal:") {
                total = kb();
            } else if line.starts_with("MemAvailable:") {
                avail = kb();
            }
        }
    }
    Health {
        uptime_s: started.elapsed().as_secs() as u32,
        cpu_temp_c: read_num("/sys/class/thermal/thermal_zone0/temp").map(|m| (m / 1000.0) as f32),
        cpu_mhz: read_num("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
            .map(|k| (k / 1000.0) as u32),
        // Raspberry Pi firmware exposes get_throttled through this sysfs node on recent kernels.
        throttled: std::fs::read_to_string("/sys/devices/platform/soc/soc:firmware/get_throttled")
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()),
        mem_used_mb: (total.saturating_sub(avail) / 1024) as u32,
        mem_total_mb: (total / 1024) as u32,
        dropped_total: stats.dropped.load(Ordering::Relaxed),
        camera_errors: stats.camera_errors.load(Ordering::Relaxed),
        inference_errors: stats.inference_errors.load(Ordering::Relaxed),
    }
}
