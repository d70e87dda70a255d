//! The ipw sampler SDK: what a power-sampler plugin author depends on, and nothing else.
//!
//! A sampler is a native dynamic library (`cdylib`) that reads power or energy. An author
//! implements one trait, [`Sampler`], and calls [`export_sampler!`] once with the sampler's name; the macro exports the
//! single C symbol the host looks for ([`ENTRY_SYMBOL`]) and wraps every call in
//! `catch_unwind`, so a panic becomes an error message, never an abort of the profiler.
//!
//! Samplers report raw, timestamped readings (on [`monotonic_now`], the host's run clock). All
//! interpolation, integration and attribution happen in the host, once.
//!
//! ```ignore
//! struct Wall { meter: MyMeter }
//! impl ipw_sampler_sdk::Sampler for Wall {
//!     fn open(config: &serde_json::Value) -> Result<Self, String> { ... }
//!     fn channels(&self) -> Vec<Channel> { ... }
//!     fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> { ... }
//! }
//! ipw_sampler_sdk::export_sampler!(Wall, "wall-meter");
//! ```

pub mod abi;
mod channel;
#[doc(hidden)]
pub mod export;

pub use channel::{Accuracy, Channel, ChannelKind, Domain, GaugeTiming};
pub use serde_json;

/// The C symbol every sampler library exports; it returns a pointer to an [`abi::SamplerApiV1`].
pub const ENTRY_SYMBOL: &str = "ipw_sampler_api";

/// The unit of a telemetry channel that counts processes other than the host using the
/// channel's device (e.g. other CUDA processes on a GPU). Where the model runs inside the host,
/// the host treats any count above 0 as competing load: records measured beside it are flagged
/// `other_load`, a baseline taken beside it `busy_baseline`.
pub const OTHER_PROCESSES_UNIT: &str = "other-processes";

/// The unit of a telemetry channel whose value is above 0 while its device slows its clocks for
/// power or heat (NVML's power-cap, thermal and power-brake clock event reasons, AMD's throttle
/// status). Records measured while it is are flagged `throttled`.
pub const THROTTLE_UNIT: &str = "throttle-reasons";

/// The unit of a telemetry channel whose value is the most power, in watts, its device may draw
/// (an enforced power limit, a power cap, a meter's range). An instant power gauge of the same
/// sampler and device knows nothing between two readings but this: a window too short for its
/// readings (`coarse_sampling`) gets a bound that reaches it (`bound_from_ceiling`).
pub const POWER_LIMIT_UNIT: &str = "power-limit-w";

/// The version of this SDK, stamped into every plugin built with it.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One reading of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Index of the channel in [`Sampler::channels`].
    pub channel: u32,
    /// When the value was read, seconds on [`monotonic_now`]'s clock.
    pub timestamp_s: f64,
    /// Joules for an energy counter, watts for a power gauge, the channel's unit for telemetry.
    pub value: f64,
}

/// A power or energy source.
pub trait Sampler: Sized + Send + 'static {
    /// Open the source with the experiment's settings for this sampler (a JSON object).
    fn open(config: &serde_json::Value) -> Result<Self, String>;
    /// The channels this source provides; indexes are the `channel` of each [`Reading`].
    fn channels(&self) -> Vec<Channel>;
    /// Append the readings available now (usually one per channel; a replayed trace may
    /// return several). A channel with nothing to report this time is simply left out.
    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String>;
}

/// Read every one of `sources` (source i is channel i) with `read`, pushing a reading stamped
/// when it was taken for each that worked. Every source is tried, so one failing sensor does
/// not hide another, and the error names all that failed this time.
pub fn read_each<T>(
    sources: &[T],
    out: &mut Vec<Reading>,
    mut read: impl FnMut(&T) -> Result<f64, String>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        match read(s) {
            Ok(value) => out.push(Reading {
                channel: i as u32,
                timestamp_s: monotonic_now(),
                value,
            }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Seconds on the monotonic clock the host uses for query windows (`CLOCK_MONOTONIC`).
pub fn monotonic_now() -> f64 {
    // SAFETY: clock_gettime writes only into `ts`.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A PCI address (`domain:bus:device.function`, hex) as numbers, so that the forms drivers
/// write compare equal: NVML's `00000000:C1:00.0`, llama.cpp's `0000:c1:00.0`, sysfs's. `None`
/// when `s` is not one. GPU samplers match the `gpus` setting against it.
pub fn pci_bus_id(s: &str) -> Option<(u32, u8, u8, u8)> {
    let s = s.trim();
    let (rest, function) = s.rsplit_once('.')?;
    let mut parts = rest.split(':');
    let (domain, bus, device) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(b), Some(v), None) => (d, b, v),
        (Some(b), Some(v), None, None) => ("0", b, v),
        _ => return None,
    };
    Some((
        u32::from_str_radix(domain, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        u8::from_str_radix(device, 16).ok()?,
        u8::from_str_radix(function, 16).ok()?,
    ))
}

#[cfg(test)]
mod pci_tests {
    use super::pci_bus_id;

    #[test]
    fn pci_addresses_compare_across_the_forms_drivers_write() {
        let nvml = pci_bus_id("00000000:C1:00.0");
        assert_eq!(nvml, Some((0, 0xc1, 0, 0)));
        assert_eq!(pci_bus_id("0000:c1:00.0"), nvml);
        assert_eq!(pci_bus_id("c1:00.0"), nvml);
        assert_ne!(pci_bus_id("0000:c2:00.0"), nvml);
        for bad in ["GPU-1234", "0", "0000:zz:00.0", "0000:c1:00", ""] {
            assert_eq!(pci_bus_id(bad), None, "{bad}");
        }
    }
}
