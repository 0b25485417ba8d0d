//! A simulated ArduCAM Mini 2MP Plus behind the embedded-hal traits the driver uses: the
//! ArduChip's register file and FIFO on `SimSpi`, the OV2640's banked registers on `SimI2c`, a
//! clock on `SimDelay`, the LED on `SimLed`. Frames come from a closure that returns a JPEG at the
//! size the DSP registers ask for, so a driver that programs the sensor wrongly gets no picture.
//! Faults can be injected (stalled capture, corrupt JPEG) to test what sits above the driver.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use embedded_hal::digital;
use embedded_hal::i2c::{self, NoAcknowledgeSource};
use embedded_hal::spi::{self, Operation};

use crate::ov2640;
use crate::regs::{chip, sensor};

/// Produces a JPEG of the given width and height.
pub type FrameFn = Box<dyn FnMut(u16, u16) -> Vec<u8> + Send>;

/// Faults to inject, counted in captures (1-based): `every = 3` hits captures 3, 6, 9...
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The capture-done flag never rises.
    pub stall_every: Option<u32>,
    /// The FIFO holds a JPEG with its end cut off and garbage in the middle.
    pub corrupt_every: Option<u32>,
}

pub struct SimState {
    chip_regs: [u8; 0x80],
    dsp: [u8; 256],
    sensor_regs: [u8; 256],
    bank: u8,
    fifo: Vec<u8>,
    read_ptr: usize,
    /// Simulated time, advanced by `SimDelay` (and by real sleeps when `real_time`).
    now_ns: u64,
    sensor_busy_until: u64,
    capture_done_at: Option<u64>,
    captures: u32,
    frame: FrameFn,
    /// Exposure plus readout: how long after the start command the done flag rises.
    pub frame_ns: u64,
    pub faults: Faults,
    pub led_on: bool,
    pub led_toggles: u32,
    /// Product id the sensor reports (an OV2640 rev. 2 by default).
    pub pid: (u8, u8),
    /// Make `SimDelay` really sleep, so a simulated camera runs at a camera's pace.
    pub real_time: bool,
    /// Every I2C register write received, in order, bank selects included (at most `TRACE`).
    pub trace: Vec<(u8, u8)>,
    /// The JPEG block was reset (DSP 0xE0 bit 4) since the sensor's last reset.
    jpeg_reset: bool,
}

/// Writes kept in `SimState::trace`: a driver's init is a few hundred.
const TRACE: usize = 65_536;

/// Registers JPEG output depends on, as (bank, register): the sensor's timing mode (COM7: SVGA
/// up to 352x288, UXGA above), the DSP set the JPEG block needs, the pixel-clock divider, the
/// sizes, and the sensor timing set. A real module given other values
/// than the vendor's streams no JPEG (or a broken one); so does this one.
const JPEG_DEPENDS_ON: [(u8, u8); 38] = [
    (1, 0x12),
    (0, 0x2C),
    (0, 0x2E),
    (0, 0xE1),
    (0, 0xE5),
    (0, 0xD7),
    (0, 0xD9),
    (0, 0xDD),
    (0, 0xDF),
    (0, 0xF9),
    (0, 0xD3),
    (0, 0xC0),
    (0, 0xC1),
    (0, 0x51),
    (0, 0x52),
    (0, 0x5A),
    (0, 0x5B),
    (0, 0x5C),
    (0, 0xDA),
    (1, 0x3C),
    (1, 0x35),
    (1, 0x22),
    (1, 0x37),
    (1, 0x34),
    (1, 0x06),
    (1, 0x07),
    (1, 0x0D),
    (1, 0x0E),
    (1, 0x39),
    (1, 0x2C),
    (1, 0x33),
    (1, 0x3A),
    (1, 0x3B),
    (1, 0x43),
    (1, 0x16),
    (1, 0x5A),
    (1, 0x6D),
    (1, 0x3D),
];

