"""CPU path tuning, side by side: what pays on a CPU without native bf16 (and on one with it).

For each CPU mode (a child process per mode, since the instruction-set variables must be set
before torch loads), the default Pix2Pix (uNet depth 3 / width 32 + PatchGAN) is timed in
variants, interleaved round by round so that a change of machine load hits every variant alike:

* training (96x96 patches, batch 8, adversarial step): the default (channels_last), NCHW,
  Adam's fused CPU kernel, ``torch.compile`` of G and D (inductor; compile time reported apart);
* prediction of one whole 512x512 image (a W2S field) and of a 1024x1024 one: the default
  (channels_last), NCHW, the generator compiled by inductor, and compiled with inductor's
  ``freezing`` (weights as constants, prepacked for oneDNN) (compile times reported apart).

``--profile`` prints torch.profiler's top operators of a training step and of a prediction.

Result of 2026-12-04 (2 cores, load 5-7 from other work): nothing here was adopted. channels_last
(the default) beats NCHW everywhere (1.08x training, 1.10x prediction in float32/AVX2; 1.7x and
2.7x in bf16); fused Adam gave 1.02x (float32/AVX2) and 1.09x (bf16) but breaks the exact-resume
test (weights differ by 5e-5 after stop + resume); compiling training is slower (0.81x after 42 s
of compiling); compiling prediction gives 1.10-1.11x after 4-9 s per new image shape, which a
typical job (36 W2S fields: 27 s) does not earn back.

Modes: ``avx2`` emulates a CPU without AVX-512 and without native bf16 on a CPU that has both:
``ATEN_CPU_CAPABILITY=avx2`` (ATen's own kernels and inductor's generated code),
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's convolutions: ATEN_CPU_CAPABILITY alone leaves them on
AVX-512), ``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``NAPARI_GAN_CPU_BF16=0`` (float32); ``native``
is the machine as it is (bf16 autocast where the CPU has AVX512-BF16 / AMX).

    flock /tmp/napari-gan-bench.lock python benchmarks/cpu_tuning.py            # ~6 min
    python benchmarks/cpu_tuning.py --smoke                                      # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_info, cpu_line, machine, save_json  # noqa: E402

MODES = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "NAPARI_GAN_CPU_BF16": "0"},
    "avx2-aten-only": {"ATEN_CPU_CAPABILITY": "avx2", "NAPARI_GAN_CPU_BF16": "0"},
    "native": {},
}


def _train_variants(smoke: bool, compile: bool) -> dict:
    import torch

    import perf

    kw = dict(batch=2, patch=32, depth=2, width=8, disc_width=8, size=128) if smoke else {}
    out = {}
    out["default"] = perf.pix2pix_trainer(torch.device("cpu"), **kw)
    t = perf.pix2pix_trainer(torch.device("cpu"), **kw)
    t.channels_last = False
    for net in (t.G, t.D):
        net.to(memory_format=torch.contiguous_format)
    out["nchw"] = t
    t = perf.pix2pix_trainer(torch.device("cpu"), **kw)
    for name, net in (("opt_g", t.G), ("opt_d", t.D)):      # Adam's fused CPU kernel (torch >= 2.4)
        old = getattr(t, name)
        setattr(t, name, torch.optim.Adam(net.parameters(), old.defaults["lr"], betas=old.defaults["betas"],
                                          fused=True))
    out["fused_adam"] = t
    if compile:
        out["compile"] = perf.pix2pix_trainer(torch.device("cpu"), compile=True, **kw)
    return out


def _predictors(smoke: bool, compile: bool) -> dict:
    import torch

    import perf

    wd = (8, 2) if smoke else (32, 3)
    out = {"default": perf.predictor(torch.device("cpu"), *wd)}
    p = perf.predictor(torch.device("cpu"), *wd)
    p.channels_last = False
    p.G.to(memory_format=torch.contiguous_format)
    out["nchw"] = p
    if not compile:
        return out
    p = perf.predictor(torch.device("cpu"), *wd)
    p.G = torch.compile(p.G, dynamic=False)
    out["compile"] = p
    p = perf.predictor(torch.device("cpu"), *wd)    # + weights frozen and prepacked for oneDNN
    p.G = torch.compile(p.G, dynamic=False, options={"freezing": True})
    out["compile_freeze"] = p
    return out


def child(mode: str, smoke: bool, seconds: float, rounds: int, profile: bool, compile: bool,
          sizes: list[int]) -> dict:
    import numpy as np
    import torch

    import perf

    torch.set_num_threads(2)
    res = {"mode": mode, "cpu": cpu_info(), "machine": machine(), "load_start": os.getloadavg()[0],
           "train": {}, "predict": {}}
    print(f"[{mode}] {cpu_line(res['cpu'])}", flush=True)

    # ---------------------------------------------------------------- training
    trainers = _train_variants(smoke, compile)
    warm = {}
    for name, t in trainers.items():
        t0 = time.perf_counter()
        for _ in range(2 if name == "compile" else 1):
            t.train_step(0.5)
        warm[name] = time.perf_counter() - t0
    steps = {k: 0 for k in trainers}
    secs = {k: 0.0 for k in trainers}
    for _ in range(rounds):
        for name, t in trainers.items():
            n, s = perf.time_steps(lambda t=t: t.train_step(0.5), torch.device("cpu"), warmup=0,
                                   min_steps=2 if smoke else 3, min_seconds=0 if smoke else seconds / rounds)
            steps[name] += n
            secs[name] += s
    for name, t in trainers.items():
        ips = steps[name] * t.cfg.batch / secs[name]
        res["train"][name] = {"images_per_s": ips, "steps": steps[name], "seconds": secs[name],
                              "first_steps_seconds": warm[name]}
        print(f"[{mode}] train {name}: {ips:.2f} img/s ({steps[name]} steps; first steps {warm[name]:.1f} s)",
              flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as prof

        t = trainers["default"]
        with prof(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(2 if smoke else 3):
                t.train_step(0.5)
        res["train_profile"] = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)
        print(res["train_profile"], flush=True)
    del trainers

    # -------------------------------------------------------------- prediction
    preds = _predictors(smoke, compile)
    for size in ((128,) if smoke else sizes):
        image = perf.smooth_planes(1, size)[0][0]
        warm = {}
        for name, p in preds.items():
            t0 = time.perf_counter()
            p.predict(image)          # compiles for this shape (compile variant)
            warm[name] = time.perf_counter() - t0
        ref = preds["default"].predict(image)
        diff = {name: float(np.abs(p.predict(image) - ref).max()) for name, p in preds.items()}
        secs = {k: 0.0 for k in preds}
        n = {k: 0 for k in preds}
        for _ in range(rounds):
            for name, p in preds.items():
                t0 = time.perf_counter()
                reps = 1 if size >= 1024 else 2
                for _ in range(reps):
                    p.predict(image)
                secs[name] += time.perf_counter() - t0
                n[name] += reps
        for name in preds:
            mpix = n[name] * size * size / 1e6 / secs[name]
            res["predict"].setdefault(str(size), {})[name] = {
                "mpix_per_s": mpix, "images": n[name], "seconds": secs[name],
                "first_call_seconds": warm[name], "max_abs_diff_vs_default": diff[name]}
            print(f"[{mode}] predict {size}² {name}: {mpix:.3f} Mpix/s (first call {warm[name]:.1f} s, "
                  f"max |diff| {diff[name]:.2g})", flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as prof

        image = perf.smooth_planes(1, 128 if smoke else 512)[0][0]
        with prof(activities=[ProfilerActivity.CPU]) as pr:
            preds["default"].predict(image)
        res["predict_profile"] = pr.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(res["predict_profile"], flush=True)
    res["load_end"] = os.getloadavg()[0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=["avx2", "native"])
    ap.add_argument("--seconds", type=float, default=30.0, help="timed training seconds per variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compile-modes", nargs="*", default=["avx2"], help="modes that also time torch.compile")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512], help="image sizes to predict")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        res = child(spec["mode"], args.smoke, args.seconds, args.rounds, args.profile, spec["compile"], args.sizes)
        Path(spec["out"]).write_text(json.dumps(res, default=float))
        sys.stdout.flush()
        os._exit(0)     # (inductor's compile workers can hold up a normal exit)
    results = {"modes": {}}
    for mode in args.modes:
        out = Path(f"/tmp/napari-gan-cpu-tuning-{os.getpid()}-{mode}.json")
        env = {k: v for k, v in os.environ.items() if k not in MODES["avx2"]}
        env.update(MODES[mode])
        # a fresh inductor cache: the compile times are those of a first run on a new machine
        env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
        spec = {"mode": mode, "out": str(out), "compile": mode in args.compile_modes}
        cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--seconds", str(args.seconds),
               "--rounds", str(args.rounds), "--sizes", *map(str, args.sizes)]
        cmd += ["--smoke"] if args.smoke else []
        cmd += ["--profile"] if args.profile else []
        subprocess.run(cmd, env=env, check=True)
        results["modes"][mode] = json.loads(out.read_text())
        out.unlink()
    path = save_json(f"cpu_tuning{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
