//! Which board this is, for the defaults that differ between them (README, "Boards").

/// The board's model as the device tree names it ("Raspberry Pi 5 Model B Rev 1.0", "NVIDIA
/// Jetson Orin Nano Developer Kit"); empty where there is none (a PC).
pub fn model() -> String {
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|m| m.trim_end_matches('\0').trim().to_string())
        .unwrap_or_default()
}

/// The I2C bus on header pins 3 and 5: bus 1 on a Raspberry Pi, bus 7 on a Jetson Orin.
pub fn header_i2c(model: &str) -> &'static str {
    if model.contains("Jetson") {
        "/dev/i2c-7"
    } else {
        "/dev/i2c-1"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_i2c_bus_follows_the_board() {
        assert_eq!(
            super::header_i2c("NVIDIA Jetson Orin Nano Developer Kit"),
            "/dev/i2c-7"
        );
        assert_eq!(
            super::header_i2c("Raspberry Pi 4 Model B Rev 1.4"),
            "/dev/i2c-1"
        );
        assert_eq!(super::header_i2c(""), "/dev/i2c-1");
    }
}
