"""The MobileNetV2-style CNN of mobilenet_digits.py, trained from scratch in every run (8 epochs).

The kind of model people deploy on CPUs (inverted residuals, depthwise convolutions, hardswish) on
3x32x32 inputs; each run prunes it at the start, with channel counts rounded to the runtime's kernel
blocks, and trains it. `benchmarks/compression.py --file examples/mobilenet_scratch.py` measures what
that buys (docs/results.md: "Compression on a MobileNet-style model").
"""

import sys
from pathlib import Path

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mobilenet_arch import MobileNetDigits, load  # noqa: E402 - the architecture both MobileNet examples share

effsearch.register(model=MobileNetDigits, data=load, name="mobilenet-scratch", epochs=8)