/// The register state ArduCAM's sequence leaves for `res`: the working values this module
/// checks the JPEG-relevant registers against.
fn vendor_state(res: ov2640::Resolution) -> std::collections::HashMap<(u8, u8), u8> {
    use ov2640::tables;
    let head = [
        (sensor::BANK_SEL, sensor::BANK_SENSOR),
        (sensor::COM7, sensor::COM7_SRST),
    ];
    let mid = [(sensor::BANK_SEL, sensor::BANK_SENSOR), (0x15, 0x00)];
    let writes = head
        .iter()
        .chain(&tables::JPEG_INIT)
        .chain(&tables::YUV422)
        .chain(&tables::JPEG)
        .chain(&mid)
        .chain(res.table());
    let (mut bank, mut state) = (0u8, std::collections::HashMap::new());
    for &(reg, val) in writes {
        if reg == sensor::BANK_SEL {
            bank = val & 1;
        } else {
            state.insert((bank, reg), val);
        }
    }
    state
}

const VERSION: u8 = 0x73;
/// DSP RESET (0xE0) bit 4: the JPEG block.
const RESET_JPEG: u8 = 0x10;
const PIDL: u8 = 0x42;

impl SimState {
    fn power_on_sensor(&mut self) {
        self.jpeg_reset = false;
        self.sensor_regs = [0; 256];
        self.dsp = [0; 256];
        self.sensor_regs[sensor::PIDH as usize] = self.pid.0;
        self.sensor_regs[sensor::PIDL as usize] = self.pid.1;
        self.sensor_regs[sensor::COM7 as usize] = 0x00; // UXGA timing after reset
        self.dsp[sensor::R_BYPASS as usize] = 0x01;
        self.bank = sensor::BANK_DSP;
    }

    /// The frame size, when the sensor is set up to emit JPEG at all: JPEG mode, DSP and DVP
    /// running, the JPEG block reset since power-on and released, and every register of
    /// `JPEG_DEPENDS_ON` at the vendor's value for the size the zoom asks for.
    pub fn jpeg_output(&self) -> Option<(u16, u16)> {
        let d = &self.dsp;
        let ok = d[sensor::IMAGE_MODE as usize] & sensor::IMAGE_MODE_JPEG != 0
            && d[sensor::R_BYPASS as usize] & 1 == 0
            && d[sensor::RESET as usize] == 0
            && self.jpeg_reset;
        let (w, h) = ov2640::output_size(
            d[sensor::ZMOW as usize],
            d[sensor::ZMOH as usize],
            d[sensor::ZMHH as usize],
        );
        let res = ov2640::Resolution::ALL
            .into_iter()
            .find(|r| r.size() == (w, h))?;
        let vendor = vendor_state(res);
        let working = JPEG_DEPENDS_ON.iter().all(|key| {
            let now = if key.0 == 0 {
                d[key.1 as usize]
            } else {
                self.sensor_regs[key.1 as usize]
            };
            vendor.get(key).is_none_or(|&v| v == now)
        });
        (ok && working).then_some((w, h))
    }

    /// The first register of `JPEG_DEPENDS_ON` (bank, register, value, vendor's) that keeps
    /// this module from streaming JPEG at `res`, if any: for tests and `doctor`-like messages.
    pub fn jpeg_blocker(&self, res: ov2640::Resolution) -> Option<(u8, u8, u8, u8)> {
        let vendor = vendor_state(res);
        JPEG_DEPENDS_ON.iter().find_map(|&(bank, reg)| {
            let now = if bank == 0 {
                self.dsp[reg as usize]
            } else {
                self.sensor_regs[reg as usize]
            };
            let want = *vendor.get(&(bank, reg))?;
            (now != want).then_some((bank, reg, now, want))
        })
    }

    pub fn captures(&self) -> u32 {
        self.captures
    }

    fn hits(every: Option<u32>, n: u32) -> bool {
        every.is_some_and(|e| e > 0 && n % e == 0)
    }

    fn chip_write(&mut self, reg: u8, val: u8) {
        if reg == chip::FIFO_CTRL {
            if val & chip::FIFO_CLEAR_DONE != 0 {
                self.capture_done_at = None;
            }
            if val & chip::FIFO_RESET_WRITE != 0 {
                self.fifo.clear();
            }
            if val & chip::FIFO_RESET_READ != 0 {
                self.read_ptr = 0;
            }
            if val & chip::FIFO_START != 0 {
                self.start_capture();
            }
        } else if (reg as usize) < self.chip_regs.len() {
            self.chip_regs[reg as usize] = val;
        }
    }

