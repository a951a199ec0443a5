"""What effsearch records about a study when it creates it: one frozen record, written and read by
record/study.py alone.

The record is stored as one JSON object (the study's "effsearch" user attribute) whose shape `to_dict`
keeps; `from_dict` reads any older or partial object, and the defaults below are the only ones: a study
made before a figure was recorded is read as having used the value given here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Environment", "Energy", "Latency", "Metric", "StudyMeta"]


def _or(value: Any, default: Any) -> Any:
    """`value`, unless it was not recorded (None or empty)."""
    return value if value else default


@dataclass(frozen=True, kw_only=True)
class Metric:
    """The user file's metric: its key among a trial's figures and whether higher is better.

    key: None only where nothing names it (no recorded key, no objectives).
    """

    key: str | None = None
    direction: str = "maximize"


@dataclass(frozen=True, kw_only=True)
class Latency:
    """How latency is timed: onnxruntime on `target`, `threads` threads, p50 of calls at `batch` samples.

    target: the latency target plugin by name (studies that predate targets timed on the CPU).
    sequence_length: the length token inputs are padded to when timed (None: not a sequence, or unpadded).
    recorded: False for a study made before the protocol was recorded (the fields are then these defaults).
    """

    target: str = "cpu"
    threads: int = 1
    batch: int = 1
    sequence_length: int | None = None
    warmup: int = 50
    repeats: int = 300
    recorded: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The protocol as stored under "latency" (the target is stored beside it, as "latency_target")."""
        return {"threads": self.threads, "batch": self.batch, "sequence_length": self.sequence_length,
                "warmup": self.warmup, "repeats": self.repeats}


@dataclass(frozen=True, kw_only=True)
class Energy:
    """Where a study's energy figures come from.

    source: the training meter's name where it measures, else "estimate"; infer_source: the same for
    inference energy (None: nothing measures or estimates it; a study made before it was recorded read
    inference energy where it read training's); meter: the training meter's name; basis: its describe().
    """

    source: str = "estimate"
    infer_source: str | None = None
    meter: str | None = None
    basis: str | None = None


@dataclass(frozen=True, kw_only=True)
class Environment:
    """The host, thread settings and library versions of the process that created the study."""

    host: str | None = None
    user: str | None = None
    platform: str | None = None
    python: str | None = None
    cpu: str | None = None
    cores_usable: int | None = None
    torch_threads: int | None = None
    latency_threads: int | None = None
    cuda_devices: int | None = None
    versions: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ENVIRONMENT}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Environment:
        return cls(**{k: v for k, v in d.items() if k in _ENVIRONMENT and v is not None})


_ENVIRONMENT = tuple(f.name for f in fields(Environment))


@dataclass(frozen=True, kw_only=True)
class StudyMeta:
    """What effsearch recorded about a study when it created it.

    exists: False for a study effsearch did not make (or has not finished making: its creator writes
    this record last). id: names the artifact folder (None for studies made before it did).
    user_file, user_file_sha256: the model file the study was tuned with, and its hash then.
    objectives: the study's objectives in order; space: SearchSpace.to_dict(); storage: its URL, redacted;
    artifacts: the folder its runs write to; seed: the first worker's seed.
    channel_multiple: the multiple every host rounds pruned channels to (None: each host its own).
    input_shape, input_dtype, inputs: what the probe saw of one training sample (inputs.py).
    created: when, as the creating host wrote it.
    """

    exists: bool = True
    id: str | None = None
    user_file: str | None = None
    user_file_sha256: str | None = None
    metric: Metric = field(default_factory=Metric)
    objectives: tuple[str, ...] = ()
    space: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    storage: str | None = None
    artifacts: str | None = None
    seed: int | None = None
    channel_multiple: int | None = None
    input_shape: tuple[int, ...] | None = None
    input_dtype: str | None = None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    energy: Energy = field(default_factory=Energy)
    latency: Latency = field(default_factory=Latency)
    created: str | None = None
    environment: Environment = field(default_factory=Environment)

    def to_dict(self) -> dict[str, Any]:
        """The record as stored: the JSON object the README's studies hold (keys in their stored order)."""
        return {
            "id": self.id,
            "user_file": self.user_file,
            "user_file_sha256": self.user_file_sha256,
            "metric_key": self.metric.key,
            "metric_direction": self.metric.direction,
            "objectives": list(self.objectives),
            "space": self.space,
            "epochs": self.epochs,
            "storage": self.storage,
            "artifacts": self.artifacts,
            "seed": self.seed,
            "channel_multiple": self.channel_multiple,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "input_dtype": self.input_dtype,
            "inputs": self.inputs,
            "energy_source": self.energy.source,
            "infer_energy_source": self.energy.infer_source,
            "energy_meter": self.energy.meter,
            "energy_basis": self.energy.basis,
            "latency_target": self.latency.target,
            "latency": self.latency.to_dict(),
            "created": self.created,
            "environment": self.environment.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, names: Sequence[str] = (), count: int = 0) -> StudyMeta:
        """The record of a stored object, of any effsearch version ({}: a study effsearch did not make).

        names, count: the study's objectives as Optuna names them, and how many it has. The objectives are
        Optuna's names, else the record's own list, else objective_0, objective_1, ...; the metric of a
        record that does not name it is the first objective.
        """
        env = Environment.from_dict(d.get("environment") or {})
        latency = d.get("latency") or {}
        objectives = tuple(names or d.get("objectives") or (f"objective_{i}" for i in range(count)))
        source = _or(d.get("energy_source"), Energy.source)
        shape = d.get("input_shape")
        return cls(
            exists=bool(d),
            id=d.get("id"),
            user_file=d.get("user_file"),
            user_file_sha256=d.get("user_file_sha256"),
            metric=Metric(
                key=_or(d.get("metric_key"), objectives[0] if objectives else None),
                direction=_or(d.get("metric_direction"), Metric.direction),
            ),
            objectives=objectives,
            space=dict(d.get("space") or {}),
            epochs=d.get("epochs"),
            storage=d.get("storage"),
            artifacts=d.get("artifacts"),
            seed=d.get("seed"),
            channel_multiple=None if d.get("channel_multiple") is None else int(d["channel_multiple"]),
            input_shape=None if shape is None else tuple(shape),
            input_dtype=d.get("input_dtype"),
            inputs=dict(d.get("inputs") or {}),
            energy=Energy(
                source=source,
                # Before inference energy had a meter of its own, it was read where training's was.
                infer_source=d.get("infer_energy_source", source),
                meter=d.get("energy_meter"),
                basis=d.get("energy_basis"),
            ),
            latency=Latency(
                target=_or(d.get("latency_target"), Latency.target),
                # Before the protocol was recorded, the threads were recorded with the host.
                threads=int(_or(latency.get("threads"), _or(env.latency_threads, Latency.threads))),
                batch=int(_or(latency.get("batch"), Latency.batch)),
                sequence_length=latency.get("sequence_length"),
                warmup=int(_or(latency.get("warmup"), Latency.warmup)),
                repeats=int(_or(latency.get("repeats"), Latency.repeats)),
                recorded="latency" in d,
            ),
            created=d.get("created"),
            environment=env,
        )
