#!/usr/bin/python3
"""Server-side best-of-8 vs 8 independent requests vs the search object's best-of-n, on one
`coppice serve`: wall time per round and the KV blocks held at the peak (polled from /metrics
for the scheduler paths; reported by the search itself for the search path). Rounds are
interleaved so machine noise hits every variant alike.
Usage: bench/server_best_of.py [COPPICE_BIN] [MODEL] [ROUNDS]"""
import json
import subprocess
import sys
import threading
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/bin/coppice"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "../shared/models/stories260K.gguf"
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
K, MAX_TOKENS = 8, 64
PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " * 6


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def blocks_used(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("coppice_kv_blocks_used "):
                return float(line.split()[1])
    return -1


def measure(port, fn):
    peak, stop = [0.0], threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], blocks_used(port))
            time.sleep(0.002)
    t = threading.Thread(target=poll)
    t.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    return dt, peak[0], out


def main():
    srv = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "-t", "1", "-c", "1024", "--parallel", "16",
                            "--no-prefix-cache"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(srv.stdout.readline().split("http://127.0.0.1:")[1].split()[0])
    base = {"prompt": PROMPT, "max_tokens": MAX_TOKENS}
    res = {"best_of": [], "independent": [], "search": []}
    try:
        for r in range(ROUNDS):
            seed = 1000 + r
            res["best_of"].append(measure(port, lambda: post(port, dict(base, seed=seed, best_of=K))))

            def independent():
                outs = [None] * K
                ths = [threading.Thread(target=lambda c=c: outs.__setitem__(c, post(port, dict(base, seed=seed + c))))
                       for c in range(K)]
                [t.start() for t in ths]
                [t.join() for t in ths]
                return outs
            res["independent"].append(measure(port, independent))
            res["search"].append(measure(port, lambda: post(port, dict(
                base, seed=seed, search={"strategy": "best-of-n", "n": K, "budget": K * MAX_TOKENS}))))
    finally:
        srv.terminate()
        srv.wait()
    prompt_tokens = res["search"][0][2]["usage"]["prompt_tokens"]
    print(f"prompt {prompt_tokens} tokens, {K} candidates x {MAX_TOKENS} max tokens, {ROUNDS} interleaved rounds")
    print("| variant | wall s (mean) | min | KV blocks peak |")
    print("|---|---:|---:|---:|")
    for name, rows in res.items():
        ts = [x[0] for x in rows]
        peak = max(x[1] for x in rows)
        if name == "search":
            s = rows[0][2]["search"]
            peak_s = f"{max(x[2]['search']['kv_blocks_peak'] for x in rows)} (as independent: {s['kv_blocks_independent']})"
        else:
            peak_s = f"{peak:.0f}"
        print(f"| {name} | {sum(ts) / len(ts):.3f} | {min(ts):.3f} | {peak_s} |")


if __name__ == "__main__":
    main()
