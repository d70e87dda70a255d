//! macOS only: IOReport's Energy Model through its C functions (private but stable since
//! the M1, the interface `powermetrics` and public tools use), and `powermetrics` as a child
//! process. Not compiled on other systems; everything it feeds is in the portable modules.

use crate::energy::{ChannelSample, EnergyModel, Subsystem, GROUP};
use crate::powermetrics::{parse_sample, PowerSample, SAMPLE_HEADER};
use crate::{Config, Source};
use ipw_sampler_sdk::{monotonic_now, Channel, Reading};
use std::ffi::{c_char, c_void, CStr, CString};
use std::io::BufRead;
use std::sync::mpsc;

type CFTypeRef = *const c_void;
type CFStringRef = *const c_void;
type CFDictionaryRef = *const c_void;
type CFMutableDictionaryRef = *mut c_void;
type CFArrayRef = *const c_void;

/// `kCFStringEncodingUTF8`.
const UTF8: u32 = 0x0800_0100;

#[link(name = "CoreFoundation", kind = "framework")]
extern "C" {
    fn CFStringCreateWithCString(alloc: CFTypeRef, s: *const c_char, enc: u32) -> CFStringRef;
    fn CFStringGetCString(s: CFStringRef, buf: *mut c_char, size: isize, enc: u32) -> u8;
    fn CFDictionaryGetValue(d: CFDictionaryRef, key: CFTypeRef) -> CFTypeRef;
    fn CFDictionaryCreateMutableCopy(
        alloc: CFTypeRef,
        capacity: isize,
        d: CFDictionaryRef,
    ) -> CFMutableDictionaryRef;
    fn CFArrayGetCount(a: CFArrayRef) -> isize;
    fn CFArrayGetValueAtIndex(a: CFArrayRef, i: isize) -> CFTypeRef;
    fn CFRelease(x: CFTypeRef);
}

#[link(name = "IOReport", kind = "dylib")]
extern "C" {
    fn IOReportCopyChannelsInGroup(
        group: CFStringRef,
        subgroup: CFStringRef,
        a: u64,
        b: u64,
        c: u64,
    ) -> CFDictionaryRef;
    fn IOReportCreateSubscription(
        a: *const c_void,
        desired: CFMutableDictionaryRef,
        subscribed: *mut CFMutableDictionaryRef,
        id: u64,
        b: CFTypeRef,
    ) -> *const c_void;
    fn IOReportCreateSamples(
        sub: *const c_void,
        subscribed: CFMutableDictionaryRef,
        a: CFTypeRef,
    ) -> CFDictionaryRef;
    fn IOReportChannelGetGroup(ch: CFDictionaryRef) -> CFStringRef;
    fn IOReportChannelGetSubGroup(ch: CFDictionaryRef) -> CFStringRef;
    fn IOReportChannelGetChannelName(ch: CFDictionaryRef) -> CFStringRef;
    fn IOReportChannelGetUnitLabel(ch: CFDictionaryRef) -> CFStringRef;
    fn IOReportSimpleGetIntegerValue(ch: CFDictionaryRef, index: i32) -> i64;
}

fn cfstr(s: &str) -> CFStringRef {
    let c = CString::new(s).expect("no NUL");
    // SAFETY: a valid C string; the caller releases the result.
    unsafe { CFStringCreateWithCString(std::ptr::null(), c.as_ptr(), UTF8) }
}

