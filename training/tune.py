"""Hyperparameter search with Optuna: TPE sampling, median pruning, SQLite storage.

    python -m training.tune --config training/configs/koelectra-base-v3.yaml \
        --space training/configs/search/default.yaml --workers 4 --n-trials 40 --timeout 3600

Each trial fine-tunes with the base config plus the sampled values and reports its selection
score (``selection_metric`` on validation, by default the label-balanced Pearson, plus any extra
validation sets) after every epoch; the median pruner stops trials that fall behind. Selection
is on held-out splits of the training data only (dev metrics are recorded, never optimised).
Workers are processes sharing one SQLite study, so several trials run on one GPU at once and an
interrupted study resumes where it stopped. Every finished trial leaves, in
``trials/trial-N/``, ``run.json`` and ``scores.npz`` (for ``research.selection``) and
``config.yaml`` (its full config); with ``--keep-packages K`` the trials among the K best so far
also keep their model package. The report (``report.md``, ``trials.csv``, ``best.yaml``: the
base config with the best trial's values) is written to the study folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import signal
import time
from pathlib import Path

import optuna
import yaml
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from transformers import TrainerCallback

from training.arguments import SELECTION, arguments_from_dict
from training.base_model import BaseModelUnavailable, require_base_model
from training.logs import configure_logging

logger = logging.getLogger("training.tune")
PRUNED_BY = "pruned_by"  # a pruned trial's user attribute: "median" (its score) or "deadline" (the clock)

_PRIMITIVES = (str, int, float, bool, type(None))


def _suggest_categorical(trial: optuna.Trial, name: str, spec: dict):
    choices = spec["choices"]
    if all(isinstance(choice, _PRIMITIVES) for choice in choices):
        return trial.suggest_categorical(name, choices)
    # Optuna takes only primitive choices: lists (e.g. extra_train_files) travel as JSON strings
    return json.loads(trial.suggest_categorical(name, [json.dumps(choice) for choice in choices]))


_SUGGEST = {
    "float": lambda trial, name, spec: trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False)),
    "int": lambda trial, name, spec: trial.suggest_int(name, spec["low"], spec["high"]),
    "categorical": _suggest_categorical,
}


def load_space(path: Path) -> dict[str, dict]:
    """Reads a search space: ``name: {type: float|int|categorical, low, high, log, choices}``."""
    space = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, spec in space.items():
        if spec.get("type") not in _SUGGEST:
            raise ValueError(f"{path}: {name}: type must be one of {', '.join(_SUGGEST)}, got {spec.get('type')!r}")
    return space


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict:
    """Samples one value per search-space entry."""
    return {name: _SUGGEST[spec["type"]](trial, name, spec) for name, spec in space.items()}


class PruningCallback(TrainerCallback):
    """Reports the selection score to Optuna each epoch; prunes laggards and trials past the deadline."""

    def __init__(self, trial: optuna.Trial, deadline: float, metric: str):
        self.trial = trial
        self.deadline = deadline
        self.metric = f"eval_{metric}"

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        key = self.metric
        if key not in (metrics or {}):
            return
        epoch = round(state.epoch)
        self.trial.report(metrics[key], step=epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_BY, "median")
            raise optuna.TrialPruned(f"{key} {metrics[key]:.4f} at epoch {epoch} is below the median")
        if time.time() > self.deadline:
            self.trial.set_user_attr(PRUNED_BY, "deadline")  # cut short by the clock, not judged
            raise optuna.TrialPruned("stopped at the study's deadline")


def objective_function(base: dict, space: dict[str, dict], output_root: Path, deadline: float, keep_packages: int = 0):
    """The Optuna objective: fine-tune with sampled values, return the selected epoch's validation metric."""
    from training.train import fine_tune, save_model_package, write_run_record

    def objective(trial: optuna.Trial) -> float:
        values = {**base, **suggest(trial, space)}
        output_dir = output_root / f"trial-{trial.number}"
        values.update(output_dir=str(output_dir), save_to_store=False, export_onnx=False, disable_tqdm=True)
        arguments = arguments_from_dict(values)
        output_dir.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in values.items() if k != "output_dir"}
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        callback = PruningCallback(trial, deadline, SELECTION)
        try:
            result = fine_tune(arguments, callbacks=[callback])
        except BaseException:
            shutil.rmtree(output_dir, ignore_errors=True)
            raise
        write_run_record(result, arguments, output_dir)
        for name, metrics in result.metrics.items():
            for key, value in metrics.items():
                trial.set_user_attr(f"{name}_{key}", value)
        trial.set_user_attr("best_epoch", result.best_epoch)
        value = result.selection
        if keep_packages and _among_best(trial.study, value, keep_packages):
            save_model_package(result, arguments, output_dir / "model")
        return value

    return objective


def _among_best(study: optuna.Study, value: float, k: int) -> bool:
    values = sorted((t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), reverse=True)
    return len(values) < k or value > values[k - 1]


