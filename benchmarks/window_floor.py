"""What one window of the session search costs, where it goes, and the fastest the search could
be on this machine: is `--hop-s 15` at <= 0.05x real time reachable without changing the model?

    python benchmarks/window_floor.py RUN SESSIONS.jsonl [--hop-s 15] [--target 0.05]
        [--workers N] [--repeats 3] [--flex]

RUN is a finished temporal run, SESSIONS the recordings `audiolora predict RUN --sessions` would
search. The script asks one full-length window's boundary questions the way the search does
(`predict_offsets_shared`, weights cast once, the run's precision) on one thread, as each of the
search's worker processes runs, and reports:
- its FLOPs by kind (`torch.utils.flop_counter`; attention counted here, causal passes as the
  half they need, since PyTorch's counter has no formula for the CPU attention kernel);
- its time by kind (`torch.profiler`, self CPU time: matmuls and convolutions, the attention
  kernel, everything else) and the rate each kind runs at;
- this machine's bf16 matmul peak on one thread (`evaluation.efficiency.matmul_peak`);
- the search's windows at the hop (coarse windows only: refining adds a few), and from these the
  search time and x real time over `--workers` processes (loading not counted), as measured, with
  attention at the matmul peak, and with every FLOP at the matmul peak and nothing else costing
  time. The budget row is the time per window that `--target` allows.
`--flex` also times one causal attention pass of the language model's shape by other routes
than SDPA (`attention_passes`), compiled `flex_attention` among them.
Results: `benchmarks/results/window_floor.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula  # noqa: E402

from audiolora.data.sessions import BOUNDARIES, check_sessions  # noqa: E402
from audiolora.evaluation.efficiency import matmul_peak  # noqa: E402
from audiolora.inference import run_config  # noqa: E402
from audiolora.precision import compute_precision  # noqa: E402
from audiolora.tasks.temporal.parallel import default_workers  # noqa: E402
from audiolora.tasks.temporal.search import coarse_grid, session_windows  # noqa: E402
from audiolora.tasks.temporal.sessions import load_for_search  # noqa: E402
from audiolora.tasks.temporal.windows import predict_offsets_shared  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "window_floor.json"
ATTENTION_OPS = ("scaled_dot_product", "flash_attention")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution")
LONGEST_CAUSAL: list[tuple[int, int, int]] = []
"""(heads, tokens, head dim) of the longest causal attention pass counted: the language model's
pass over a window's shared beginning, which `--flex` times."""


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):  # noqa: ANN001, ANN201
    """Q K^T and P V of the CPU attention kernel; a causal square pass needs only the keys at or
    before each query, about half."""
    batch, heads, queries, dim = query_shape
    keys = key_shape[-2]
    causal = bool(args[1]) if len(args) > 1 else bool(kwargs.get("is_causal", False))
    pairs = queries * (queries + 1) // 2 if causal and queries == keys else queries * keys
    if causal and (not LONGEST_CAUSAL or queries > LONGEST_CAUSAL[0][1]):
        LONGEST_CAUSAL[:] = [(heads, queries, dim)]
    return 2 * 2 * batch * heads * pairs * dim


def op_kind(name: str) -> str:
    if any(part in name for part in ATTENTION_OPS):
        return "attention"
    return "matmul" if name in MATMUL_OPS else "other"


