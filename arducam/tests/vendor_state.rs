//! Independent of the driver's own tables: the register state ArduCAM's JPEG sequence leaves on
//! the sensor (`fixtures/ov2640_vendor_state.txt`, made by `scripts/vendor_tables.py` replaying
//! the vendor's header with bank tracking) against the state the driver's writes leave, as the
//! simulated module received them, for every resolution.

use std::collections::BTreeMap;

use svit_arducam::sim::SimArduCam;
use svit_arducam::{Config, Resolution};

fn vendor() -> BTreeMap<String, BTreeMap<(u8, u8), u8>> {
    let text = include_str!("fixtures/ov2640_vendor_state.txt");
    let mut out: BTreeMap<String, BTreeMap<(u8, u8), u8>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |s: &str| u8::from_str_radix(s, 16).expect("hex");
        out.entry(f[0].to_string())
            .or_default()
            .insert((hex(f[1]), hex(f[2])), hex(f[3]));
    }
    out
}

#[test]
fn the_driver_leaves_every_register_the_vendor_sets_at_the_vendors_value() {
    let vendor = vendor();
    for res in Resolution::ALL {
        let (w, h) = res.size();
        let want = &vendor[&format!("{w}x{h}")];
        let sim = SimArduCam::new(Box::new(|_, _| vec![0xFF, 0xD8, 0xFF, 0xD9]));
        let mut cam = sim.driver(Config {
            resolution: res,
            ..Config::default()
        });
        cam.init().unwrap();
        let (mut bank, mut got) = (0u8, BTreeMap::new());
        for &(reg, val) in &sim.state().trace {
            if reg == 0xFF {
                bank = val & 1;
            } else {
                got.insert((bank, reg), val);
            }
        }
        let wrong: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .map(|((b, r), v)| {
                format!(
                    "bank {b} reg {r:02X}: vendor {v:02X}, driver {:02X?}",
                    got.get(&(*b, *r))
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{w}x{h}: {} registers differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        assert!(
            want.len() > 100,
            "{w}x{h}: the fixture holds {} registers",
            want.len()
        );
    }
}
