#!/usr/bin/env python3
"""Benchmarks that compare ipw's own cost with minimal clients, in one run, alternating, so that
drift on a shared machine hits every side alike. Called by scripts/bench-overhead.sh (which
builds what it needs first). (The embedded backend against llama-server is `ipw bench embedded`.)

  overhead  CPU per query of the client: ipw (against llama-server), `curl -N` (one process for
            all requests, `--next`) and a minimal Python http.client streaming loop, on the same
            requests; min/median over rounds and the ratios to curl.

Environment: IPW (the ipw binary), IPW_LLAMA_SERVER, IPW_TEST_MODEL; BENCH_ROUNDS (3),
BENCH_QUERIES (50), BENCH_MAX_TOKENS (128), BENCH_THREADS (2); IPW_BEFORE (another ipw binary,
measured as ipw-before), IPW_UREQ (an ipw built with `--features ureq-transport`).
"""
import http.client
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

IPW = os.environ.get("IPW") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "ipw"
)
SERVER = os.environ["IPW_LLAMA_SERVER"]
MODEL = os.environ["IPW_TEST_MODEL"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "128"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
CONTEXT = 4096


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """llama-server on the test model, with the settings the embedded backend uses."""

    def __init__(self, work):
        self.port = free_port()
        self.log = open(os.path.join(work, "server.log"), "w")
        self.proc = subprocess.Popen(
            [SERVER, "-m", MODEL, "-c", str(CONTEXT), "-t", str(THREADS), "-tb", str(THREADS),
             "-np", "1", "--host", "127.0.0.1", "--port", str(self.port), "-a", "smollm2"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("llama-server did not become healthy; see server.log")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def experiment(work, name, model_toml, queries, seed):
    path = os.path.join(work, name + ".toml")
    with open(path, "w") as f:
        f.write(f"""name = "{name}"
seed = {seed}
[run]
warmup_queries = 2
[generation]
max_tokens = {MAX_TOKENS}
[[models]]
{model_toml}
[[datasets]]
builtin = "gsm8k"
max_queries = {queries}
shuffle = true
""")
    return path


def run_ipw(work, name, model_toml, queries, seed, ipw=IPW, env=None, transport=None):
    """Run `ipw profile` and return (summary, manifest session, records); with `transport`,
    check that the manifest says the measured request went over it."""
    out = os.path.join(work, "out-" + name)
    shutil.rmtree(out, ignore_errors=True)
    toml = experiment(work, name, model_toml, queries, seed)
    done = subprocess.run([ipw, "profile", toml, "--out", out, "-q"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, **(env or {})))
    if done.returncode != 0:
        raise SystemExit(f"ipw profile failed:\n{done.stderr}")
    run = os.path.join(out, os.listdir(out)[0])
    summary = json.load(open(os.path.join(run, "summary.json")))
    manifest = json.load(open(os.path.join(run, "manifest.json")))
    records = [json.loads(l) for l in open(os.path.join(run, "records.jsonl"))]
    if transport and f'"transport": "{transport}"' not in json.dumps(manifest):
        raise SystemExit(f"{ipw}: the manifest does not name transport {transport}")
    return summary, manifest["sessions"][-1], records


def fmt_range(xs, unit, digits=1):
    return f"min {min(xs):.{digits}f} / median {statistics.median(xs):.{digits}f} {unit}"


def request_bodies(records, seed):
    """The bodies ipw sent for these records (the same JSON the openai backend builds)."""
    bodies = []
    for rec in records:
        bodies.append(json.dumps({
            "model": "smollm2",
            "messages": [{"role": "user", "content": rec["prompt"]}],
            "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0.0, "seed": seed,
            "stream_options": {"include_usage": True}, "cache_prompt": False,
        }))
    return bodies


def run_curl(port, bodies, work):
    """One curl process for all requests (`--next`); its CPU from the kernel's rusage."""
    args = ["curl", "-sN", "-o", "/dev/null"]
    for i, body in enumerate(bodies):
        path = os.path.join(work, f"body{i}.json")
        with open(path, "w") as f:
            f.write(body)
        if i:
            args += ["--next", "-sN", "-o", "/dev/null"]
        args += ["-H", "Content-Type: application/json", "--data-binary", "@" + path,
                 f"http://127.0.0.1:{port}/v1/chat/completions"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1000 / len(bodies)


PY_CLIENT = r'''
import http.client, json, sys, time
port, bodies = int(sys.argv[1]), json.load(open(sys.argv[2]))
t0 = time.process_time()
for body in bodies:
    # llama-server closes the connection after a streamed response: a new one per request,
    # as curl and ipw's pool end up doing.
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    while True:
        line = resp.readline()
        if not line or line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data: "):
            json.loads(line[6:])
    resp.read()
    conn.close()
print((time.process_time() - t0) * 1000 / len(bodies))
'''


def run_python(port, bodies, work):
    """A minimal streaming client: one connection, read line by line, parse each event."""
    path = os.path.join(work, "bodies.json")
    json.dump(bodies, open(path, "w"))
    script = os.path.join(work, "client.py")
    open(script, "w").write(PY_CLIENT)
    out = subprocess.run([sys.executable, script, str(port), path],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the Python client failed:\n{out.stderr}")
    return float(out.stdout.strip())


def bench_overhead():
    queries = int(os.environ.get("BENCH_QUERIES", "50"))
    work = tempfile.mkdtemp(prefix="ipw-bench-overhead-")
    server = Server(work)
    remote = f"""name = "server"
backend = "openai"
base_url = "http://127.0.0.1:{server.port}/v1"
model = "smollm2\""""
    print(f"client CPU per query against llama-server ({os.path.basename(MODEL)}, {THREADS} "
          f"threads): {queries} GSM8K queries x {ROUNDS} rounds, max_tokens {MAX_TOKENS}, "
          f"alternating; CPU = user+sys of the client process over the measured queries")
    print(f"{'round':<6} {'client':<10} {'CPU ms/query':>13} {'out tokens/query':>17}")
    figures = {"ipw": [], "curl": [], "python": []}
    # IPW_BEFORE: another ipw binary (e.g. a build of the previous commit), measured on the same
    # prompts right after this one, for before/after figures from one run.
    before = os.environ.get("IPW_BEFORE")
    if before:
        figures["ipw-before"] = []
    # IPW_UREQ: an ipw built with `--features ureq-transport`, run with IPW_HTTP_CLIENT=ureq (the
    # same ipw with ureq in place of its own HTTP/1.1 client; the README's comparison).
    with_ureq = os.environ.get("IPW_UREQ")
    if with_ureq:
        figures["ipw-ureq"] = []
    try:
        for r in range(ROUNDS):
            if before:
                _, session, _ = run_ipw(work, "server", remote, queries, seed=200 + r, ipw=before)
                figures["ipw-before"].append(session["cpu_per_query_ms"])
                print(f"{r + 1:<6} {'ipw-before':<10} {session['cpu_per_query_ms']:>13.2f}",
                      flush=True)
            if with_ureq:
                _, session, _ = run_ipw(work, "server", remote, queries, seed=200 + r,
                                        ipw=with_ureq, env={"IPW_HTTP_CLIENT": "ureq"},
                                        transport="ureq")
                figures["ipw-ureq"].append(session["cpu_per_query_ms"])
                print(f"{r + 1:<6} {'ipw-ureq':<10} {session['cpu_per_query_ms']:>13.2f}",
                      flush=True)
            s, session, records = run_ipw(work, "server", remote, queries, seed=200 + r,
                                          transport="direct-http1")
            measured = [x for x in records if x.get("response") is not None]
            tokens = sum(x.get("output_tokens") or 0 for x in measured) / max(len(measured), 1)
            bodies = request_bodies(measured, 200 + r)
            figures["ipw"].append(session["cpu_per_query_ms"])
            print(f"{r + 1:<6} {'ipw':<10} {session['cpu_per_query_ms']:>13.2f} {tokens:>17.1f}",
                  flush=True)
            others = [("curl", run_curl), ("python", run_python)]
            if r % 2:
                others.reverse()
            for name, fn in others:
                ms = fn(server.port, bodies, work)
                figures[name].append(ms)
                print(f"{r + 1:<6} {name:<10} {ms:>13.2f}", flush=True)
    finally:
        server.stop()
    print()
    for name, xs in figures.items():
        print(f"{name:<10} {fmt_range(xs, 'ms/query', 2)}")
    curl = statistics.median(figures["curl"])
    for name in [n for n in figures if n != "curl"]:
        print(f"{name} / curl (medians): {statistics.median(figures[name]) / curl:.2f}x")
    print("target: ipw / curl <= 1.10x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    {"overhead": bench_overhead}[sys.argv[1]]()