    fn start_capture(&mut self) {
        self.captures += 1;
        let n = self.captures;
        self.fifo = match self.jpeg_output() {
            Some((w, h)) => (self.frame)(w, h),
            // A sensor not in JPEG mode streams raw pixels the FIFO stores as they come.
            None => vec![0x80; 320 * 240 * 2],
        };
        if Self::hits(self.faults.corrupt_every, n) {
            let keep = self.fifo.len() / 2;
            self.fifo.truncate(keep);
            let mid = keep / 2;
            self.fifo[mid..].iter_mut().for_each(|b| *b = 0x5A);
        }
        self.read_ptr = 0;
        self.capture_done_at = if Self::hits(self.faults.stall_every, n) {
            None
        } else {
            Some(self.now_ns + self.frame_ns)
        };
    }

    fn chip_read(&self, reg: u8) -> u8 {
        let len = self.fifo.len() as u32;
        match reg {
            chip::STATUS => {
                let done = self.capture_done_at.is_some_and(|t| self.now_ns >= t);
                if done {
                    chip::STATUS_CAPTURE_DONE
                } else {
                    0
                }
            }
            chip::VERSION => VERSION,
            r if r == chip::FIFO_SIZE[0] => len as u8,
            r if r == chip::FIFO_SIZE[1] => (len >> 8) as u8,
            r if r == chip::FIFO_SIZE[2] => ((len >> 16) & 0x7F) as u8,
            r => self.chip_regs[(r & 0x7F) as usize],
        }
    }

    fn fifo_next(&mut self) -> u8 {
        let b = self.fifo.get(self.read_ptr).copied().unwrap_or(0);
        self.read_ptr += 1;
        b
    }

    fn sensor_write(&mut self, reg: u8, val: u8) {
        if self.trace.len() < TRACE {
            self.trace.push((reg, val));
        }
        if reg == sensor::BANK_SEL {
            self.bank = val & 1;
        } else if self.bank == sensor::BANK_SENSOR {
            if reg == sensor::COM7 && val & sensor::COM7_SRST != 0 {
                self.power_on_sensor();
                self.bank = sensor::BANK_SENSOR;
                self.sensor_busy_until = self.now_ns + 1_000_000;
                return;
            }
            if reg != sensor::PIDH && reg != sensor::PIDL {
                self.sensor_regs[reg as usize] = val;
            }
        } else {
            if reg == sensor::RESET && val & RESET_JPEG != 0 {
                self.jpeg_reset = true;
            }
            self.dsp[reg as usize] = val;
        }
    }

    fn sensor_read(&self, reg: u8) -> u8 {
        if reg == sensor::BANK_SEL {
            self.bank
        } else if self.bank == sensor::BANK_SENSOR {
            self.sensor_regs[reg as usize]
        } else {
            self.dsp[reg as usize]
        }
    }
}

pub type SimDriver = crate::ArduCam<SimSpi, SimI2c, SimDelay, SimLed>;

/// A simulated module: clone handles out of it with `spi()`, `i2c()`, `delay()`, `led()`.
#[derive(Clone)]
pub struct SimArduCam {
    state: Arc<Mutex<SimState>>,
}

impl SimArduCam {
    pub fn new(frame: FrameFn) -> Self {
        let mut s = SimState {
            chip_regs: [0; 0x80],
            dsp: [0; 256],
            sensor_regs: [0; 256],
            bank: 0,
            fifo: Vec::new(),
            read_ptr: 0,
            now_ns: 0,
            sensor_busy_until: 0,
            capture_done_at: None,
            captures: 0,
            frame,
            frame_ns: 5_000_000,
            faults: Faults::default(),
            led_on: false,
            led_toggles: 0,
            real_time: false,
            pid: (sensor::PID, PIDL),
            trace: Vec::new(),
            jpeg_reset: false,
        };
        s.power_on_sensor();
        SimArduCam {
            state: Arc::new(Mutex::new(s)),
        }
    }

    /// The shared state, for tests and to set faults or pacing.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock can only come from a bug in this module; recover the
        // state rather than poisoning every later access.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The driver wired to this module.
    pub fn driver(&self, config: crate::Config) -> SimDriver {
        crate::ArduCam::new(self.spi(), self.i2c(), self.delay(), self.led(), config)
    }