def _worker(
    study_name: str,
    storage: str,
    base: dict,
    space: dict,
    output_root: str,
    n_trials: int,
    deadline: float,
    keep_packages: int = 0,
) -> None:
    configure_logging()
    study = optuna.load_study(study_name=study_name, storage=study_storage(storage))
    study.optimize(
        objective_function(base, space, Path(output_root), deadline, keep_packages),
        timeout=max(0.0, deadline - time.time()),
        callbacks=[MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
        catch=(RuntimeError,),  # e.g. CUDA out of memory in one trial: record it, continue
    )


def study_storage(url: str) -> optuna.storages.RDBStorage:
    """A study's storage: several worker processes write to one SQLite file, so each waits for its lock."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})


def write_report(study: optuna.Study, base: dict, study_dir: Path) -> Path:
    """Writes ``trials.csv``, ``best.yaml`` and ``report.md`` (best trials, parameter importances)."""
    frame = study.trials_dataframe()
    frame.to_csv(study_dir / "trials.csv", index=False)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name} has no complete trial yet")
    best = study.best_trial
    best_values = {**base, **{k: _decode(v) for k, v in best.params.items()}}
    metric = f"selection score ({best_values.get('selection_metric', 'balanced_pearson')})"
    (study_dir / "best.yaml").write_text(
        yaml.safe_dump(best_values, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as error:  # too few trials or no variation
        importances = {}
        logger.warning("parameter importances not computed: %s", error)
    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in TrialState}
    cut = sum(t.user_attrs.get(PRUNED_BY) == "deadline" for t in study.trials)  # by the clock, not their scores
    states = ", ".join(
        f"{n} {s}" + (f" ({cut} at a deadline)" if s == "pruned" and cut else "") for s, n in counts.items() if n
    )
    top = sorted(complete, key=lambda t: t.value, reverse=True)[:15]
    names = list(best.params)
    shown = (
        "validation_balanced_pearson",
        "validation_pearson",
        "validation_korsts_train_pearson",
        "validation_random_pearson",
        "dev_pearson",
        "dev_f1",
        "korsts_dev_pearson",
    )
    shown = [key for key in shown if any(key in t.user_attrs for t in top)]
    rows = [
        f"| trial | {metric} | " + " | ".join(shown) + " | best epoch | " + " | ".join(names) + " |",
        "|---:|---:|" + "---:|" * len(shown) + "---:|" + "---|" * len(names),
    ]
    for t in top:
        attrs = t.user_attrs
        rows.append(
            f"| {t.number} | {t.value:.4f} | "
            + " | ".join(f"{attrs.get(key, float('nan')):.4f}" for key in shown)
            + f" | {attrs.get('best_epoch')} | "
            + " | ".join(_short(t.params.get(n)) for n in names)
            + " |"
        )
    importance_rows = "\n".join(f"| {name} | {value:.3f} |" for name, value in importances.items())
    report = f"""# Hyperparameter search: {study.study_name}

Trials: {states}. Objective: {metric}
(best epoch), higher is better. Dev metrics are recorded for reference and never optimised.

## Best trial: #{best.number}, {metric} {best.value:.4f}

```yaml
{yaml.safe_dump({k: _decode(v) for k, v in best.params.items()}, sort_keys=False).strip()}
```

## Top trials

{chr(10).join(rows)}

## Parameter importances (fANOVA)

| parameter | importance |
|---|---:|
{importance_rows}
"""
    path = study_dir / "report.md"
    path.write_text(report, encoding="utf-8")
    return path


def _decode(value):
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def _short(value) -> str:
    value = _decode(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "+".join(Path(v).stem for v in value) or "none"
    return str(value)


def fail_interrupted_trials(study: optuna.Study) -> None:
    """Marks trials left RUNNING by a stopped study as failed, so a resumed study neither counts nor waits on them."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        logger.warning("trial %d was left running by an interrupted study: marked failed", trial.number)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="base training config (YAML)")
    parser.add_argument("--space", type=Path, required=True, help="search space (YAML)")
    parser.add_argument("--study-name", help="default: the config's file name")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/tune"), help="study folder parent")
    parser.add_argument("--n-trials", type=int, default=40, help="finished (complete or pruned) trials to reach")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds; running trials are pruned after it")
    parser.add_argument("--workers", type=int, default=1, help="trials run at once (processes)")
    parser.add_argument("--keep-packages", type=int, default=0, help="trials among the K best so far keep a package")
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report of a study")
    args = parser.parse_args(argv)

    study_name = args.study_name or args.config.stem
    study_dir = args.output_dir / study_name
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(study_dir / 'study.db').resolve()}"
    base = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    if not args.report_only:  # a report reads the study alone
        try:
            require_base_model(base["model_name_or_path"])
        except BaseModelUnavailable as error:
            raise SystemExit(f"error: {error}") from None
    study = optuna.create_study(
        study_name=study_name,
        storage=study_storage(storage),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=max(8, args.workers)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=max(4, args.workers), n_warmup_steps=1),
    )
    if not args.report_only:
        fail_interrupted_trials(study)
        space = load_space(args.space)
        deadline = time.time() + args.timeout
        logger.info(
            "study %s in %s: %d workers until %d trials or %.0f s",
            study_name,
            storage,
            args.workers,
            args.n_trials,
            args.timeout,
        )
        worker_args = (
            study_name,
            storage,
            base,
            space,
            str(study_dir / "trials"),
            args.n_trials,
            deadline,
            args.keep_packages,
        )
        if args.workers == 1:
            _worker(*worker_args)
        else:
            context = multiprocessing.get_context("spawn")
            processes = [context.Process(target=_worker, args=worker_args) for _ in range(args.workers)]

            def stop_workers(signum, frame):
                for process in processes:
                    process.terminate()
                raise SystemExit(f"stopped by signal {signum}; the study resumes from {storage}")

            signal.signal(signal.SIGTERM, stop_workers)
            for process in processes:
                process.start()
                time.sleep(2)  # stagger start-up (model loading, CUDA context)
            for process in processes:
                process.join()
    print(write_report(study, base, study_dir))


if __name__ == "__main__":
    main()
