"""Behaviour unchanged: a stored small campaign written before the results store and the
record were rewritten equals a fresh run of the same campaign, minus times; the comparison
itself leaves out exactly the volatile keys."""

import math
import pathlib

import pytest

from optiscale_jax.benchmark import campaign, load_results
from optiscale_jax.benchmark.compare import compare_results, main

STORED = pathlib.Path(__file__).parent / "fixtures" / "small_suite_before_refactor.json"


def _file(*runs):
    return {"runs": list(runs)}


def test_volatile_keys_are_left_out_and_real_differences_found():
    before = {"identity": "a", "dataset": "d", "label": "SGD", "final_loss": 1.0,
              "run_time_s": 0.5, "curve": {"time_s": [0.0, 1.0], "train_loss": [2.0, 1.0]},
              "test_mse": math.nan}
    same = {**before, "run_time_s": 9.0, "curve": {"time_s": [0.0, 7.0], "train_loss": [2.0, 1.0]},
            "new_field": 3}
    result = compare_results(_file(before), _file(same))
    assert result.equal and result.matched == 1 and result.new_keys == ["new_field"]
    changed = {**same, "curve": {"time_s": [0.0, 7.0], "train_loss": [2.0, 1.5]}}
    result = compare_results(_file(before), _file(changed))
    assert not result.equal and result.differences[0].startswith("d/SGD curve:")
    result = compare_results(_file(before, {**before, "identity": "b"}), _file(same))
    assert result.missing == ["b"]


@pytest.mark.slow
def test_a_fresh_run_equals_the_stored_campaign(tmp_path, capsys):
    stored = load_results(STORED)
    plan = campaign.plan_campaign(datasets=["highdim_50", "kappa_1e3_small"],
                                  optimizers=["sgd", "nesterov", "adam"], epochs=60)
    summary = campaign.run_campaign(plan, output_dir=tmp_path, stream=None)
    result = compare_results(stored, load_results(summary.results_path))
    assert result.equal, "\n".join(result.differences + result.missing)
    assert result.matched == len(stored["runs"]) == 6
    assert main([str(STORED), str(summary.results_path)]) == 0
    assert "6 runs matched by identity, 0 missing, 0 differing values" in capsys.readouterr().out
