"""The plugin contract: read from each kind's base, and met by every registered plugin of that kind.

The checks of one kind's behaviour run against every registered implementation (built-in or third-party):
latency targets here, energy meters in tests/measure/test_energy.py.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import pytest

from effsearch.plugins import (
    BASES,
    KINDS,
    EnergyMeter,
    LatencyTarget,
    Plugin,
    base_of,
    choose_latency_target,
    contract_error,
    contract_of,
    plugins_of_kind,
)

REGISTERED = [p for kind in KINDS for p in plugins_of_kind(kind)]
TARGETS = plugins_of_kind(LatencyTarget.kind)


# -- every registered plugin meets its kind's contract --------------------------------------------


@pytest.mark.parametrize("base", BASES, ids=KINDS)
def test_every_kind_has_a_builtin_plugin(base: type[Plugin]) -> None:
    assert any(p.builtin for p in plugins_of_kind(base.kind)), f"no built-in {base.kind}"


@pytest.mark.parametrize("info", REGISTERED, ids=[p.name for p in REGISTERED])
def test_plugin_meets_the_contract_of_its_kind(info) -> None:
    cls = info.obj
    assert contract_error(cls, info.name) is None
    contract = contract_of(base_of(cls.kind))
    for method in contract.abstract:
        assert not getattr(getattr(cls, method), "__isabstractmethod__", False), f"{info.name}.{method}() is abstract"
    reason = cls.unavailable()
    # A plugin that cannot be used here says why in words; one that can may say what it uses.
    assert reason is None or (isinstance(reason, str) and reason.strip()), repr(reason)
    if reason is None:
        detail = cls.describe()
        assert detail is None or (isinstance(detail, str) and detail.strip()), repr(detail)


# -- latency targets ------------------------------------------------------------------------------


def _runs_on_first_provider(target_cls) -> bool:
    """Whether an onnxruntime session made with the target's providers runs a model on the first of them."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    try:
        providers = target_cls().providers()
        session = ort.InferenceSession(model.SerializeToString(), providers=providers)
        session.run(None, {"x": np.zeros((1, 2), np.float32)})
    except Exception:
        return False
    return providers[0] in session.get_providers()


def test_the_builtin_targets_are_registered_and_one_is_chosen() -> None:
    assert {"cpu", "cuda"} <= {p.name for p in TARGETS}
    assert choose_latency_target().name in {p.name for p in TARGETS if not p.unavailable}


@pytest.mark.parametrize("info", TARGETS, ids=[p.name for p in TARGETS])
def test_latency_target_is_usable_exactly_when_it_runs_on_its_provider(info) -> None:
    import onnxruntime as ort

    reason = info.obj.unavailable()
    # Usable exactly when onnxruntime runs a model on the target's first provider here (it would
    # otherwise fall back to the CPU, and latency would be timed on what the target does not name).
    runs = _runs_on_first_provider(info.obj)
    assert (reason is None) == runs, f"{info.name}: unavailable() is {reason!r}, a session runs on its provider: {runs}"
    if reason is None:
        providers = info.obj().providers()
        assert providers and all(isinstance(x, str) for x in providers)
        assert set(providers) <= set(ort.get_available_providers())


# -- the contract is read from the bases ----------------------------------------------------------


def _valid(hint: Any) -> Any:
    """A value the annotation allows."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return args[0]
    if args:  # X | None
        return _valid(next(a for a in args if a is not type(None)))
    return {str: "duck", bool: True, float: 1.5, int: 1}[hint]


def _duck(base: type[Plugin], drop: str | None = None, **values: Any) -> type:
    """A class that does not subclass `base` but provides every member its contract asks for."""
    contract = contract_of(base)
    members: dict[str, Any] = {"kind": base.kind, **{n: _valid(h) for n, h in contract.attributes}}
    members.update({m: staticmethod(lambda *a: None) for m in contract.methods})
    members.update(values)
    members.pop(drop, None)
    return type(f"Duck{base.__name__}", (), members)


CONTRACT_MEMBERS = [
    (base, name) for base in BASES for name in (*(n for n, _ in contract_of(base).attributes), *contract_of(base).methods)
]


@pytest.mark.parametrize("base", BASES, ids=KINDS)
def test_the_contract_is_what_the_base_declares(base: type[Plugin]) -> None:
    contract = contract_of(base)
    assert {"name", "priority"} <= {n for n, _ in contract.attributes}
    assert {"unavailable", "describe"} <= set(contract.methods)
    assert set(base.__abstractmethods__) == set(contract.abstract) and contract.abstract
    assert set(contract.abstract) <= set(contract.methods)
    assert contract_error(_duck(base), "acme:Duck") is None  # subclassing is not required


@pytest.mark.parametrize(("base", "member"), CONTRACT_MEMBERS, ids=[f"{b.kind}-{m}" for b, m in CONTRACT_MEMBERS])
def test_a_plugin_without_a_member_of_its_contract_is_rejected_naming_it(base: type[Plugin], member: str) -> None:
    error = contract_error(_duck(base, drop=member), "acme:Duck")
    assert error is not None and error.startswith(f"not {contract_of(base).label}: acme:Duck") and member in error


BAD_VALUES = [
    ("name", ""),
    ("name", 3),
    ("priority", True),
    ("priority", float("nan")),
    ("priority", "high"),
    ("measured", "yes"),
    ("measured", None),
    ("scope", "galaxy"),
    ("reads", "tpu"),
    ("min_window_s", "1 s"),
]


@pytest.mark.parametrize(("member", "value"), BAD_VALUES, ids=[f"{m}={v!r}" for m, v in BAD_VALUES])
def test_a_plugin_attribute_of_the_wrong_type_is_rejected(member: str, value: Any) -> None:
    error = contract_error(_duck(EnergyMeter, **{member: value}), "acme:Duck")
    assert error is not None and error.startswith(f"not an energy meter: acme:Duck.{member} is {value!r}, not ")


def test_a_subclass_that_leaves_a_method_abstract_is_rejected() -> None:
    class Half(LatencyTarget):
        name = "half"

    assert contract_error(Half, "acme:Half") == "not a latency target: acme:Half leaves providers() abstract"


def test_an_unknown_kind_is_not_a_plugin() -> None:
    class Compressor:
        kind = "compressor"
        name = "squash"

    error = contract_error(Compressor, "acme:Compressor")
    assert error == f"not a plugin: acme:Compressor has kind 'compressor', not one of {', '.join(KINDS)}"