    pub fn spi(&self) -> SimSpi {
        SimSpi(self.clone())
    }
    pub fn i2c(&self) -> SimI2c {
        SimI2c {
            cam: self.clone(),
            pointer: 0,
        }
    }
    pub fn delay(&self) -> SimDelay {
        SimDelay(self.clone())
    }
    pub fn led(&self) -> SimLed {
        SimLed(self.clone())
    }
}

pub struct SimSpi(SimArduCam);

impl spi::ErrorType for SimSpi {
    type Error = spi::ErrorKind;
}

impl spi::SpiDevice for SimSpi {
    /// One transaction is one chip-select assertion: the first byte out is the command.
    fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        let mut st = self.0.state();
        let mut cmd: Option<u8> = None;
        let mut wrote_value = false;
        for op in ops.iter_mut() {
            match op {
                Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        match cmd {
                            None => cmd = Some(b),
                            Some(c) if c & chip::WRITE != 0 && !wrote_value => {
                                st.chip_write(c & !chip::WRITE, b);
                                wrote_value = true;
                            }
                            _ => {}
                        }
                    }
                }
                Operation::Read(buf) => read_into(&mut st, cmd, buf),
                Operation::Transfer(read, write) => {
                    // Full duplex: the byte clocked in while the command goes out is junk.
                    for (i, r) in read.iter_mut().enumerate() {
                        if cmd.is_none() {
                            cmd = write.get(i).copied();
                            *r = 0;
                        } else {
                            read_into(&mut st, cmd, core::slice::from_mut(r));
                        }
                    }
                }
                Operation::TransferInPlace(buf) => {
                    for b in buf.iter_mut() {
                        if cmd.is_none() {
                            cmd = Some(*b);
                            *b = 0;
                        } else {
                            read_into(&mut st, cmd, core::slice::from_mut(b));
                        }
                    }
                }
                Operation::DelayNs(ns) => st.now_ns += *ns as u64,
            }
        }
        Ok(())
    }
}

fn read_into(st: &mut SimState, cmd: Option<u8>, buf: &mut [u8]) {
    match cmd {
        Some(chip::BURST_READ) => buf.iter_mut().for_each(|b| *b = st.fifo_next()),
        Some(chip::SINGLE_READ) => {
            if let Some(first) = buf.first_mut() {
                *first = st.fifo_next();
            }
        }
        Some(c) if c & chip::WRITE == 0 => {
            let v = st.chip_read(c);
            buf.iter_mut().for_each(|b| *b = v);
        }
        // Reading during a write command clocks back zeros.
        _ => buf.fill(0),
    }
}

pub struct SimI2c {
    cam: SimArduCam,
    pointer: u8,
}

impl i2c::ErrorType for SimI2c {
    type Error = i2c::ErrorKind;
}

impl i2c::I2c for SimI2c {
    fn transaction(
        &mut self,
        address: u8,
        ops: &mut [i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut st = self.cam.state();
        if address != sensor::ADDRESS {
            return Err(i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        // Right after a soft reset the sensor does not answer.
        if st.now_ns < st.sensor_busy_until {
            return Err(i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in ops.iter_mut() {
            match op {
                i2c::Operation::Write(bytes) => {
                    if let Some((&reg, rest)) = bytes.split_first() {
                        self.pointer = reg;
                        for &v in rest {
                            st.sensor_write(self.pointer, v);
                            self.pointer = self.pointer.wrapping_add(1);
                        }
                    }
                }
                i2c::Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = st.sensor_read(self.pointer);
                    }
                }
            }
        }
        Ok(())
    }
}

pub struct SimDelay(SimArduCam);

impl embedded_hal::delay::DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        let real = {
            let mut st = self.0.state();
            st.now_ns += ns as u64;
            st.real_time
        };
        if real {
            std::thread::sleep(Duration::from_nanos(ns as u64));
        }
    }
}

pub struct SimLed(SimArduCam);

impl digital::ErrorType for SimLed {
    type Error = core::convert::Infallible;
}

impl digital::OutputPin for SimLed {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut st = self.0.state();
        st.led_toggles += st.led_on as u32;
        st.led_on = false;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        let mut st = self.0.state();
        st.led_toggles += !st.led_on as u32;
        st.led_on = true;
        Ok(())
    }
}
