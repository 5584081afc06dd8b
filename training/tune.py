"""Hyperparameter search with Optuna: TPE sampling, median pruning, SQLite storage.

    python -m training.tune --config training/configs/me5-small-ko.yaml \
        --space training/configs/search/me5-small-ko.yaml --workers 4 --n-trials 40 --timeout 3600

Each trial fine-tunes with the base config plus the sampled values and reports validation
Pearson after every epoch; the median pruner stops trials that fall behind. Selection is on
the validation split of the training file only (dev metrics are recorded, never optimised).
Workers are processes sharing one SQLite study, so several trials run on one GPU at once and
an interrupted study resumes where it stopped. The report (``report.md``, ``trials.csv``,
``best.yaml``: the base config with the best trial's values) is written to the study folder.
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

from models.logs import configure_logging
from training.arguments import SELECTION_METRIC, arguments_from_dict

logger = logging.getLogger("training.tune")

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
    """Reports validation Pearson to Optuna each epoch; prunes laggards and trials past the deadline."""

    def __init__(self, trial: optuna.Trial, deadline: float):
        self.trial = trial
        self.deadline = deadline

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        key = f"eval_{SELECTION_METRIC}"
        if key not in (metrics or {}):
            return
        epoch = round(state.epoch)
        self.trial.report(metrics[key], step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation Pearson {metrics[key]:.4f} at epoch {epoch} is below the median")
        if time.time() > self.deadline:
            raise optuna.TrialPruned("stopped at the study's deadline")


def objective_function(base: dict, space: dict[str, dict], output_root: Path, deadline: float):
    """The Optuna objective: fine-tune with sampled values, return the best validation Pearson."""
    from training.train import fine_tune

    def objective(trial: optuna.Trial) -> float:
        values = {**base, **suggest(trial, space)}
        output_dir = output_root / f"trial-{trial.number}"
        values.update(
            output_dir=str(output_dir),
            save_to_store=False,
            export_onnx=False,
            save_only_model=True,
            save_total_limit=1,
            disable_tqdm=True,
        )
        try:
            result = fine_tune(arguments_from_dict(values), callbacks=[PruningCallback(trial, deadline)])
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)
        for name, metrics in result.metrics.items():
            for metric, value in metrics.items():
                trial.set_user_attr(f"{name}_{metric}", value)
        trial.set_user_attr("best_epoch", result.best_epoch)
        return result.metrics["validation"]["pearson"]

    return objective


def _worker(
    study_name: str, storage: str, base: dict, space: dict, output_root: str, n_trials: int, deadline: float
) -> None:
    configure_logging()
    study = optuna.load_study(study_name=study_name, storage=_storage(storage))
    study.optimize(
        objective_function(base, space, Path(output_root), deadline),
        timeout=max(0.0, deadline - time.time()),
        callbacks=[MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
        catch=(RuntimeError,),  # e.g. CUDA out of memory in one trial: record it, continue
    )


def _storage(url: str) -> optuna.storages.RDBStorage:
    # several worker processes write to one SQLite file: wait for its lock instead of failing
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
    (study_dir / "best.yaml").write_text(
        yaml.safe_dump(best_values, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as error:  # too few trials or no variation
        importances = {}
        logger.warning("parameter importances not computed: %s", error)
    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in TrialState}
    top = sorted(complete, key=lambda t: t.value, reverse=True)[:10]
    names = list(best.params)
    rows = [
        "| trial | validation Pearson | dev Pearson | dev F1 | best epoch | " + " | ".join(names) + " |",
        "|---:|---:|---:|---:|---:|" + "---|" * len(names),
    ]
    for t in top:
        attrs = t.user_attrs
        rows.append(
            f"| {t.number} | {t.value:.4f} | {attrs.get('dev_pearson', float('nan')):.4f} | "
            f"{attrs.get('dev_f1', float('nan')):.4f} | {attrs.get('best_epoch')} | "
            + " | ".join(_short(t.params.get(n)) for n in names)
            + " |"
        )
    importance_rows = "\n".join(f"| {name} | {value:.3f} |" for name, value in importances.items())
    report = f"""# Hyperparameter search: {study.study_name}

Trials: {", ".join(f"{n} {s}" for s, n in counts.items() if n)}. Objective: validation Pearson
(best epoch), higher is better. Dev metrics are recorded for reference and never optimised.

## Best trial: #{best.number}, validation Pearson {best.value:.4f}

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
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report of a study")
    args = parser.parse_args(argv)

    study_name = args.study_name or args.config.stem
    study_dir = args.output_dir / study_name
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(study_dir / 'study.db').resolve()}"
    base = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    study = optuna.create_study(
        study_name=study_name,
        storage=_storage(storage),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=max(8, args.workers)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=max(4, args.workers), n_warmup_steps=1),
    )
    if not args.report_only:
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
        worker_args = (study_name, storage, base, space, str(study_dir / "trials"), args.n_trials, deadline)
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
