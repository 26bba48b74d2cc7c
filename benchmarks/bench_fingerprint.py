"""Cost of the whole-content input fingerprint on a large file, against the event loop.

Usage::

    .venv/bin/python benchmarks/bench_fingerprint.py [--n-mc 2000000] [--out benchmarks/results/fingerprint.json]

The pipeline cache and the checkpoints are keyed on :func:`zcalib.io.fingerprint.file_fingerprint`,
which hashes the whole file (xxh3-128) so that a change anywhere in it is seen (the former
fingerprint hashed size + first and last MiB and missed changes in the middle). Measured in
one run, on the same demo ECALELF MC file (generated once, cached in ``benchmarks/.data``):

* the former head/tail fingerprint, the full xxh3 fingerprint, and a full blake2b for scale;
* the memoised second call (same process, unchanged file status);
* filling the histograms from the same file (iterative executor, one process).

Prints times, GB/s and the ratio fingerprint / fill, writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

from zcalib.categories import load_categories
from zcalib.config import dataset_config_from_files
from zcalib.generate import generate
from zcalib.io import fingerprint
from zcalib.runner import RunOptions, build_histograms

ROOT = Path(__file__).resolve().parents[1]


def head_tail(path: Path) -> str:
    """The former fingerprint: blake2b of size and first and last MiB."""
    h = hashlib.blake2b(digest_size=16)
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (1 << 20):
            fh.seek(max(size - (1 << 20), 1 << 20))
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def blake2b_full(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-mc", type=int, default=2_000_000)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "fingerprint.json"
    )
    args = ap.parse_args()

    data_dir = ROOT / "benchmarks" / ".data" / f"mc_{args.n_mc}"
    mc = data_dir / "mc.root"
    if not mc.is_file():
        generate(data_dir, n_data=1000, n_mc=args.n_mc, seed=11, fmt="ecalelf")
    size = mc.stat().st_size
    mc.read_bytes()  # warm the page cache: every measurement below reads from memory

    t_head_tail = timed(head_tail, mc)
    fingerprint._MEMO.clear()
    t_full = timed(fingerprint.file_fingerprint, str(mc))
    t_memo = timed(fingerprint.file_fingerprint, str(mc))
    t_blake = timed(blake2b_full, mc)

    scheme = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
    cfg = dataset_config_from_files(mc=[str(mc)])
    opts = RunOptions(executor="iterative", progress=False, chunksize=200_000)
    fingerprint._MEMO.clear()
    t0 = time.perf_counter()
    hset = build_histograms(cfg, scheme, options=opts)
    t_fill = time.perf_counter() - t0
    n = sum(c["all"] for c in hset.cutflow.values())

    gb = size / 1e9
    res = {
        "file_bytes": size,
        "events": n,
        "head_tail_s": t_head_tail,
        "xxh3_full_s": t_full,
        "xxh3_full_GB_per_s": gb / t_full,
        "memoised_s": t_memo,
        "blake2b_full_s": t_blake,
        "blake2b_full_GB_per_s": gb / t_blake,
        "fill_iterative_s": t_fill,
        "fingerprint_over_fill": t_full / t_fill,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    print(f"file: {size / 1e6:.0f} MB, {n} events (page cache warm)")
    print(
        f"former head/tail fingerprint : {t_head_tail * 1e3:8.2f} ms (misses changes in the middle)"
    )
    print(f"full xxh3 fingerprint        : {t_full * 1e3:8.1f} ms  ({gb / t_full:.2f} GB/s)")
    print(f"  memoised second call       : {t_memo * 1e6:8.1f} µs")
    print(f"full blake2b, for scale      : {t_blake * 1e3:8.1f} ms  ({gb / t_blake:.2f} GB/s)")
    print(f"fill, iterative executor     : {t_fill:8.2f} s")
    print(f"fingerprint / fill           : {t_full / t_fill:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