def window_cost(run: Path, manifest: Path, hop_s: float | None, repeats: int) -> dict[str, Any]:
    """One full-length window of the first recording that has one, timed and counted on one
    thread; with the search's window count over the whole manifest."""
    config = run_config(run, True)
    cfg = config.temporal
    model, processor = load_for_search(run, config)
    sessions = check_sessions(
        {"sessions": manifest},
        window_s=cfg.window_s,
        boundaries=(),
        on_bad_input="skip",
        rejected_path=None,
    )["sessions"].rows
    hop = hop_s or cfg.hop_s or cfg.window_s / 2
    grids = [coarse_grid(s.duration, cfg.window_s, hop) for s in sessions]
    session, (length, starts) = next(
        (s, g) for s, g in zip(sessions, grids, strict=True) if g[0] == cfg.window_s
    )
    names = sorted(cfg.boundaries, key=BOUNDARIES.index)
    pairs = [(name, starts[len(starts) // 2]) for name in names]
    prompts = (config.data.sampling_rate, cfg.transcript, cfg.audio, cfg.question_last)
    dataset = session_windows(model, processor, session, pairs, length, *prompts)

    def ask() -> None:
        with compute_precision(config.training.precision):
            predict_offsets_shared(model, dataset, group=len(names), progress=False)

    ask()  # the first pass pays for allocation and kernel choice
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        ask()
        seconds.append(time.perf_counter() - began)
    with FlopCounterMode(display=False) as counter:
        ask()
    flops = {"matmul": 0, "attention": 0}
    for op, count in counter.get_flop_counts()["Global"].items():
        flops["attention" if op_kind(str(op)) == "attention" else "matmul"] += count
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        ask()
    profiled = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for event in profiler.key_averages():
        profiled[op_kind(event.key)] += event.self_cpu_time_total / 1e6
    return {
        "run": str(run),
        "precision": config.training.precision,
        "hop_s": hop,
        "window_s": cfg.window_s,
        "recordings": len(sessions),
        "audio_s": sum(s.duration for s in sessions),
        "coarse_windows": sum(len(g[1]) for g in grids),
        "questions_per_window": len(names),
        "window_seconds": seconds,
        "window_s_median": statistics.median(seconds),
        "flops": flops,
        "profiled_s": profiled,
    }


def attention_passes(heads: int, tokens: int, dim: int, repeats: int) -> dict[str, Any]:
    """Milliseconds of one causal attention pass of the language model's shape (bf16), and the
    largest difference of its output to SDPA's: SDPA (what the search runs); SDPA over 4 chunks
    of queries, each over only the keys it needs (a boolean mask on its diagonal block); the
    math written out (fp32 scores and softmax); `flex_attention` compiled with a causal block
    mask (it skips the masked blocks)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = (torch.randn(1, heads, tokens, dim, dtype=torch.bfloat16) for _ in range(3))

    def chunked(parts: int = 4) -> torch.Tensor:
        edges = [round(i * tokens / parts) for i in range(parts + 1)]
        outs = []
        for lo, hi in zip(edges, edges[1:], strict=False):
            mask = torch.ones(hi - lo, hi, dtype=torch.bool).tril(diagonal=lo)
            outs.append(sdpa(q[:, :, lo:hi], k[:, :, :hi], v[:, :, :hi], attn_mask=mask))
        return torch.cat(outs, dim=2)

    def math() -> torch.Tensor:
        scores = (q @ k.transpose(-1, -2)).float() * dim**-0.5
        future = torch.ones(tokens, tokens, dtype=torch.bool).triu(diagonal=1)
        return scores.masked_fill_(future, float("-inf")).softmax(-1).to(q.dtype) @ v

    def causal(b, h, query, key):  # noqa: ANN001, ANN202
        return query >= key

    block_mask = create_block_mask(causal, None, None, tokens, tokens, device="cpu")
    compiled = torch.compile(flex_attention)
    sides = {
        "sdpa": lambda: sdpa(q, k, v, is_causal=True),
        "sdpa_4_chunks": chunked,
        "math": math,
        "flex_compiled": lambda: compiled(q, k, v, block_mask=block_mask),
    }
    reference = sides["sdpa"]().float()
    out: dict[str, Any] = {}
    for name, run in sides.items():
        difference = (run().float() - reference).abs().max().item()
        began = time.perf_counter()
        for _ in range(repeats):
            run()
        out[name] = {"ms": (time.perf_counter() - began) / repeats * 1e3, "max_diff": difference}
    return out


def projections(cost: dict[str, Any], peak: float, workers: int, target: float) -> list[dict]:
    """Search time per side: measured, attention at the matmul peak, every FLOP at the peak."""
    window = cost["window_s_median"]
    profiled = cost["profiled_s"]
    scale = window / sum(profiled.values())  # the profiler's total, brought to the timed window
    flops = cost["flops"]
    per_worker = math.ceil(cost["coarse_windows"] / workers)
    sides = {
        "as measured": window,
        "attention at the matmul peak": window
        - profiled["attention"] * scale
        + flops["attention"] / peak,
        "every FLOP at the matmul peak, nothing else": sum(flops.values()) / peak,
    }
    rows = [
        {
            "side": name,
            "window_s": s,
            "search_s": per_worker * s,
            "x_real_time": per_worker * s / cost["audio_s"],
        }
        for name, s in sides.items()
    ]
    budget = target * cost["audio_s"] / per_worker
    rows.append(
        {
            "side": f"budget for {target}x real time",
            "window_s": budget,
            "search_s": target * cost["audio_s"],
            "x_real_time": target,
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--hop-s", type=float, default=None, help="default: the run's")
    parser.add_argument("--target", type=float, default=0.05, help="x real time to reach")
    parser.add_argument(
        "--workers", type=int, default=None, help="search processes (default: one per core)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the window")
    parser.add_argument("--flex", action="store_true", help="also time other attention routes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workers = args.workers or default_workers(torch.device("cpu"))
    torch.set_num_threads(1)  # as each of the search's worker processes runs
    cost = window_cost(args.run, args.manifest, args.hop_s, args.repeats)
    peak = matmul_peak("bf16")["flops_per_s"]
    rows = projections(cost, peak, workers, args.target)
    result = {
        **cost,
        "workers": workers,
        "bf16_matmul_peak_one_thread": peak,
        "rates": {
            kind: cost["flops"][kind] / cost["profiled_s"][kind]
            for kind in ("matmul", "attention")
            if cost["profiled_s"][kind]
        },
        "projections": rows,
    }
    if args.flex:
        heads, tokens, dim = LONGEST_CAUSAL[0]
        result["attention_pass"] = {
            "shape": [heads, tokens, dim],
            "sides": attention_passes(heads, tokens, dim, args.repeats * 10),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    gflop = {k: v / 1e9 for k, v in cost["flops"].items()}
    print(
        f"\none window ({cost['questions_per_window']} questions, {cost['window_s']:g} s), one "
        f"thread: {cost['window_s_median']:.2f} s (median of {args.repeats})"
    )
    print(f"{'kind':12}{'GFLOP':>10}{'profiled s':>12}{'GFLOP/s':>10}")
    for kind in ("matmul", "attention", "other"):
        g = gflop.get(kind, 0.0)
        s = cost["profiled_s"][kind]
        rate = f"{g / s:.0f}" if g and s else "-"
        print(f"{kind:12}{g:>10.1f}{s:>12.2f}{rate:>10}")
    print(f"bf16 matmul peak, one thread: {peak / 1e9:.0f} GFLOP/s")
    print(
        f"\n{cost['recordings']} recordings, {cost['audio_s'] / 60:.1f} min of audio, hop "
        f"{cost['hop_s']:g} s: {cost['coarse_windows']} coarse windows over {workers} processes"
    )
    print(f"{'side':48}{'s a window':>12}{'search s':>10}{'x real time':>13}")
    for row in rows:
        print(
            f"{row['side']:48}{row['window_s']:>12.2f}{row['search_s']:>10.1f}"
            f"{row['x_real_time']:>13.4f}"
        )
    if "attention_pass" in result:
        a = result["attention_pass"]
        print(
            f"\none causal attention pass ({a['shape'][0]} heads, {a['shape'][1]} tokens, "
            f"{a['shape'][2]} dims, bf16), ms (largest difference to SDPA's output): "
            + ", ".join(f"{n} {v['ms']:.1f} ({v['max_diff']:.0e})" for n, v in a["sides"].items())
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