fn string(s: CFStringRef) -> String {
    if s.is_null() {
        return String::new();
    }
    let mut buf = [0 as c_char; 256];
    // SAFETY: the buffer's size is passed; the result is NUL-terminated on success.
    let ok = unsafe { CFStringGetCString(s, buf.as_mut_ptr(), buf.len() as isize, UTF8) };
    if ok == 0 {
        return String::new();
    }
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A live subscription to the Energy Model group; released on drop.
struct Subscription {
    sub: *const c_void,
    subscribed: CFMutableDictionaryRef,
}

impl Subscription {
    fn new() -> Result<Self, String> {
        // SAFETY: CoreFoundation objects created here are released here or owned by the
        // returned value.
        unsafe {
            let group = cfstr(GROUP);
            let channels = IOReportCopyChannelsInGroup(group, std::ptr::null(), 0, 0, 0);
            CFRelease(group);
            if channels.is_null() {
                return Err(format!("apple: IOReport has no `{GROUP}` group"));
            }
            let desired = CFDictionaryCreateMutableCopy(std::ptr::null(), 0, channels);
            CFRelease(channels);
            let mut subscribed: CFMutableDictionaryRef = std::ptr::null_mut();
            let sub = IOReportCreateSubscription(
                std::ptr::null(),
                desired,
                &mut subscribed,
                0,
                std::ptr::null(),
            );
            CFRelease(desired as CFTypeRef);
            if sub.is_null() || subscribed.is_null() {
                return Err("apple: cannot subscribe to IOReport's energy channels".into());
            }
            Ok(Subscription { sub, subscribed })
        }
    }

    /// One cumulative sample of every subscribed channel.
    fn sample(&self) -> Result<Vec<ChannelSample>, String> {
        // SAFETY: the subscription is live; the sample is released below.
        unsafe {
            let s = IOReportCreateSamples(self.sub, self.subscribed, std::ptr::null());
            if s.is_null() {
                return Err("apple: IOReport returned no sample".into());
            }
            let key = cfstr("IOReportChannels");
            let arr = CFDictionaryGetValue(s, key) as CFArrayRef;
            CFRelease(key);
            let mut out = Vec::new();
            if !arr.is_null() {
                for i in 0..CFArrayGetCount(arr) {
                    let ch = CFArrayGetValueAtIndex(arr, i) as CFDictionaryRef;
                    out.push(ChannelSample {
                        group: string(IOReportChannelGetGroup(ch)),
                        subgroup: string(IOReportChannelGetSubGroup(ch)),
                        channel: string(IOReportChannelGetChannelName(ch)),
                        unit: string(IOReportChannelGetUnitLabel(ch)),
                        value: IOReportSimpleGetIntegerValue(ch, 0),
                    });
                }
            }
            CFRelease(s);
            Ok(out)
        }
    }
}

// SAFETY: IOReport objects are used from one thread at a time (the host serialises calls).
unsafe impl Send for Subscription {}

impl Drop for Subscription {
    fn drop(&mut self) {
        // SAFETY: owned references from `new`.
        unsafe {
            CFRelease(self.subscribed as CFTypeRef);
            CFRelease(self.sub);
        }
    }
}

/// The IOReport source: a subscription and the counters built from its samples.
pub(crate) struct IoReport {
    subscription: Subscription,
    model: EnergyModel,
    subsystems: Vec<Subsystem>,
}

impl IoReport {
    fn open() -> Result<Self, String> {
        let subscription = Subscription::new()?;
        let first = subscription.sample()?;
        let mut model = EnergyModel::new(&first)?;
        // Cumulative samples: the first sets the start, and a channel missing for a while
        // counts its gap when it returns (a delta sample would lose it).
        model.add_cumulative(&first)?;
        Ok(IoReport {
            subscription,
            subsystems: model.subsystems(),
            model,
        })
    }
}

/// `powermetrics` running as a child; a thread turns its output into samples.
pub(crate) struct Powermetrics {
    child: std::process::Child,
    rx: mpsc::Receiver<(f64, PowerSample)>,
    interval_s: f64,
}

impl Powermetrics {
    fn open(interval_ms: u64) -> Result<Self, String> {
        let mut child = std::process::Command::new("powermetrics")
            .args([
                "--samplers",
                "cpu_power,gpu_power,ane_power",
                "-i",
                &interval_ms.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("apple: cannot run powermetrics ({e}); it needs root"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut block = String::new();
            // A sample ends at its `Combined Power` line (the last of these samplers' lines)
            // or at the next header, whichever comes first: stamped when it is complete.
            let flush = |block: &mut String| {
                let s = parse_sample(block);
                block.clear();
                !s.is_empty() && tx.send((monotonic_now(), s)).is_err()
            };
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(SAMPLE_HEADER) {
                    if flush(&mut block) {
                        break;
                    }
                    continue;
                }
                block.push_str(&line);
                block.push('\n');
                if line.trim_start().starts_with("Combined Power") && flush(&mut block) {
                    break;
                }
            }
        });
        Ok(Powermetrics {
            child,
            rx,
            interval_s: interval_ms as f64 / 1e3,
        })
    }
}

impl Drop for Powermetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The open source.
pub(crate) enum Inner {
    IoReport(IoReport),
    Powermetrics(Powermetrics),
}

impl Inner {
    pub(crate) fn open(cfg: &Config) -> Result<Self, String> {
        Ok(match cfg.source {
            Source::Ioreport => Inner::IoReport(IoReport::open()?),
            Source::Powermetrics => Inner::Powermetrics(Powermetrics::open(cfg.interval_ms)?),
            // Opened by `Apple::open` before the live sources; never a live one.
            Source::Recorded => return Err("apple: a recorded source is not live".into()),
        })
    }

    pub(crate) fn channels(&self) -> Vec<Channel> {
        match self {
            Inner::IoReport(io) => crate::energy_channels(&io.subsystems),
            Inner::Powermetrics(p) => crate::powermetrics_channels(p.interval_s),
        }
    }

    pub(crate) fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        match self {
            Inner::IoReport(io) => {
                let t = monotonic_now();
                let sample = io.subscription.sample()?;
                let update = io.model.add_cumulative(&sample)?;
                crate::energy_readings(&io.subsystems, &update, t, out)
            }
            Inner::Powermetrics(p) => {
                // A powermetrics that quit (usually: not root) would otherwise read as
                // silence forever.
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Err(format!(
                        "apple: powermetrics exited ({status}); it needs root (run ipw with sudo)"
                    ));
                }
                while let Ok((t, s)) = p.rx.try_recv() {
                    crate::powermetrics_readings(&s, t, out);
                }
                Ok(())
            }
        }
    }
}
