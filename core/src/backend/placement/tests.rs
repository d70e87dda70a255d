use super::*;
use serde_json::json;

fn model(settings: serde_json::Value) -> ModelConfig {
    let mut v = json!({ "name": "m", "path": "m.gguf" });
    v.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn device(index: usize, name: &str, kind: DeviceKind, pci: Option<&str>) -> ComputeDevice {
    ComputeDevice {
        index,
        name: name.into(),
        description: format!("{name} board"),
        backend: name.trim_end_matches(char::is_numeric).into(),
        kind,
        memory_total_bytes: 8 << 30,
        memory_free_bytes: 7 << 30,
        pci_bus_id: pci.map(str::to_string),
        api_version: None,
        driver: None,
    }
}

fn cpu_build() -> Inventory {
    Inventory {
        gpu_backends: vec![],
        devices: vec![device(0, "CPU", DeviceKind::Cpu, None)],
        backend_log: vec![],
    }
}

fn vulkan_build(gpus: usize) -> Inventory {
    let mut devices: Vec<ComputeDevice> = (0..gpus)
        .map(|i| {
            device(
                i,
                &format!("Vulkan{i}"),
                DeviceKind::Gpu,
                Some(&format!("0000:0{i}:00.0")),
            )
        })
        .collect();
    devices.push(device(gpus, "CPU", DeviceKind::Cpu, None));
    Inventory {
        gpu_backends: vec!["Vulkan".into()],
        devices,
        backend_log: vec![],
    }
}

#[test]
fn the_default_is_every_layer_on_the_gpus_a_build_sees_and_cpu_otherwise() {
    let m = model(json!({}));
    let on_gpu = plan(&m, &vulkan_build(2)).unwrap();
    assert_eq!(on_gpu.gpu_layers, GpuLayers::All.as_llama());
    assert_eq!(on_gpu.devices.len(), 2);
    assert!(!on_gpu.devices_named);
    let cpu = plan(&m, &cpu_build()).unwrap();
    assert_eq!((cpu.gpu_layers, cpu.devices.len()), (0, 0));
    assert!(cpu.rule.contains("no GPU backend"), "{}", cpu.rule);
    let blind = plan(&m, &vulkan_build(0)).unwrap();
    assert_eq!(blind.gpu_layers, 0);
    assert!(blind.rule.contains("sees no GPU"), "{}", blind.rule);
}

#[test]
fn gpu_layers_without_a_gpu_backend_are_refused_naming_what_to_build() {
    for asked in [json!({"gpu_layers": "all"}), json!({"gpu_layers": 12})] {
        let e = plan(&model(asked), &cpu_build()).unwrap_err();
        assert!(e.contains("built without a GPU backend"), "{e}");
        assert!(e.contains("--features vulkan"), "{e}");
        assert!(e.contains("model `m`"), "{e}");
    }
}

#[test]
fn gpu_layers_on_a_machine_whose_backend_sees_no_device_are_refused_naming_the_driver() {
    let e = plan(&model(json!({"gpu_layers": "all"})), &vulkan_build(0)).unwrap_err();
    assert!(e.contains("sees no device"), "{e}");
    assert!(e.contains("mesa-vulkan-drivers"), "{e}");
}

#[test]
fn zero_layers_is_the_cpu_even_with_a_gpu() {
    let p = plan(&model(json!({"gpu_layers": 0})), &vulkan_build(1)).unwrap();
    assert_eq!((p.gpu_layers, p.devices.len()), (0, 0));
    let e = plan(
        &model(json!({"gpu_layers": 0, "devices": ["Vulkan0"]})),
        &vulkan_build(1),
    )
    .unwrap_err();
    assert!(e.contains("gpu_layers = 0"), "{e}");
}

#[test]
fn named_devices_are_found_by_name_or_pci_id_and_unknown_ones_refused() {
    let inv = vulkan_build(2);
    let p = plan(
        &model(json!({"gpu_layers": 20, "devices": ["0000:01:00.0"]})),
        &inv,
    )
    .unwrap();
    assert_eq!(p.gpu_layers, 20);
    assert_eq!(p.devices.len(), 1);
    assert_eq!(p.devices[0].name, "Vulkan1");
    assert!(p.devices_named);
    let e = plan(&model(json!({"devices": ["CUDA0"]})), &inv).unwrap_err();
    assert!(e.contains("`CUDA0`") && e.contains("`Vulkan0`"), "{e}");
    let e = plan(&model(json!({"devices": ["CPU"]})), &inv).unwrap_err();
    assert!(e.contains("not a GPU"), "{e}");
}

#[test]
fn gpu_layers_parse_as_a_count_or_all_and_nothing_else() {
    assert_eq!(
        model(json!({"gpu_layers": "all"})).gpu_layers,
        Some(GpuLayers::All)
    );
    assert_eq!(
        model(json!({"gpu_layers": 7})).gpu_layers,
        Some(GpuLayers::Count(7))
    );
    for bad in [json!("half"), json!(-1), json!(1.5)] {
        let v = json!({"name": "m", "gpu_layers": bad});
        let e = serde_json::from_value::<ModelConfig>(v).unwrap_err();
        assert!(e.to_string().contains("layer count"), "{bad}: {e}");
    }
    // Written back as it was read, so a manifest's model settings stay readable as settings.
    assert_eq!(serde_json::to_value(GpuLayers::All).unwrap(), json!("all"));
    assert_eq!(serde_json::to_value(GpuLayers::Count(3)).unwrap(), json!(3));
}

fn sampler(plugin: &str, config: serde_json::Value) -> SamplerConfig {
    serde_json::from_value(json!({ "plugin": plugin, "config": config })).unwrap()
}

#[test]
fn gpu_samplers_follow_the_embedded_models_gpus_unless_told_otherwise() {
    let inv = vulkan_build(2);
    let on_gpu1 = plan(&model(json!({"devices": ["Vulkan1"]})), &inv).unwrap();
    let mut samplers = vec![
        sampler("nvml", json!({})),
        sampler("amdsmi", json!({"gpus": [0]})),
        sampler("rapl", json!({})),
    ];
    let changed = follow(&mut samplers, &on_gpu1);
    assert_eq!(samplers[0].config, json!({"gpus": ["0000:01:00.0"]}));
    assert_eq!(samplers[1].config, json!({"gpus": [0]}), "told otherwise");
    assert_eq!(samplers[2].config, json!({}), "not a GPU sampler");
    assert_eq!(changed.len(), 1, "{changed:?}");

    // On the CPU, or on devices without a PCI id, the samplers keep their default.
    let mut samplers = vec![sampler("nvml", json!({}))];
    let cpu = plan(&model(json!({"gpu_layers": 0})), &inv).unwrap();
    assert!(follow(&mut samplers, &cpu).is_empty());
    let mut no_pci = vulkan_build(1);
    no_pci.devices[0].pci_bus_id = None;
    let p = plan(&model(json!({})), &no_pci).unwrap();
    assert!(follow(&mut samplers, &p).is_empty());
    assert_eq!(samplers[0].config, json!({}));
}
