//! The Vulkan API version and driver of each device llama.cpp's Vulkan backend uses, asked of the
//! Vulkan loader directly: llama.cpp reports a device's name and memory, not what runs it, and
//! the manifest should say (a figure from Mesa 22 and one from a vendor driver are not the same
//! measurement).

use super::placement::ComputeDevice;
use libloading::Library;
use std::ffi::{c_char, c_void, CStr};

type Instance = *mut c_void;
type PhysicalDevice = *mut c_void;
type CreateInstance =
    unsafe extern "C" fn(*const InstanceCreateInfo, *const c_void, *mut Instance) -> i32;
type DestroyInstance = unsafe extern "C" fn(Instance, *const c_void);
type EnumerateDevices = unsafe extern "C" fn(Instance, *mut u32, *mut PhysicalDevice) -> i32;
type GetProperties2 = unsafe extern "C" fn(PhysicalDevice, *mut Properties2);
type GetInstanceProcAddr = unsafe extern "C" fn(Instance, *const c_char) -> *const c_void;

const STYPE_APPLICATION_INFO: u32 = 0;
const STYPE_INSTANCE_CREATE_INFO: u32 = 1;
const STYPE_PHYSICAL_DEVICE_PROPERTIES_2: u32 = 1_000_059_001;
const STYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES: u32 = 1_000_196_000;
/// `VK_API_VERSION_1_2`: the driver properties are core from 1.2.
const API_1_2: u32 = (1 << 22) | (2 << 12);

#[repr(C)]
struct ApplicationInfo {
    s_type: u32,
    p_next: *const c_void,
    application_name: *const c_char,
    application_version: u32,
    engine_name: *const c_char,
    engine_version: u32,
    api_version: u32,
}

#[repr(C)]
struct InstanceCreateInfo {
    s_type: u32,
    p_next: *const c_void,
    flags: u32,
    application_info: *const ApplicationInfo,
    enabled_layer_count: u32,
    enabled_layer_names: *const *const c_char,
    enabled_extension_count: u32,
    enabled_extension_names: *const *const c_char,
}

/// `VkPhysicalDeviceProperties2`; the 824-byte `VkPhysicalDeviceProperties` is read at the
/// offsets of its leading members only (apiVersion 0, driverVersion 4, deviceName 20).
#[repr(C)]
struct Properties2 {
    s_type: u32,
    p_next: *mut c_void,
    properties: [u64; 103],
}

/// `VkPhysicalDeviceDriverProperties`.
#[repr(C)]
struct DriverProperties {
    s_type: u32,
    p_next: *mut c_void,
    driver_id: u32,
    driver_name: [c_char; 256],
    driver_info: [c_char; 256],
    conformance_version: [u8; 4],
}

/// What the loader says about one device.
struct Facts {
    name: String,
    api_version: String,
    driver: String,
}

/// Fill in `api_version` and `driver` of the Vulkan devices in `devices`, matched by name.
/// Nothing changes when the loader cannot be asked (the devices keep what llama.cpp said).
pub fn annotate(devices: &mut [ComputeDevice]) {
    let facts = match query() {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("Vulkan device facts unavailable: {e}");
            return;
        }
    };
    for d in devices.iter_mut().filter(|d| d.backend == "Vulkan") {
        if let Some(f) = facts.iter().find(|f| f.name == d.description) {
            d.api_version = Some(f.api_version.clone());
            d.driver = Some(f.driver.clone());
        }
    }
}

