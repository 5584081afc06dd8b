"""The Optuna study (training.tune): resuming after an interruption and reporting without the base model."""

from __future__ import annotations

import optuna
import yaml
from optuna.trial import TrialState

from training.tune import fail_interrupted_trials, main


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
