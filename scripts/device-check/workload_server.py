#!/usr/bin/env python3
"""A minimal OpenAI-compatible streaming server for the device check (stdlib http.server only;
torch only for the GPU work). A prompt `work N ...` makes it do N ms of real work, then stream a
short answer: matrix multiplies on the GPU with torch and CUDA (`--device cuda`, synchronised
before the clock stops), a CPU busy loop otherwise (`--device cpu`, the dry run). Around the
work it reads the GPU's NVML total-energy counter itself (ctypes, the library of `--nvml-lib`)
and appends one JSON line per request to `--log`:
{prompt, ms, device, nvml_index, start_mono, end_mono, start_unix, end_unix,
 energy_mj_start, energy_mj_end, iterations}
with time.monotonic() (CLOCK_MONOTONIC, the clock of ipw's run clock) and time.time().
Other prompts (ipw's readiness probe) get an answer without work and are not logged.

Usage: workload_server.py --port P --log FILE [--nvml-lib PATH] [--device cuda|cpu|auto]
       workload_server.py --version"""

import argparse
import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvml import Nvml  # noqa: E402

if sys.argv[1:2] == ["--version"]:
    print("ipw-device-check workload server 1")
    sys.exit(0)

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--log", required=True)
ap.add_argument("--nvml-lib", default="libnvidia-ml.so.1")
ap.add_argument("--device", choices=["cuda", "cpu", "auto"], default="auto")
ap.add_argument("--matrix", type=int, default=8192, help="square matrix size for the GPU work")
args = ap.parse_args()

nvml = Nvml(args.nvml_lib)
nvml_index = nvml.cuda_index()
handle = nvml.handle(nvml_index)
nvml.energy_mj(handle)  # fails here, before serving, when the counter cannot be read
print(f"nvml: {args.nvml_lib}, GPU {nvml_index} {nvml.name(nvml_index)} {nvml.uuid(nvml_index)}, driver {nvml.driver()}", flush=True)

torch = None
device = args.device
if device in ("cuda", "auto"):
    try:
        import torch  # noqa: F811
        ok = torch.cuda.is_available()
    except ImportError as e:
        ok = False
        why = f"torch not importable: {e}"
    else:
        why = "torch.cuda.is_available() is False"
    if not ok:
        if device == "cuda":
            sys.exit(f"--device cuda: {why}")
        torch = None
        device = "cpu"
    else:
        device = "cuda"

if device == "cuda":
    dev = torch.device("cuda", 0)
    n = args.matrix
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
    BATCH = 4  # matmuls queued between synchronisations (~8192^3*2*4 flop: a few ms on an H100)

    def work(seconds):
        """Matmuls until `seconds` have passed, with the GPU idle again at the end."""
        iters = 0
        end = time.monotonic() + seconds
        while True:
            for _ in range(BATCH):
                torch.matmul(a, b, out=c)
            torch.cuda.synchronize(dev)
            iters += BATCH
            if time.monotonic() >= end:
                return iters

    work(1.0)  # cuBLAS initialisation and clocks up, before ipw's first request
    print(f"device: cuda ({torch.cuda.get_device_name(dev)}, torch {torch.__version__}), {n}x{n} bf16 matmuls", flush=True)
else:

    def work(seconds):
        """A CPU busy loop for `seconds`."""
        iters = 0
        end = time.monotonic() + seconds
        x = 0
        while time.monotonic() < end:
            for i in range(2000):
                x = (x * 31 + i) % 1000003
            iters += 1
        return iters

    print("device: cpu busy loop (no GPU work)", flush=True)

def read_energy():
    """The counter (mJ) with the monotonic and Unix times of the read: the middle of a bracket
    of monotonic readings around it, retried when a preemption widened the bracket past 1 ms."""
    best = None
    for _ in range(20):
        a = time.monotonic()
        mj = nvml.energy_mj(handle)
        b = time.monotonic()
        u = time.time()
        if best is None or b - a < best[0]:
            best = (b - a, mj, (a + b) / 2, u - (b - a) / 2)
        if b - a < 0.001:
            break
    return best[1], best[2], best[3]


WORK = re.compile(r"^\s*work\s+(\d+)")


def chunk(model, delta, finish=None):
    return {
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path in ("/health", "/v1/models"):
            body = json.dumps({"status": "ok", "data": [{"id": "workload", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        self.close_connection = True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        messages = body.get("messages") or [{}]
        prompt = messages[-1].get("content") or ""
        if isinstance(prompt, list):  # content parts
            prompt = "".join(p.get("text", "") for p in prompt if isinstance(p, dict))
        m = WORK.match(prompt)
        ms = int(m.group(1)) if m else 0
        entry = None
        if ms > 0:
            e0, t0, u0 = read_energy()
            iters = work(ms / 1000.0)
            e1, t1, u1 = read_energy()
            entry = {
                "prompt": prompt, "ms": ms, "device": device, "nvml_index": nvml_index,
                "start_mono": t0, "end_mono": t1, "start_unix": u0, "end_unix": u1,
                "energy_mj_start": e0, "energy_mj_end": e1, "iterations": iters,
            }
        if entry is not None:  # before answering: ipw may stop the server right after the last answer
            with open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        model = body.get("model")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        words = ["OK"] if ms == 0 else ["done", " in", f" {ms}", " ms"]
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit is not None and int(limit) < len(words):
            words, finish = words[: max(1, int(limit))], "length"
        chunks = [chunk(model, {"role": "assistant", "content": w}) for w in words]
        chunks.append(chunk(model, {}, finish))
        chunks.append({"object": "chat.completion.chunk", "model": model, "choices": [],
                       "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words),
                                 "total_tokens": len(prompt.split()) + len(words)}})
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


print(f"workload server on {args.host}:{args.port}, log {args.log}", flush=True)
HTTPServer((args.host, args.port), Handler).serve_forever()
