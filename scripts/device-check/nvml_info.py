#!/usr/bin/env python3
"""Print the NVML driver version and GPUs (index, name, UUID) as JSON, via ctypes.
Usage: nvml_info.py [LIB_PATH]   (default libnvidia-ml.so.1)"""

import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvml import Nvml  # noqa: E402

nv = Nvml(sys.argv[1] if len(sys.argv) > 1 else "libnvidia-ml.so.1")
gpus = [{"index": i, "name": nv.name(i), "uuid": nv.uuid(i)} for i in range(nv.count())]
print(json.dumps({"lib": nv.lib_path, "driver": nv.driver(), "gpus": gpus, "cuda_device_0_nvml_index": nv.cuda_index()}, indent=1))
