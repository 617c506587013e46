"""Print the markdown tables of docs/benchmarks_perf.md from the JSON results in
benchmarks/out (cpu_throughput.json, growth.json, peer_careamics.json).

    python benchmarks/perf_tables.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_json  # noqa: E402


def machine_line(r: dict) -> str:
    m = r["machine"]
    load = ""
    if "load_average_start" in r:
        load = f"; 1-min load average {r['load_average_start'][0]:.1f} at start, {r['load_average_end'][0]:.1f} at end"
    return f"_{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, {m['date']}{load}._"


def cpu_tables(r: dict) -> str:
    out = [machine_line(r), "",
           "| precision | threads | Pix2Pix train (img/s, 96², batch 8) | plain uNet train (img/s) | StyleGAN2 small 64² (img/s; s/kimg) | tiled predict 1024², tile 256 (Mpix/s) | tile 512 (Mpix/s) |",
           "|---|---|---|---|---|---|---|"]
    for key, row in r["runs"].items():
        precision, t = key.split("/")
        sg = row.get("stylegan2_64")
        sg_s = f"{sg['images_per_s']:.2f}; {sg['s_per_kimg']:.0f}" if sg else "–"
        out.append(f"| {precision} | {t} | {row['pix2pix']['images_per_s']:.2f} | {row['plain_unet']['images_per_s']:.2f} | "
                   f"{sg_s} | {row['predict']['mpix_per_s']:.3f} | "
                   + (f"{row['predict_tile512']['mpix_per_s']:.3f} |" if "predict_tile512" in row else "– |"))
    out += ["", "| precision | threads | Pix2Pix GFLOP/step; GFLOP/s | plain uNet GFLOP/step; GFLOP/s | StyleGAN2 GFLOP/step; GFLOP/s | uNet GFLOP per Mpix (untiled); effective GFLOP/s |",
            "|---|---|---|---|---|---|"]
    for key, row in r["runs"].items():
        precision, t = key.split("/")
        sg = row.get("stylegan2_64")
        p = row["predict"]
        out.append(f"| {precision} | {t} | {row['pix2pix']['gflop_per_step']:.1f}; {row['pix2pix']['gflops']:.1f} | "
                   f"{row['plain_unet']['gflop_per_step']:.1f}; {row['plain_unet']['gflops']:.1f} | "
                   + (f"{sg['gflop_per_step']:.1f}; {sg['gflops']:.1f}" if sg else "–")
                   + f" | {p['gflop_per_pixel_untiled'] * 1e6:.0f}; {p['gflops_effective']:.1f} |")
    return "\n".join(out)


def growth_tables(r: dict) -> str:
    out = [machine_line(r), "",
           "| run | image | input (MiB, memory-mapped) | output (MiB) | time (s) | Mpix/s | peak extra memory (MiB) | load |",
           "|---|---|---|---|---|---|---|---|"]
    for label, rows in r["predict"].items():
        for x in rows:
            out.append(f"| {label} | {x['size']}² | {x['input_bytes'] / 2**20:.0f} | {x['output_bytes'] / 2**20:.0f} | "
                       f"{x['seconds']:.1f} | {x['mpix_per_s']:.3f} | {x['extra_bytes'] / 2**20:.0f} | "
                       f"{x.get('load_average_1min', float('nan')):.1f} |")
    t = r.get("train")
    if t:
        out += ["", f"Training from a {t['size']}² memory-mapped pair ({t['input_bytes'] / 2**20:.0f} MiB of TIFF "
                f"on disk): {t['steps']} steps in {t['seconds']:.1f} s including set-up, peak extra memory "
                f"{t['extra_bytes'] / 2**20:.0f} MiB."]
    return "\n".join(out)


def peer_tables(r: dict) -> str:
    base = r["noisy_input"]
    out = [machine_line(r), "",
           f"Noisy input: PSNR {base['psnr']:.2f} dB, SSIM {base['ssim']:.3f}.", "",
           "| method | PSNR (dB) | SSIM | HF ratio | training steps | train img/s | train time (s) | predict time (s), 36 × 512² | predict Mpix/s | load (start → end) | versions |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in r["methods"].items():
        load = x.get("load_average_1min", [float("nan")] * 2)
        versions = ", ".join(f"{k} {v}" for k, v in x.get("versions", {}).items())
        out.append(f"| {name} | {x['psnr']:.2f} | {x['ssim']:.3f} | {x['hf_ratio']:.2f} | {x['steps']} | "
                   f"{x['images_per_s']:.2f} | {x['train_seconds']:.0f} | {x['predict_seconds']:.1f} | "
                   f"{x['predict_mpix_per_s']:.3f} | {load[0]:.1f} → {load[1]:.1f} | {versions} |")
    return "\n".join(out)


def main() -> None:
    for title, name, fn in (("CPU throughput", "cpu_throughput.json", cpu_tables),
                            ("Growth", "growth.json", growth_tables),
                            ("Peer", "peer_careamics.json", peer_tables)):
        r = load_json(name)
        print(f"<!-- {title}: {name} -->")
        print(fn(r) if r else f"(no {name} yet)")
        print()


if __name__ == "__main__":
    main()
