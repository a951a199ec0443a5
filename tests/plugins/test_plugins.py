"""Plugin discovery and `effsearch plugins`, with third-party distributions made by the tests.

A third-party distribution is a module next to a `*.dist-info` folder holding METADATA and
entry_points.txt: what pip leaves in site-packages. The tests write one into a temporary folder and put
that folder on sys.path (in-process) or PYTHONPATH (the CLI and its rank processes), so nothing is
installed into the environment and nothing remains afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from effsearch import plugins
from effsearch.errors import PluginError
from effsearch.train.pool import available_cores

FAKES = Path(__file__).resolve().parent / "fakes"

# distribution name -> (module, {entry-point name: object})
DISTS = {
    "effsearch-fakemeter": ("effsearch_fakemeter", {"fakemeter": "FakeMeter"}),
    "effsearch-brokenplugin": ("effsearch_brokenplugin", {"brokenmeter": "Meter"}),
    "effsearch-oddplugins": ("effsearch_oddplugins", {"notaplugin": "NotAPlugin", "secondestimate": "SecondEstimate"}),
}
FAKE_MODULES = [module for module, _ in DISTS.values()]
FAKE_JOULES = 7.25


def make_site(root: Path) -> Path:
    """A folder holding the fake third-party distributions, as pip would have installed them."""
    root.mkdir(parents=True, exist_ok=True)
    for dist, (module, eps) in DISTS.items():
        shutil.copy(FAKES / f"{module}.py", root / f"{module}.py")
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = [f"{name} = {module}:{obj}" for name, obj in eps.items()]
        (info / "entry_points.txt").write_text("[effsearch.plugins]\n" + "\n".join(lines) + "\n")
    return root


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake distributions on sys.path, discovery started afresh; all undone afterwards."""
    root = make_site(tmp_path / "site")
    joules = tmp_path / "joules"
    joules.write_text(str(FAKE_JOULES))
    monkeypatch.setenv("EFFSEARCH_FAKEMETER_FILE", str(joules))
    monkeypatch.delenv("EFFSEARCH_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(root))
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)
    plugins.reload()
    yield root
    monkeypatch.undo()
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)
    plugins.reload()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI with the fake distributions on PYTHONPATH."""
    root = make_site(tmp_path / "cli-site")
    joules = tmp_path / "cli-joules"
    joules.write_text(str(FAKE_JOULES))
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "EFFSEARCH_FAKEMETER_FILE": str(joules)}


def by_name() -> dict[str, plugins.PluginInfo]:
    return {p.name: p for p in plugins.discover()}


def row(stdout: str, name: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(f"│ {name} ")]
    assert len(lines) == 1, f"no single row for {name} in:\n{stdout}"
    return lines[0]


# -- discovery ------------------------------------------------------------------------------------


def test_builtins_come_through_the_entry_point_group() -> None:
    found = by_name()
    for name, kind in (("estimate", "energy_meter"), ("rapl", "energy_meter"), ("nvml", "energy_meter"),
                       ("cpu", "latency_target"), ("cuda", "latency_target")):
        assert found[name].kind == kind
        assert found[name].builtin and "(built-in)" in found[name].origin
        assert found[name].obj.__module__.startswith("effsearch_builtin_plugins.")
    assert plugins.discover() is plugins.discover()  # loaded once


def test_a_third_party_meter_is_found_and_chosen(site: Path) -> None:
    p = by_name()["fakemeter"]
    assert (p.kind, p.origin, p.error, p.unavailable) == ("energy_meter", "effsearch-fakemeter 0.1", None, None)
    meter_cls = plugins.choose_energy_meter("fakemeter")
    meter = meter_cls()
    meter.start()
    assert meter.stop() == FAKE_JOULES
    # Measured beats estimated when nothing is forced.
    assert plugins.choose_energy_meter().measured is True


def test_a_plugin_that_raises_on_import_is_reported_not_raised(site: Path) -> None:
    broken = by_name()["brokenmeter"]
    assert broken.error == "failed to load: RuntimeError: this plugin is broken on purpose"
    assert broken.unavailable == broken.error
    assert plugins.choose_energy_meter("estimate").name == "estimate"
    with pytest.raises(PluginError, match="brokenmeter.*failed to load: RuntimeError"):
        plugins.choose_energy_meter("brokenmeter")


def test_objects_that_are_not_plugins_and_name_clashes_are_reported(site: Path) -> None:
    found = by_name()
    assert "not a plugin" in found["notaplugin"].error and "compressor" in found["notaplugin"].error
    assert "'estimate' is already taken by effsearch" in found["secondestimate"].error
    assert found["estimate"].builtin and found["estimate"].error is None
    with pytest.raises(PluginError, match="is a latency target plugin"):
        plugins.choose_energy_meter("cpu")
    with pytest.raises(PluginError, match="no energy meter named 'nosuch'; installed: estimate, fakemeter, nvml, rapl"):
        plugins.choose_energy_meter("nosuch")


def test_effsearch_plugins_restricts_third_party_plugins(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSEARCH_PLUGINS", "fakemeter, nosuch")
    plugins.reload()
    found = by_name()
    assert found["fakemeter"].error is None
    assert found["brokenmeter"].error == "not loaded: EFFSEARCH_PLUGINS does not name it"
    assert found["notaplugin"].error == "not loaded: EFFSEARCH_PLUGINS does not name it"
    assert "effsearch_oddplugins" not in sys.modules
    assert "no installed plugin has this name" in found["nosuch"].error
    assert found["estimate"].error is None and found["cpu"].error is None  # built-ins always load

    monkeypatch.setenv("EFFSEARCH_PLUGINS", "")
    plugins.reload()
    found = by_name()
    assert found["fakemeter"].error.startswith("not loaded")
    assert found["rapl"].error is None


def test_asking_for_one_plugin_imports_only_that_one(site: Path) -> None:
    # What a rank process does: it needs only the meter the driver chose.
    assert plugins.get_plugin("energy_meter", "fakemeter").name == "fakemeter"
    assert "effsearch_fakemeter" in sys.modules
    assert "effsearch_oddplugins" not in sys.modules
    plugins.discover()
    assert "effsearch_oddplugins" in sys.modules


# -- the command line -----------------------------------------------------------------------------


def test_plugins_command_lists_every_plugin_and_exits_0_despite_a_broken_one(run_cli, cli_env) -> None:
    proc = run_cli("plugins", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    for name in ("estimate", "rapl", "nvml", "cpu", "cuda"):
        assert "effsearch 0.1.0 (built-in)" in row(proc.stdout, name)
    assert "yes: CPU seconds x" in row(proc.stdout, "estimate")
    fake = row(proc.stdout, "fakemeter")
    assert "energy meter (measures, process)" in fake and "effsearch-fakemeter 0.1" in fake and "│ yes" in fake
    broken = row(proc.stdout, "brokenmeter")
    assert "effsearch-brokenplugin 0.1" in broken and "no: failed to load: RuntimeError" in broken
    assert "no: not a plugin" in row(proc.stdout, "notaplugin")


def _tune(run_cli, examples: Path, tmp_path: Path, env: dict[str, str], meter: str, world_size: int = 1):
    """One short training run of the breast-cancer MLP, fp32 only."""
    space = tmp_path / "space.toml"
    space.write_text(f'precision = "fp32"\nworld_size = {world_size}\n')
    return run_cli("tune", str(examples / "breast_cancer_mlp.py"), "--trials", "1", "--epochs", "1",
                   "--space", str(space), "--max-world-size", str(world_size), "--energy-meter", meter, env=env)


def _pareto(run_cli, cwd: Path, env: dict[str, str]) -> list[dict]:
    proc = run_cli("pareto", "--json", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_tune_measures_with_a_third_party_meter_in_every_rank(run_cli, cli_env, examples, tmp_path) -> None:
    ranks = min(2, available_cores())
    proc = _tune(run_cli, examples, tmp_path, cli_env, "fakemeter", world_size=ranks)
    assert proc.returncode == 0, proc.stderr
    # The broken plugin beside it is reported once and changes nothing.
    assert "brokenmeter" in proc.stderr and "failed to load" in proc.stderr
    (t,) = _pareto(run_cli, tmp_path, cli_env)
    m = t["metrics"]
    assert m["energy_source"] == "fakemeter"
    assert t["params"]["world_size"] == ranks
    assert m["energy_j"] == pytest.approx(ranks * FAKE_JOULES)  # each rank's reading, counted once
    # Inference energy: one reading over the latency window, per sample.
    assert m["infer_energy_mj"] > 0 and m["flops_per_j"] == pytest.approx(m["flops"] / (m["infer_energy_mj"] / 1e3))
    readers = [r.split()[0] for r in Path(cli_env["EFFSEARCH_FAKEMETER_FILE"] + ".log").read_text().splitlines()]
    assert {f"effsearch-rank-{r}" for r in range(ranks)} <= set(readers)  # read inside the rank processes


def test_the_estimate_is_labelled_estimate_in_json_and_table(run_cli, cli_env, examples, tmp_path) -> None:
    proc = _tune(run_cli, examples, tmp_path, cli_env, "estimate")
    assert proc.returncode == 0, proc.stderr
    front = _pareto(run_cli, tmp_path, cli_env)
    assert front and all(t["metrics"]["energy_source"] == "estimate" for t in front)
    assert all(t["metrics"]["energy_j"] > 0 for t in front)
    table = run_cli("pareto", env=cli_env)
    assert table.returncode == 0, table.stderr
    assert "energy J (estimate)" in table.stdout


def test_effsearch_run_from_a_folder_never_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # On PYTHONPATH without being installed, no distribution carries effsearch's entry points.
    from effsearch.plugins import registry

    others = [d for d in registry.distributions() if (d.metadata["Name"] or "").lower() != "effsearch"]
    monkeypatch.setattr(registry, "distributions", lambda: iter(others))
    plugins.reload()
    try:
        with pytest.raises(PluginError, match=r"built-in plugins are not registered.*pip install -e \."):
            plugins.choose_energy_meter()
        with pytest.raises(PluginError, match=r"no latency target named 'cpu'.*pip install -e \."):
            plugins.get_plugin("latency_target", "cpu")
    finally:
        monkeypatch.undo()
        plugins.reload()
    assert plugins.choose_energy_meter() is not None, "installed, the built-ins are back"
