"""The measured figures a trial records: one small frozen record per key, and the one place a key is spelled.

The objectives and their directions, the units, early stopping, the re-measurement, the screen, the
limits and both tables read a figure from here; adding one (peak memory, say) is one line below. The
user's own metric (accuracy, say) is not a figure: its key and direction come from the user file.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType

__all__ = [
    "FIGURES", "Figure",
    "LATENCY", "LATENCY_P90", "FLOPS", "PARAMS", "SIZE", "ENERGY", "INFER_ENERGY", "FLOPS_PER_J", "TRAIN_S", "THROUGHPUT",
]


@dataclass(frozen=True)
class Figure:
    """One figure a trial records.

    key: its name in a trial's metrics, in `pareto --json` and in --objectives; unit: "" for a count.
    untrained: known before training, measured on the untrained artifact (the screen, early stopping).
    energy: "training" or "inference" for a figure read with an energy meter (its label names the meter).
    timed: taken from the timed latency calls, so its noise is the latency's interval (re-measurement).
    exact: the same at every measurement: two points differ on it or they do not.
    shown: a column of the report's front table.
    column: the terminal table's title for it where it has a fixed column (else a column only as an objective).
    number: how that column writes it: a format spec, or "si" for SI prefixes and the unit.
    """

    key: str
    unit: str
    direction: str
    _: KW_ONLY
    untrained: bool = False
    energy: str = ""
    timed: bool = False
    exact: bool = False
    shown: bool = True
    column: str | None = None
    number: str = "si"

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"figure {self.key!r}: direction {self.direction!r}; use 'minimize' or 'maximize'")
        if self.energy not in ("", "training", "inference"):
            raise ValueError(f"figure {self.key!r}: energy {self.energy!r}; use '', 'training' or 'inference'")
        if self.untrained and self.direction != "minimize":
            # Early stopping and the screen compare untrained figures as costs: lower is better.
            raise ValueError(f"figure {self.key!r}: a figure known before training must be minimised")

    @property
    def label(self) -> str:
        """Its key with its unit, as a column or axis title: "latency_ms (ms)"."""
        return f"{self.key} ({self.unit})" if self.unit else self.key


_FIGURES: dict[str, Figure] = {}


def _add(figure: Figure) -> Figure:
    if figure.key in _FIGURES:
        raise ValueError(f"figure {figure.key!r} is declared twice")
    _FIGURES[figure.key] = figure
    return figure


# In the order the tables show them, and the objectives' error message lists them.
LATENCY = _add(Figure("latency_ms", "ms", "minimize", untrained=True, timed=True, column="latency ms", number=".4f"))
LATENCY_P90 = _add(Figure("latency_p90_ms", "ms", "minimize", untrained=True, timed=True))
FLOPS = _add(Figure("flops", "FLOP", "minimize", untrained=True, exact=True, column="FLOPs"))
PARAMS = _add(Figure("param_count", "", "minimize", untrained=True, exact=True, column="params"))
SIZE = _add(Figure("size_bytes", "B", "minimize", untrained=True, exact=True, column="size"))
ENERGY = _add(Figure("energy_j", "J", "minimize", energy="training", column="energy J", number=".2f"))
INFER_ENERGY = _add(Figure("infer_energy_mj", "mJ", "minimize", energy="inference"))
FLOPS_PER_J = _add(Figure("flops_per_j", "FLOP/J", "maximize", energy="inference"))
TRAIN_S = _add(Figure("train_s", "s", "minimize"))
THROUGHPUT = _add(Figure("throughput_sps", "samples/s", "maximize", timed=True, shown=False))

# Every figure by key, in declaration order (read-only).
FIGURES = MappingProxyType(_FIGURES)
