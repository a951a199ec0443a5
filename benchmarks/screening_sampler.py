"""Does the sampler learn from screened configurations? The share of suggestions screened out, by half of a study.

tests/userfiles/wide_mlp.py under a size limit that only int8 files of prune ratio 0.5 or more meet (the limit
lies between the untrained int8_dynamic sizes at 0.45 and 0.5). At random, 10 of the 16 prune ratios (those
below 0.5) would be screened out: 62 % of suggestions. A sampler that learns screens out far fewer, and fewer
still once its random startup is behind it.

Goal: at most a third of the random share over the whole study, at most a quarter in its second half.
Measured with the default sampler, 40 runs: 43 suggestions, 4 screened (0.10 in the first half, its random
startup among them, 0.09 in the second); before the GP's proposals of a screened graph went to TPE, 52
suggestions, 0.08 and 0.42.

    python benchmarks/screening_sampler.py            # 40 runs (about 3 minutes on 2 cores)
    python benchmarks/screening_sampler.py --runs 80  # exits 1 when the goal is not met
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import optuna

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.run.untrained import measure_untrained
from effsearch.userfile import load_user_file

ROOT = Path(__file__).resolve().parent.parent
USER_FILE = ROOT / "tests" / "userfiles" / "wide_mlp.py"
STUDY = "wide-mlp"
# The training precision changes nothing a limit screens (the graph), so it is fixed with the others.
SPACE = 'world_size = 1\nbatch_size = 128\nprune_importance = "l2"\nprune_when = "start"\ntrain_precision = "fp32"\n\n[precision]\nchoices = ["fp32", "int8_dynamic"]\n'
RANDOM_SHARE = 10 / 16  # the prune ratios below 0.5, of the 16 the space offers


def size_limit_mb(user_file: Path = USER_FILE) -> float:
    """A size limit (MB) between the untrained int8_dynamic files at prune ratios 0.45 and 0.5: the ratios
    from 0.5 up fit in int8, the lower ones fit in nothing."""
    from effsearch.measure.metric import stack_dataset

    uf = load_user_file(user_file)
    datasets = uf.registration.data()
    val = stack_dataset(datasets[1])

    def size(ratio: float) -> float:
        config = TrainConfig(batch_size=128, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=ratio, world_size=1, epochs=1, seed=0)
        figures = measure_untrained(uf, datasets, config, ("int8_dynamic",), calibration=[val.inputs[:64]], sample=val.inputs[:1])
        return figures["int8_dynamic"].size_bytes

    return float(f"{(size(0.45) + size(0.5)) / 2 / 1e6:.6f}")


def tune_args(folder: Path, runs: int, limit_mb: float, user_file: Path = USER_FILE) -> list[str]:
    """`effsearch tune` of the user file under the limit, in folder (its space file written there)."""
    space = folder / "space.toml"
    space.write_text(SPACE)
    return ["tune", str(user_file), "--trials", str(runs), "--space", str(space), "--objectives", "accuracy,size_bytes",
            "--max-size-mb", f"{limit_mb:.6f}"]


def screened_shares(study: optuna.Study) -> tuple[list[bool], float, float]:
    """Per lead suggestion (the baseline left out), whether it was screened out; the share in each half."""
    leads = [t for t in record.read_all(study) if t.lead and not t.baseline]
    screened = [t.record.screened is not None for t in leads]
    half = len(leads) // 2
    return screened, float(np.mean(screened[:half])), float(np.mean(screened[half:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    limit_mb = size_limit_mb()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        r = subprocess.run([sys.executable, "-m", "effsearch", *tune_args(folder, args.runs, limit_mb)], cwd=folder,
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"effsearch tune failed ({r.returncode}):\n{r.stderr}")
        study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / 'studies' / 'effsearch.db'}")
        screened, first, second = screened_shares(study)
    whole = float(np.mean(screened))
    met = whole <= RANDOM_SHARE / 3 and second <= RANDOM_SHARE / 4
    print(f"size limit {limit_mb:.6f} MB; {len(screened)} suggestions, {sum(screened)} screened: share {whole:.2f} "
          f"({first:.2f} in the first half, {second:.2f} in the second) against {RANDOM_SHARE:.2f} at random; "
          f"goal <= {RANDOM_SHARE / 3:.2f} and <= {RANDOM_SHARE / 4:.2f} in the second half: {'met' if met else 'not met'}")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
