//! Device nodes a board needs, and what to do when one is missing or closed to this user: the
//! one place `arducam` (at open) and `doctor` (at first contact) take the fixes from.

/// A device node: where it is, the group that may open it, how to make it appear.
pub struct Node<'a> {
    pub path: &'a str,
    pub group: &'static str,
    /// What makes the kernel create it.
    pub enable: &'static str,
}

impl<'a> Node<'a> {
    pub fn spi(path: &'a str) -> Self {
        Node {
            path,
            group: "spi",
            enable: "enable SPI (raspi-config > Interface Options, or `dtparam=spi=on` in /boot/firmware/config.txt), then reboot",
        }
    }
    pub fn i2c(path: &'a str) -> Self {
        Node {
            path,
            group: "i2c",
            enable: "enable I2C (raspi-config > Interface Options, or `dtparam=i2c_arm=on` in /boot/firmware/config.txt), then reboot",
        }
    }
    pub fn gpio(path: &'a str) -> Self {
        Node {
            path,
            group: "gpio",
            enable: "a kernel with the GPIO character device (every Raspberry Pi OS and JetPack has one)",
        }
    }
    pub fn video(path: &'a str) -> Self {
        Node {
            path,
            group: "video",
            enable: "plug in the USB camera, or for a CSI camera `camera_auto_detect=1` in /boot/firmware/config.txt and reboot",
        }
    }
    pub fn serial(path: &'a str) -> Self {
        Node {
            path,
            group: "dialout",
            enable: "enable the UART (`enable_uart=1` in /boot/firmware/config.txt, serial console off in raspi-config), then reboot",
        }
    }

    /// Opens it for reading and writing; the error says what to do.
    pub fn check(&self) -> Result<(), String> {
        let (path, group) = (self.path, self.group);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{path} does not exist: {}; then check the node name",
                self.enable
            )),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
                "no permission to open {path}: add the user to the `{group}` group \
                 (sudo usermod -aG {group} $USER) and log in again"
            )),
            Err(e) => Err(format!("{path}: {e}")),
        }
    }
}
