#!/usr/bin/python3
"""Speculative decoding through the HTTP API: one `coppice serve` per drafter configuration
(all started at once, 1 thread each, requests sent one at a time so only one server computes
at any moment), greedy /v1/completions with and without logprobs, rounds interleaved across
the servers so machine noise hits every variant alike. Reports completion tokens per second
of wall time (client side, whole request) and the acceptance each server reports in /metrics.
Usage: bench/server_spec.py [COPPICE_BIN] [MODEL] [ROUNDS] [MAX_TOKENS]"""
import json
import subprocess
import sys
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/release/bin/coppice"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "../shared/models/stories260K.gguf"
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
MAX_TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 200
PROMPTS = {"story": open("bench/spec/story.txt").read().strip(),
           "repetitive": open("bench/spec/repetitive.txt").read().strip()}
CONFIGS = [
    ("plain", ["--spec", "none"]),
    ("ngram", ["--spec", "ngram"]),
    ("recycle", ["--spec", "recycle"]),
    ("draft:self (adaptive)", ["--spec", "draft:" + MODEL]),
    ("draft:self fixed 8", ["--spec", "draft:" + MODEL, "--spec-fixed", "--spec-max", "8"]),
]


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def metrics(port):
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("coppice_spec_"):
                k, v = line.split()
                out[k] = float(v)
    return out


def main():
    servers = []
    for name, args in CONFIGS:
        p = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "-t", "1", "-c", "1024", "--no-prefix-cache"]
                             + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(p.stdout.readline().split("http://127.0.0.1:")[1].split()[0])
        servers.append((name, p, port))
    res = {}  # (config, prompt, logprobs) -> [tokens/s]
    texts = {}
    try:
        for _ in range(ROUNDS):
            for pname, prompt in PROMPTS.items():
                for lp in (False, True):
                    for name, _, port in servers:
                        body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
                        if lp:
                            body["logprobs"] = 5
                        t0 = time.perf_counter()
                        r = post(port, body)
                        dt = time.perf_counter() - t0
                        res.setdefault((name, pname, lp), []).append(r["usage"]["completion_tokens"] / dt)
                        texts.setdefault((pname, lp), set()).add(r["choices"][0]["text"])
        accept = {name: metrics(port) for name, _, port in servers}
    finally:
        for _, p, _ in servers:
            p.terminate()
            p.wait()
    same = all(len(v) == 1 for v in texts.values())
    print(f"{ROUNDS} interleaved rounds, {MAX_TOKENS} tokens per request, greedy; same text in every "
          f"configuration: {same}")
    print("| drafter | prompt | logprobs | tokens/s (median) | vs plain | acceptance | tokens per verify step |")
    print("|---|---|---|---:|---:|---:|---:|")
    for pname in PROMPTS:
        for lp in (False, True):
            base = sorted(res[("plain", pname, lp)])[ROUNDS // 2]
            for name, _, _ in servers:
                v = sorted(res[(name, pname, lp)])[ROUNDS // 2]
                m = accept[name]
                print(f"| {name} | {pname} | {'top 5' if lp else 'no'} | {v:.0f} | {v / base:.2f}x | "
                      f"{m.get('coppice_spec_acceptance_rate', 0):.2f} | "
                      f"{m.get('coppice_spec_mean_accepted_length', 0):.2f} |")


if __name__ == "__main__":
    main()