fn loader() -> Result<Library, String> {
    let names = ["libvulkan.so.1", "libvulkan.1.dylib", "vulkan-1.dll"];
    let mut errors = Vec::new();
    for name in names {
        // SAFETY: the Vulkan loader's initialisers are what llama.cpp already ran in-process.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

fn string(chars: &[c_char]) -> String {
    // SAFETY: Vulkan writes NUL-terminated strings into these fixed arrays; the last element is
    // forced to NUL by the zeroed buffer being longer than any name.
    unsafe { CStr::from_ptr(chars.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn query() -> Result<Vec<Facts>, String> {
    let lib = loader()?;
    // SAFETY: signatures and struct layouts from the Vulkan 1.2 headers; every out-parameter is
    // sized as the API says; the instance is destroyed before the library is dropped.
    unsafe {
        let proc_addr: GetInstanceProcAddr = *lib
            .get(b"vkGetInstanceProcAddr\0")
            .map_err(|e| e.to_string())?;
        let global = |name: &CStr| {
            let f = proc_addr(std::ptr::null_mut(), name.as_ptr());
            (!f.is_null()).then_some(f)
        };
        let create: CreateInstance =
            std::mem::transmute(global(c"vkCreateInstance").ok_or("no vkCreateInstance")?);
        let app = ApplicationInfo {
            s_type: STYPE_APPLICATION_INFO,
            p_next: std::ptr::null(),
            application_name: c"ipw".as_ptr(),
            application_version: 0,
            engine_name: std::ptr::null(),
            engine_version: 0,
            api_version: API_1_2,
        };
        let info = InstanceCreateInfo {
            s_type: STYPE_INSTANCE_CREATE_INFO,
            p_next: std::ptr::null(),
            flags: 0,
            application_info: &app,
            enabled_layer_count: 0,
            enabled_layer_names: std::ptr::null(),
            enabled_extension_count: 0,
            enabled_extension_names: std::ptr::null(),
        };
        let mut instance: Instance = std::ptr::null_mut();
        let r = create(&info, std::ptr::null(), &mut instance);
        if r != 0 || instance.is_null() {
            return Err(format!("vkCreateInstance failed ({r})"));
        }
        let local = |name: &CStr| {
            let f = proc_addr(instance, name.as_ptr());
            (!f.is_null()).then_some(f)
        };
        let destroy: Option<DestroyInstance> =
            local(c"vkDestroyInstance").map(|f| std::mem::transmute(f));
        let result = (|| {
            let enumerate: EnumerateDevices = std::mem::transmute(
                local(c"vkEnumeratePhysicalDevices").ok_or("no vkEnumeratePhysicalDevices")?,
            );
            let properties: GetProperties2 = std::mem::transmute(
                local(c"vkGetPhysicalDeviceProperties2")
                    .ok_or("no vkGetPhysicalDeviceProperties2")?,
            );
            let mut n = 0u32;
            enumerate(instance, &mut n, std::ptr::null_mut());
            let mut devices = vec![std::ptr::null_mut(); n as usize];
            enumerate(instance, &mut n, devices.as_mut_ptr());
            devices.truncate(n as usize);
            let mut out = Vec::new();
            for pd in devices {
                let mut driver: DriverProperties = std::mem::zeroed();
                driver.s_type = STYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
                let mut props: Properties2 = std::mem::zeroed();
                props.s_type = STYPE_PHYSICAL_DEVICE_PROPERTIES_2;
                props.p_next = (&mut driver as *mut DriverProperties).cast();
                properties(pd, &mut props);
                let bytes: &[u8] = std::slice::from_raw_parts(
                    props.properties.as_ptr().cast(),
                    std::mem::size_of_val(&props.properties),
                );
                let api = u32::from_ne_bytes(bytes[0..4].try_into().unwrap_or_default());
                let name_chars: Vec<c_char> = bytes[20..276].iter().map(|&b| b as c_char).collect();
                let (driver_name, driver_info) =
                    (string(&driver.driver_name), string(&driver.driver_info));
                out.push(Facts {
                    name: string(&name_chars),
                    api_version: format!(
                        "{}.{}.{}",
                        (api >> 22) & 0x7f,
                        (api >> 12) & 0x3ff,
                        api & 0xfff
                    ),
                    driver: match (driver_name.is_empty(), driver_info.is_empty()) {
                        (false, false) => format!("{driver_name} ({driver_info})"),
                        (false, true) => driver_name,
                        _ => driver_info,
                    },
                });
            }
            Ok(out)
        })();
        if let Some(destroy) = destroy {
            destroy(instance, std::ptr::null());
        }
        result
    }
}
