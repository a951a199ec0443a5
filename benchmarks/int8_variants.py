"""Which post-training static int8 recipes change speed or accuracy: measured on one trained model.

From one trained fp32 artifact, every recipe of onnxruntime's quantize_static that effsearch could record
as a free point of a run is made and measured: QDQ or QOperator format, per-channel or per-tensor
weights, unsigned or signed activations, MinMax, Entropy or Percentile calibration (24 recipes),
calibrated on the first 256 training samples as effsearch calibrates. Each is measured as effsearch
measures a precision: the user's metric on the whole validation set from onnxruntime outputs, the file's
size, and latency at batch 1 with one thread, every recipe timed together with the fp32 model and the
default recipe (int8_static: QDQ, per-channel, QUInt8, MinMax) by the re-measurement protocol
(measure/blocks.py). Printed: each recipe's metric, size and latency ratio to the default recipe's.

    python benchmarks/int8_variants.py --file examples/mobilenet_digits.py     # a model that arrives trained
    python benchmarks/int8_variants.py --file examples/digits_cnn.py --onnx studies/digits-cnn/run-0/model.onnx
    python benchmarks/int8_variants.py --file ... --json                       # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from effsearch.compress.quantize import INT8_STATIC, Int8Variant, quantize_int8_static
from effsearch.measure.blocks import PROTOCOL, measure_blocks
from effsearch.measure.metric import ort_metric, stack_dataset
from effsearch.onnx_export import export_onnx
from effsearch.userfile import default_metric, load_user_file

RECIPES = [
    Int8Variant(fmt, per_channel, act, calib)
    for fmt, per_channel, act, calib in itertools.product(
        ("QDQ", "QOperator"), (True, False), ("QUInt8", "QInt8"), ("MinMax", "Entropy", "Percentile")
    )
]


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, required=True, help="the user file (its data and metric)")
    ap.add_argument("--onnx", type=Path, default=None,
                    help="a trained fp32 artifact (default: the model the file returns, exported as given; for trained=True files)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    uf = load_user_file(args.file)
    train, val = uf.registration.data()
    data = stack_dataset(val)
    calib = stack_dataset(train, limit=256).inputs
    calibration = [calib[i : i + 32] for i in range(0, len(calib), 32)]
    metric = uf.registration.metric or default_metric
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fp32 = args.onnx
        if fp32 is None:
            module = uf.registration.model()  # a trained=True file may train itself here, the first time
            fp32 = export_onnx(module, torch.from_numpy(data.inputs[:8]), tmp / "model.onnx").path
        files: dict[str, Path] = {"fp32": fp32}
        made_s: dict[str, float] = {}
        failed: dict[str, str] = {}
        for i, v in enumerate(RECIPES):
            dst = tmp / f"model.int8.{i}.onnx"
            t0 = time.perf_counter()
            try:
                quantize_int8_static(fp32, dst, calibration, v)
            except Exception as exc:  # noqa: BLE001 - a recipe onnxruntime cannot make for this model is a result
                failed[v.label] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                continue
            made_s[v.label] = time.perf_counter() - t0
            files[v.label] = dst
        default = INT8_STATIC.label
        metrics = {k: ort_metric(p, data, metric) for k, p in files.items()}
        protocol = {**PROTOCOL, "min_blocks": 10, "max_blocks": 30, "max_s": 30.0}
        timed = measure_blocks(files, default, data.inputs[:1], protocol=protocol)
        sizes = {k: p.stat().st_size for k, p in files.items()}
    say(f"{args.file.name}: fp32 {uf.metric_key} {metrics['fp32']:.4f}, {timed['fp32'].p50_ms:.4f} ms, {sizes['fp32'] / 1e3:.1f} kB")
    say(f"| recipe | {uf.metric_key} | latency ms | × default int8 (interval) | size kB | made in s |")
    say("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for label in files:
        t = timed[label]
        rows.append({"recipe": label, "metric": metrics[label], "latency_ms": t.p50_ms, "ratio": t.ratio,
                     "ratio_interval": [t.ratio_lo, t.ratio_hi], "size_bytes": sizes[label], "made_s": made_s.get(label)})
        mark = " (default)" if label == default else ""
        say(f"| {label}{mark} | {metrics[label]:.4f} | {t.p50_ms:.4f} | {t.ratio:.3f} ({t.ratio_lo:.3f}-{t.ratio_hi:.3f}) | "
            f"{sizes[label] / 1e3:.1f} | {made_s.get(label, 0.0):.1f} |")
    for label, why in failed.items():
        say(f"| {label} | failed: {why} | | | | |")
    if args.json:
        print(json.dumps({"file": str(args.file), "metric_key": uf.metric_key, "rows": rows, "failed": failed}, indent=2))


if __name__ == "__main__":
    main()
