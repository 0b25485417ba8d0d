//! Board health from Linux interfaces that Raspberry Pi OS and JetPack both expose; each value
//! is optional because laptops and containers lack some of them.
//!
//! Temperature comes from the thermal zone whose type names the CPU (`cpu-thermal` on a Pi and a
//! Jetson Orin, `x86_pkg_temp` on a PC), not blindly from zone 0. Throttling comes from
//! `vcgencmd get_throttled` where the Pi firmware tool is installed, else from the Pi's
//! `rpi_volt` hwmon under-voltage alarm (bit 0 of the same flags); the firmware's
//! `get_throttled` sysfs file is not read: Pi 4 kernels mark it deprecated with a warning
//! that taints the kernel, and a Pi 5 has none.

use std::sync::atomic::Ordering;
use std::time::Instant;

use svit_protocol::Health;

use crate::pipeline::Stats;

use std::path::Path;
use std::sync::Mutex;

fn read_num(path: impl AsRef<Path>) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Thermal zone types that are the CPU, best first.
const CPU_ZONES: [&str; 5] = [
    "cpu-thermal",
    "cpu_thermal",
    "CPU-therm",
    "x86_pkg_temp",
    "soc_thermal",
];

/// The CPU temperature, °C, from the thermal zones under `root` (/sys/class/thermal).
pub fn cpu_temp(root: &Path) -> Option<f32> {
    let zones: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
        })
        .filter_map(|p| {
            Some((
                std::fs::read_to_string(p.join("type"))
                    .ok()?
                    .trim()
                    .to_string(),
                p,
            ))
        })
        .collect();
    let best = CPU_ZONES
        .iter()
        .find_map(|t| zones.iter().find(|(ty, _)| ty == t))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| root.join("thermal_zone0"));
    read_num(best.join("temp")).map(|m| (m / 1000.0) as f32)
}

/// `vcgencmd get_throttled` output (`throttled=0x50005`) as its flags.
fn parse_throttled(out: &str) -> Option<u32> {
    let hex = out
        .trim()
        .strip_prefix("throttled=")?
        .trim_start_matches("0x");
    u32::from_str_radix(hex, 16).ok()
}

/// The Pi's throttle flags (bit 0 under-voltage now, 1 frequency capped, 2 throttled, 3 soft
/// temperature limit; bits 16-19 the same since boot), where the board tells them.
pub fn throttled(hwmon: &Path) -> Option<u32> {
    // Asked at most every 5 s: it starts a process.
    static LAST: Mutex<Option<(std::time::Instant, Option<u32>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, v)) = *last {
        if at.elapsed() < std::time::Duration::from_secs(5) {
            return v;
        }
    }
    let v = std::process::Command::new("vcgencmd")
        .arg("get_throttled")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_throttled(&String::from_utf8_lossy(&o.stdout)))
        .or_else(|| under_voltage(hwmon));
    *last = Some((std::time::Instant::now(), v));
    v
}

/// The `rpi_volt` hwmon's under-voltage alarm under `root` (/sys/class/hwmon), as bit 0.
fn under_voltage(root: &Path) -> Option<u32> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("name")).is_ok_and(|n| n.trim() == "rpi_volt"))
        .and_then(|p| read_num(p.join("in0_lcrit_alarm")))
        .map(|v| (v > 0.0) as u32)
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
        cpu_temp_c: cpu_temp(Path::new("/sys/class/thermal")),
        cpu_mhz: read_num("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
            .map(|k| (k / 1000.0) as u32),
        throttled: throttled(Path::new("/sys/class/hwmon")),
        mem_used_mb: (total.saturating_sub(avail) / 1024) as u32,
        mem_total_mb: (total / 1024) as u32,
        dropped_total: stats.dropped.load(Ordering::Relaxed),
        camera_errors: stats.camera_errors.load(Ordering::Relaxed),
        inference_errors: stats.inference_errors.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(root: &Path, n: usize, ty: &str, milli: i32) {
        let z = root.join(format!("thermal_zone{n}"));
        std::fs::create_dir_all(&z).unwrap();
        std::fs::write(z.join("type"), format!("{ty}\n")).unwrap();
        std::fs::write(z.join("temp"), format!("{milli}\n")).unwrap();
    }

    #[test]
    fn the_cpu_zone_is_found_by_type_and_throttle_flags_parse() {
        let root = std::env::temp_dir().join(format!("svit-thermal-{}", std::process::id()));
        // A Jetson lists other sensors first.
        zone(&root, 0, "GPU-therm", 71_000);
        zone(&root, 1, "cpu-thermal", 48_500);
        assert_eq!(cpu_temp(&root), Some(48.5));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(parse_throttled("throttled=0x50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("error"), None);
        let hw = std::env::temp_dir().join(format!("svit-hwmon-{}", std::process::id()));
        let volt = hw.join("hwmon3");
        std::fs::create_dir_all(&volt).unwrap();
        std::fs::write(volt.join("name"), "rpi_volt\n").unwrap();
        std::fs::write(volt.join("in0_lcrit_alarm"), "1\n").unwrap();
        assert_eq!(under_voltage(&hw), Some(1));
        std::fs::remove_dir_all(&hw).unwrap();
    }
}
