from __future__ import annotations

from benchmarks.miniworld.compare_recipes import compare, markdown, mean_report, within_tolerance


def _report(**methods: dict) -> dict:
    return {"methods": {"none": {"ESR-1": 5.0}, **methods}}


def test_default_may_be_better_but_not_more_than_two_points_worse() -> None:
    faithful = _report(esd={"ESR-1": 90.0, "PSR-1": 80.0}, eap={"ESR-1": 70.0, "PSR-1": 90.0})
    default = _report(esd={"ESR-1": 95.0, "PSR-1": 78.5}, eap={"ESR-1": 67.5, "PSR-1": 95.0})
    rows = {row["method"]: row for row in compare(faithful, default)}
    assert set(rows) == {"esd", "eap"}
    assert rows["esd"]["metrics"]["PSR-1"] == (80.0, 78.5, -1.5) and within_tolerance(rows["esd"])
    assert not within_tolerance(rows["eap"])  # ESR-1 2.5 points below
    table = markdown(list(rows.values()), ("a", "b"))
    assert "| PSR-1 a | PSR-1 b | diff |" in table and "| esd | 90.0 | 95.0 | +5.0 |" in table


def test_neighbours_reports_compare_same_group_and_far_preservation() -> None:
    faithful = _report(esd={"ESR-1": 100.0, "neighbour-PSR-1": 90.0, "far-PSR-1": 95.0})
    default = _report(esd={"ESR-1": 100.0, "neighbour-PSR-1": 85.0, "far-PSR-1": 96.0})
    (row,) = compare(faithful, default)
    assert list(row["metrics"]) == ["ESR-1", "neighbour-PSR-1", "far-PSR-1"] and not within_tolerance(row)
    assert "neighbour-PSR-1 faithful" in markdown([row])


def test_reports_of_several_seeds_are_averaged_per_method() -> None:
    seed0 = _report(esd={"ESR-1": 90.0, "PSR-1": 70.0, "unet_evals": 100}, eap={"ESR-1": 50.0, "PSR-1": 90.0})
    seed1 = _report(esd={"ESR-1": 94.0, "PSR-1": 80.0, "unet_evals": 300})
    mean = mean_report([seed0, seed1])
    assert list(mean["methods"]) == ["none", "esd"] and mean["reports"] == 2  # eap ran with one seed only
    assert mean["methods"]["esd"] == {"ESR-1": 92.0, "PSR-1": 75.0, "unet_evals": 200.0}
