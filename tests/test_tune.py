"""The Optuna study (training.tune): resuming, trials cut by the deadline, reporting without the base model."""

from __future__ import annotations

import time
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from training.tune import PRUNED_BY, PruningCallback, fail_interrupted_trials, main, write_report


def test_a_resumed_study_fails_the_trials_an_interruption_left_running(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    done = study.ask()
    study.tell(done, 0.5)
    study.ask()  # the worker that ran this trial was killed
    resumed = optuna.load_study(study_name="s", storage=storage)
    fail_interrupted_trials(resumed)
    assert [t.state for t in resumed.get_trials()] == [TrialState.COMPLETE, TrialState.FAIL]


def test_report_only_reads_the_study_without_the_base_model(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tmp_path / "absent")}), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: float, low: 1.0e-5, high: 1.0e-4}\n", encoding="utf-8")
    (tmp_path / "recipe").mkdir()
    storage = f"sqlite:///{tmp_path / 'recipe' / 'study.db'}"
    study = optuna.create_study(study_name="recipe", storage=storage, direction="maximize")
    trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-4)})
    study.tell(trial, 0.8)
    main(["--config", str(config), "--space", str(space), "--output-dir", str(tmp_path), "--report-only"])
    assert "0.8000" in (tmp_path / "recipe" / "report.md").read_text(encoding="utf-8")


def test_a_trial_past_the_deadline_is_pruned_as_cut_and_the_report_counts_it_apart(tmp_path):
    storage = f"sqlite:///{tmp_path / 'recipe' / 'study.db'}"
    (tmp_path / "recipe").mkdir()
    study = optuna.create_study(study_name="recipe", storage=storage, direction="maximize")
    rate = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-4)}
    study.tell(study.ask(rate), 0.8)
    cut = study.ask(rate)
    callback = PruningCallback(cut, deadline=time.time() - 1, metric="selection")
    with pytest.raises(optuna.TrialPruned, match="deadline"):
        callback.on_evaluate(None, SimpleNamespace(epoch=1.0), None, metrics={"eval_selection": 0.7})
    study.tell(cut, state=TrialState.PRUNED)
    assert study.trials[1].user_attrs == {PRUNED_BY: "deadline"}
    report = write_report(study, {}, tmp_path / "recipe").read_text(encoding="utf-8")
    assert "Trials: 1 complete, 1 pruned (1 at a deadline)." in report
