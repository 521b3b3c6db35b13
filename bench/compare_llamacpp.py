#!/usr/bin/env python3
"""Side-by-side pp/tg speed of coppice and llama.cpp's llama-bench on the same GGUF files.

Runs are interleaved (coppice, llama.cpp, coppice, ...) so drift in machine load hits both
alike; each engine reports mean tokens/s over its own repetitions. llama.cpp is not part of
this project: build it yourself beside the project and pass its llama-bench binary.

  bench/compare_llamacpp.py --coppice build/release/bin/coppice \
      --llama-bench ../llama.cpp/build/bin/llama-bench -t 2 -p 512 -n 128 -r 3 --rounds 2 \
      models/bench-1.1b-q4_0.gguf models/bench-1.1b-f16.gguf

Prints a markdown table (model, test, coppice t/s, llama.cpp t/s, ratio) for bench/RESULTS.md.
"""
import argparse
import json
import statistics
import subprocess
import sys


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("["):])


def coppice_once(a, model):
    rows = run_json([a.coppice, "bench", "-m", model, "-p", str(a.p), "-n", str(a.n),
                     "-r", str(a.r), "-t", str(a.t), "--json"])
    return {r["test"]: r["tokens_per_second"] for r in rows}


def llama_once(a, model):
    rows = run_json([a.llama_bench, "-m", model, "-p", str(a.p), "-n", str(a.n),
                     "-r", str(a.r), "-t", str(a.t), "-o", "json"])
    out = {}
    for r in rows:
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        out[test] = r["avg_ts"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coppice", default="build/release/bin/coppice")
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per engine")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    print("| model | test | coppice t/s | llama.cpp t/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for m in a.models:
        ours, theirs = {}, {}
        for _ in range(a.rounds):
            for k, v in coppice_once(a, m).items():
                ours.setdefault(k, []).append(v)
            for k, v in llama_once(a, m).items():
                theirs.setdefault(k, []).append(v)
        for test in ours:
            o, t = statistics.mean(ours[test]), statistics.mean(theirs.get(test, [float("nan")]))
            print(f"| {m.split('/')[-1]} | {test} | {o:.2f} | {t:.2f} | {o / t:.2f}x |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
