"""The few NVML calls the device check makes itself, through ctypes (no pynvml needed): open the
library, pick a GPU, read its total-energy counter (millijoules), name it."""

import ctypes
import os

NVML_SUCCESS = 0


class NvmlError(RuntimeError):
    pass


class Nvml:
    def __init__(self, lib_path="libnvidia-ml.so.1"):
        self.lib_path = lib_path
        self.lib = ctypes.CDLL(lib_path)
        self._call("nvmlInit_v2")

    def _call(self, name, *args):
        fn = getattr(self.lib, name)
        rc = fn(*args)
        if rc != NVML_SUCCESS:
            raise NvmlError(f"{name} returned NVML error {rc} ({self.lib_path})")

    def count(self):
        n = ctypes.c_uint()
        self._call("nvmlDeviceGetCount_v2", ctypes.byref(n))
        return n.value

    def handle(self, index):
        h = ctypes.c_void_p()
        self._call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(index), ctypes.byref(h))
        return h

    def _text(self, name, *args, size=96):
        buf = ctypes.create_string_buffer(size)
        self._call(name, *args, buf, ctypes.c_uint(size))
        return buf.value.decode(errors="replace")

    def uuid(self, index):
        return self._text("nvmlDeviceGetUUID", self.handle(index))

    def name(self, index):
        return self._text("nvmlDeviceGetName", self.handle(index))

    def driver(self):
        return self._text("nvmlSystemGetDriverVersion", size=80)

    def energy_mj(self, handle):
        mj = ctypes.c_ulonglong()
        self._call("nvmlDeviceGetTotalEnergyConsumption", handle, ctypes.byref(mj))
        return mj.value

    def cuda_index(self):
        """NVML's index of the GPU CUDA calls device 0: the first entry of CUDA_VISIBLE_DEVICES
        (an index, or a full or leading part of a UUID), else 0. An index assumes CUDA and NVML
        number GPUs alike (one GPU, identical GPUs, or CUDA_DEVICE_ORDER=PCI_BUS_ID), as the
        nvml sampler does."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        if not visible:
            return 0
        first = visible.split(",")[0].strip()
        if first.isdigit():
            return int(first)
        if first.startswith("MIG-"):
            raise NvmlError(f"CUDA_VISIBLE_DEVICES names a MIG instance ({first}): no energy counter per instance")
        for i in range(self.count()):
            if self.uuid(i).startswith(first):
                return i
        raise NvmlError(f"CUDA_VISIBLE_DEVICES names {first}, which NVML does not list")
