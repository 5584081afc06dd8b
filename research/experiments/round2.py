"""Round 2 (issue 10) on one GPU inside a hard time limit; run it through ``round2.sh``.

Three phases, every run sharing the GPU (several processes; CUDA MPS when round2.sh could start it):

A (to 48% of the limit): an Optuna study (grouped split, pruning; it goes on through B), fixed
  candidates (the shipped recipe, KorSTS mixed in, KorSTS first then KLUE-STS, hard negatives
  from training.augment, R-Drop, a longer schedule at a lower rate) and the shipped recipe's
  k-fold models (teachers);
B (to 82%): the best recipe so far (by selection score) retrained on all non-validation pairs
  with several seeds, k-fold cross-validation of the best non-reference recipe, and a student
  (the best recipe again) distilled from the teachers: out-of-fold soft labels, hard negatives
  and re-paired training sentences labelled by the teachers;
C: a weight soup of the seeds, the final choice by selection score only, its calibration, and
  the reports: the validation schemes against dev (research.selection), the study, the
  candidates with per-source and contrast-set figures, and summary.md.

Every training run stops itself at its phase's end (``stop_at``: the best epoch so far is
kept), so whatever has finished by the hard stop is reported. Dev and KorSTS dev are reported,
never used to choose.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from models.package import read_metadata
from training.logs import configure_logging

logger = logging.getLogger("research.round2")

STUDY = "round2"
KORSTS_TRAIN = "data/korsts/korsts_train.jsonl"
CONTRAST = "data/contrast/ko_contrast.jsonl"


@dataclass
class Profile:
    """How much of everything a run of the driver starts."""

    name: str
    study_workers: int
    cv_folds: int
    seeds: int
    bootstrap: int
    repair: int
    space: str
    candidates: tuple[str, ...]
    overrides: dict = field(default_factory=dict)  # applied to every recipe
    augment_per_kind: int = 500


CANDIDATES = ("reference", "korsts_mixed", "korsts_first", "hard_negatives", "rdrop", "long_low_lr")
PROFILES = {
    "gpu": Profile(
        name="gpu",
        study_workers=6,
        cv_folds=4,
        seeds=3,
        bootstrap=500,
        repair=4000,
        space="research/configs/search/me5-small-ko-r2.yaml",
        candidates=CANDIDATES,
    ),
    # a CPU dry run of every step with the tiny random encoder (make tiny-model)
    "tiny": Profile(
        name="tiny",
        study_workers=1,
        cv_folds=2,
        seeds=2,
        bootstrap=100,
        repair=100,
        space="training/configs/search/tiny.yaml",
        candidates=("reference", "korsts_first", "hard_negatives"),
        overrides={
            "max_train_samples": 200,
            "num_train_epochs": 2,
            "max_length": 64,
            "learning_rate": 1.0e-3,
            "per_device_eval_batch_size": 256,
            "symmetric": False,
            "bf16": False,
        },
        augment_per_kind=50,
    ),
}


class Jobs:
    """Background processes, each in its own process group, with a log file and a record of its life."""

    def __init__(self, out: Path, env: dict[str, str]):
        self.out = out
        self.env = env
        self.running: dict[str, subprocess.Popen] = {}
        self.timeline: list[dict] = []
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str] | str) -> None:
        log = open(self.out / "logs" / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        shell = isinstance(command, str)
        process = subprocess.Popen(
            command, shell=shell, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        process.log = log
        self.running[name] = process
        self.timeline.append({"job": name, "started": round(time.time() - START, 1), "command": command})
        logger.info("started %s", name)

    def poll(self) -> list[str]:
        """Names of the jobs that ended since the last poll."""
        ended = []
        for name, process in list(self.running.items()):
            if process.poll() is not None:
                self._ended(name, process)
                ended.append(name)
        return ended

    def _ended(self, name: str, process: subprocess.Popen) -> None:
        process.log.close()
        del self.running[name]
        entry = next(e for e in reversed(self.timeline) if e["job"] == name)
        entry.update(ended=round(time.time() - START, 1), returncode=process.returncode)
        logger.info("%s ended (exit %s) at %.0f s", name, process.returncode, entry["ended"])

    def wait(self, deadline: float, on_end=None, keep: tuple[str, ...] = ()) -> None:
        """Waits for every job but ``keep``; stops those still running at ``deadline`` (absolute time)."""
        while set(self.running) - set(keep) and time.time() < deadline:
            for name in self.poll():
                if on_end:
                    on_end(name)
            time.sleep(1.0)
        self.stop_all(keep=keep)

    def stop_all(self, grace: float = 15.0, keep: tuple[str, ...] = ()) -> None:
        """SIGTERM to every running job but ``keep`` (its process group), SIGKILL after ``grace`` seconds."""
        stopping = {name: process for name, process in self.running.items() if name not in keep}
        if not stopping:
            return
        logger.warning("stopping %s", ", ".join(stopping))
        for process in stopping.values():
            _signal_group(process, signal.SIGTERM)
        until = time.time() + grace
        while set(stopping) & set(self.running) and time.time() < until:
            self.poll()
            time.sleep(0.5)
        for name, process in stopping.items():
            if name in self.running:
                _signal_group(process, signal.SIGKILL)
                process.wait()
                self._ended(name, process)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


START = time.time()


class Round2:
    """The driver: recipes, phases, choice and reports in ``out``."""

    def __init__(self, out: Path, hard_stop: float, base_config: Path, base_model: str | None, profile: Profile):
        self.out = out
        self.hard_stop = START + hard_stop
        self.limit = hard_stop
        self.profile = profile
        self.python = sys.executable
        self.base = yaml.safe_load(base_config.read_text(encoding="utf-8"))
        self.base.update(profile.overrides)
        if base_model:
            self.base["model_name_or_path"] = base_model
        self._check_eval_files()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        env["PYTHONPATH"] = str(Path.cwd()) + os.pathsep + env.get("PYTHONPATH", "")
        self.jobs = Jobs(out, env)
        self.hard_negatives = os.environ.get("HARD_NEGATIVES") or str(out / "data/hard_negatives.jsonl")
        self.notes: list[str] = []

    def at(self, share: float) -> float:
        """Absolute time at ``share`` of the hard limit."""
        return START + share * self.limit

    def _check_eval_files(self) -> None:
        from training.data import read_pairs

        keep = []
        for path in self.base.get("extra_eval_files", []):
            try:
                read_pairs(path)
                keep.append(path)
            except Exception as error:  # noqa: BLE001 (a helper's file that is not there yet)
                logger.warning("%s left out of the evaluation sets: %s", path, error)
        self.base["extra_eval_files"] = keep

    # recipes -------------------------------------------------------------------------------------

    def recipe(self, name: str, **changes) -> Path:
        """Writes ``recipes/<name>.yaml``: the base config with ``changes``."""
        values = {**self.base, **changes}
        path = self.out / "recipes" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def train_command(self, recipe: Path, output_dir: Path, stop_at: float, *flags: str) -> list[str]:
        return [
            self.python,
            "-m",
            "training.train",
            "--config",
            str(recipe),
            "--output_dir",
            str(output_dir),
            "--stop_at",
            f"{stop_at:.0f}",
            "--disable_tqdm",
            "true",
            *flags,
        ]

    def candidate_recipes(self) -> dict[str, dict]:
        extra = list(self.base.get("extra_train_files", []))
        recipes = {
            "reference": {},
            "korsts_mixed": {"extra_train_files": [*extra, KORSTS_TRAIN]},
            "hard_negatives": {"extra_train_files": [*extra, self.hard_negatives]},
            "rdrop": {"rdrop_alpha": 5.0},
            "long_low_lr": {
                "num_train_epochs": int(self.base["num_train_epochs"]) + 4,
                "learning_rate": float(self.base["learning_rate"]) * 0.6,
            },
        }
        return {name: changes for name, changes in recipes.items() if name in self.profile.candidates}

    # phases --------------------------------------------------------------------------------------

    def phase_a(self) -> None:
        end = self.at(0.48)
        stop_at = end - 0.03 * self.limit
        profile = self.profile
        if not os.environ.get("HARD_NEGATIVES") and Path("training/augment").is_dir():
            self.jobs.start(
                "augment",
                [
                    self.python,
                    "-m",
                    "training.augment",
                    self.base["train_file"],
                    self.hard_negatives,
                    "--per-kind",
                    str(profile.augment_per_kind),
                ],
            )
        study_base = self.recipe("study-base")
        self.jobs.start(
            "study",
            [
                self.python,
                "-m",
                "training.tune",
                "--config",
                str(study_base),
                "--space",
                profile.space,
                "--study-name",
                STUDY,
                "--output-dir",
                str(self.out / "study"),
                "--workers",
                str(profile.study_workers),
                "--n-trials",
                "500",
                "--timeout",  # the study goes on through phase B, on the cores phase B leaves free
                f"{self.at(0.82) - 0.03 * self.limit - time.time():.0f}",
                "--keep-packages",
                "3",
            ],
        )
        waiting = {}
        for name, changes in self.candidate_recipes().items():
            command = self.train_command(self.recipe(name, **changes), self.out / "runs" / name, stop_at)
            if name == "hard_negatives" and "augment" in self.jobs.running:
                waiting["augment"] = (name, command)
            elif name != "hard_negatives" or Path(self.hard_negatives).is_file():
                self.jobs.start(name, command)
        if "korsts_first" in profile.candidates:
            self.start_korsts_first(stop_at)
        reference = self.recipe("reference-cv", random_holdout_fraction=0.0, cv_folds=profile.cv_folds)
        for fold in range(profile.cv_folds):
            output = self.out / "cv" / "reference" / f"fold-{fold}"
            self.jobs.start(
                f"cv-reference-{fold}", self.train_command(reference, output, stop_at, "--cv_fold", str(fold))
            )

        def on_end(name: str) -> None:
            if name in waiting and Path(self.hard_negatives).is_file():
                self.jobs.start(*waiting.pop(name))

        self.jobs.wait(end, on_end, keep=("study",))
        for name, _ in waiting.values():
            self.notes.append(f"{name} not run: no hard negatives (see logs/augment.log)")

    def start_korsts_first(self, stop_at: float) -> None:
        """KorSTS train alone (a short schedule), then the base recipe from that model: one chained job."""
        stage1 = self.recipe(
            "korsts_first-stage1",
            train_file=KORSTS_TRAIN,
            extra_train_files=[],
            extra_validation_files=[],
            selection_extra_weight=0.0,
            random_holdout_fraction=0.0,
            num_train_epochs=max(1, int(self.base["num_train_epochs"]) // 3),
        )
        stage1_dir = self.out / "runs" / "korsts_first-stage1"
        stage1_stop = time.time() + 0.35 * (stop_at - time.time())
        stage2 = self.recipe("korsts_first", model_name_or_path=str(stage1_dir / "model"))
        first = self.train_command(stage1, stage1_dir, stage1_stop)
        second = self.train_command(stage2, self.out / "runs" / "korsts_first", stop_at)
        self.jobs.start("korsts_first", " ".join(map(_quote, first)) + " && " + " ".join(map(_quote, second)))

    def phase_b(self) -> None:
        end = self.at(0.82)
        stop_at = end - 0.03 * self.limit
        profile = self.profile
        ranked = self.ranked_runs()
        if not ranked:
            self.notes.append("phase B skipped: no run finished in phase A")
            self.jobs.wait(end)  # the study goes on
            return
        best = ranked[0]
        self.notes.append(f"best recipe after phase A: {best['name']} (selection score {best['selection']:.4f})")
        best_config = yaml.safe_load(Path(best["config"]).read_text(encoding="utf-8"))
        best_config.pop("output_dir", None)
        seeds = self.recipe("final-seeds", **{**best_config, "random_holdout_fraction": 0.0})
        for seed in range(1, profile.seeds + 1):
            flags = ("--seed", str(seed), "--data_seed", str(seed))
            self.jobs.start(
                f"seed-{seed}", self.train_command(seeds, self.out / "final" / f"seed-{seed}", stop_at, *flags)
            )
        cv_target = next((r for r in ranked if r["name"] != "reference"), None)  # the reference has its folds
        if cv_target is not None:
            config = yaml.safe_load(Path(cv_target["config"]).read_text(encoding="utf-8"))
            config.pop("output_dir", None)
            name = cv_target["name"].replace("/", "-")
            recipe = self.recipe(
                f"{name}-cv", **{**config, "random_holdout_fraction": 0.0, "cv_folds": profile.cv_folds}
            )
            for fold in range(profile.cv_folds):
                output = self.out / "cv" / name / f"fold-{fold}"
                self.jobs.start(
                    f"cv-{name}-{fold}", self.train_command(recipe, output, stop_at, "--cv_fold", str(fold))
                )
        teachers = sorted(p.parent for p in (self.out / "cv" / "reference").glob("fold-*/run.json"))
        if len(teachers) >= 2:
            soft = self.out / "data" / "soft_labels.jsonl"
            augment = ["--augment", self.hard_negatives] if Path(self.hard_negatives).is_file() else []
            distill = [
                self.python,
                "-m",
                "training.distill",
                "--teachers",
                *map(str, teachers),
                "--output",
                str(soft),
                "--repair",
                str(profile.repair),
                *augment,
            ]
            # the best recipe on the teachers' labels; no random holdout: the teachers' folds cover what it leaves
            student = self.recipe(
                "student", **{**best_config, "soft_label_file": str(soft), "random_holdout_fraction": 0.0}
            )
            train = self.train_command(student, self.out / "runs" / "student", stop_at)
            self.jobs.start("student", " ".join(map(_quote, distill)) + " && " + " ".join(map(_quote, train)))
        else:
            self.notes.append(f"no student: {len(teachers)} teacher fold(s) finished")
        self.jobs.wait(end)

    def phase_c(self) -> None:
        """Soup, final choice, then the reports, most important first; each step only if time is left."""
        seeds = sorted(p.parent for p in (self.out / "final").glob("seed-*/model/metadata.json"))
        if len(seeds) >= 2:
            from research.soup import make_soup

            def soup() -> None:
                kept = make_soup(self.out / "final" / "soup", seeds)["soup"]["kept"]
                self.notes.append(f"soup of {len(seeds)} seeds: {kept} kept")

            self.step("soup", soup, need=20)
        self.step("choose", self.choose_final, need=5)
        final = self.out / "final" / "model"
        if final.is_dir():
            from research.calibrate import calibrate_package

            self.step("calibrate", lambda: calibrate_package(final), need=15)
        self.step("selection", self.selection_report, need=10)
        if final.is_dir() and Path(CONTRAST).is_file():
            self.step("contrast", self.contrast_report, need=10)
        self.step("compare", self.compare_report, need=3)
        self.step("study report", self.study_report, need=3)

    def step(self, name: str, function, need: float) -> None:
        """Runs ``function`` if ``need`` seconds are left before the hard stop; notes failures; rewrites summary.md."""
        left = self.hard_stop - time.time()
        if left < need:
            self.notes.append(f"{name} skipped: {left:.0f} s left")
            return
        started = time.time()
        try:
            function()
            entry = {"job": name, "started": round(started - START, 1), "ended": round(time.time() - START, 1)}
            self.jobs.timeline.append({**entry, "returncode": 0})
        except Exception as error:  # noqa: BLE001 (report what finished, whatever failed)
            logger.exception("%s failed", name)
            self.notes.append(f"{name} failed: {error!r}")
        self.write_summary()

    def choose_final(self) -> None:
        packages = self.packages()
        if not packages:
            self.notes.append("no model package finished: nothing to choose")
            return
        scores = {p: read_metadata(p)["selection"]["score"] for p in packages}
        chosen = max(packages, key=scores.get)
        final = self.out / "final" / "model"
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(chosen, final)
        self.notes.append(f"final model: {chosen.relative_to(self.out)} (selection score {scores[chosen]:.4f})")
        self.notes.append(f"export it for serving: python -m training.export {final}")

    def selection_report(self) -> None:
        from research.selection import load_runs, report, run_rows

        runs = load_runs([p for p in self.run_dirs() if "cv" not in p.relative_to(self.out).parts])
        cv = [p for p in sorted((self.out / "cv").glob("*")) if p.is_dir()]
        (self.out / "selection.md").write_text(report(runs, self.profile.bootstrap, cv), encoding="utf-8")
        if runs:
            import pandas as pd

            pd.DataFrame(run_rows(runs)).to_csv(self.out / "selection_runs.csv", index=False)

    def contrast_report(self) -> None:
        from models.scorer import load_scorer
        from training.contrast import contrast_accuracy, format_table, read_contrast
        from training.evaluate import score_frame

        frame = read_contrast(CONTRAST)
        results = contrast_accuracy(score_frame(load_scorer(self.out / "final" / "model", "torch"), frame), frame)
        (self.out / "contrast.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        (self.out / "contrast.md").write_text(format_table(results) + "\n", encoding="utf-8")

    def compare_report(self) -> None:
        from training.compare import comparison_table, source_comparison_table

        packages = self.packages()
        if packages:
            tables = [
                comparison_table(packages),
                *(source_comparison_table(packages, n) for n in ("validation", "dev")),
            ]
            (self.out / "candidates.md").write_text("\n\n".join(tables) + "\n", encoding="utf-8")
        self.write_candidates_csv(packages)

    def study_report(self) -> None:
        import optuna

        from training.tune import study_storage, write_report

        database = self.out / "study" / STUDY / "study.db"
        if database.is_file():
            study = optuna.load_study(study_name=STUDY, storage=study_storage(f"sqlite:///{database}"))
            base = yaml.safe_load((self.out / "recipes" / "study-base.yaml").read_text(encoding="utf-8"))
            write_report(study, base, database.parent)

    # results -------------------------------------------------------------------------------------

    def run_dirs(self) -> list[Path]:
        """Every finished run folder (run.json): candidates, study trials, folds, seeds."""
        return sorted(p.parent for p in self.out.glob("**/run.json") if "recipes" not in p.parts)

    def ranked_runs(self) -> list[dict]:
        """Phase-A runs (candidates and study trials) by selection score, best first."""
        found = []
        for folder in self.run_dirs():
            if "cv" in folder.relative_to(self.out).parts:
                continue
            record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            config = folder / "config.yaml" if (folder / "config.yaml").is_file() else None
            if config is None:
                config = self.out / "recipes" / f"{folder.name}.yaml"
            if record.get("selection") is None or not config.is_file() or "stage1" in folder.name:
                continue
            name = str(folder.relative_to(self.out))
            found.append({"name": folder.name, "path": name, "selection": record["selection"], "config": config})
        return sorted(found, key=lambda r: -r["selection"])

    def packages(self) -> list[Path]:
        """Every finished model package that may become the final model."""
        found = []
        for metadata in self.out.glob("**/model/metadata.json"):
            package = metadata.parent
            parts = package.relative_to(self.out).parts
            if parts[0] in ("cv",) or "stage1" in str(package) or package == self.out / "final" / "model":
                continue
            if "selection" in read_metadata(package):
                found.append(package)
        return sorted(found)

    def write_candidates_csv(self, packages: list[Path]) -> None:
        contrast = _contrast_reader()
        rows = []
        for package in [*packages, self.out / "final" / "model"]:
            if not (package / "metadata.json").is_file():
                continue
            metadata = read_metadata(package)
            row = {
                "package": str(package.relative_to(self.out)),
                "selection": metadata.get("selection", {}).get("score"),
            }
            for set_name, metrics in metadata["metrics"].items():
                for key in ("pearson", "balanced_pearson", "f1"):
                    if key in metrics:
                        row[f"{set_name}_{key}"] = round(metrics[key], 5)
            scores = package.parent / "scores.npz"
            if contrast is not None and scores.is_file():
                arrays = np.load(scores)
                if "ko_contrast.scores" in arrays:
                    for category, result in contrast(arrays["ko_contrast.scores"]).items():
                        row[f"contrast_{category}"] = round(result["accuracy"], 4)
            rows.append(row)
        if rows:
            import pandas as pd

            pd.DataFrame(rows).to_csv(self.out / "candidates.csv", index=False)

    def write_summary(self) -> None:
        def section(title: str, path: Path) -> str:
            return f"\n## {title}\n\n" + (path.read_text(encoding="utf-8") if path.is_file() else "(not produced)\n")

        final = self.out / "final" / "model"
        final_text = "(no final model)\n"
        if (final / "metadata.json").is_file():
            from training.report import calibration_table, metrics_table, source_table

            metadata = read_metadata(final)
            final_text = (
                f"`final/model` (PyTorch, float32 weights; served scores)\n\n{metrics_table(metadata['metrics'])}\n"
            )
            if metadata.get("calibration"):
                record = metadata["calibration"]
                final_text += f"\nCalibration, fitted on {record['fitted_on']}:\n\n{calibration_table(record)}\n"
            by_source = metadata.get("metrics_by_source", {})
            shown = {name: by_source[name] for name in ("validation", "dev", "korsts_dev") if name in by_source}
            if shown:
                final_text += "\nPer source:\n\n" + source_table(shown) + "\n"
        study = self.out / "study" / STUDY / "report.md"
        timeline = "\n".join(
            f"| {e['job']} | {e['started']} | {e.get('ended', '')} | {e.get('returncode', 'running')} |"
            for e in self.jobs.timeline
        )
        text = (
            f"# Round 2 ({self.profile.name} profile): {time.time() - START:.0f} s of a {self.limit:.0f} s limit\n\n"
            + "\n".join(f"- {note}" for note in self.notes)
            + "\n\n## Final model\n\n"
            + final_text
            + section("Contrast set (final model, PyTorch)", self.out / "contrast.md")
            + section("Validation schemes against dev", self.out / "selection.md")
            + section(
                "Candidates (PyTorch; candidates.csv adds contrast-set accuracy per category)",
                self.out / "candidates.md",
            )
            + section("Study", study)
            + "\n## Timeline (seconds from start)\n\n| job | started | ended | exit |\n|---|---:|---:|---|\n"
            + timeline
            + "\n"
        )
        (self.out / "summary.md").write_text(text, encoding="utf-8")
        (self.out / "timeline.json").write_text(json.dumps(self.jobs.timeline, indent=1), encoding="utf-8")


def _contrast_reader():
    """A function scores -> per-category accuracy on the contrast set, or None without training.contrast."""
    try:
        from training.contrast import contrast_accuracy, read_contrast

        frame = read_contrast(CONTRAST)
    except Exception:  # noqa: BLE001 (another helper's module; optional)
        return None
    return lambda scores: contrast_accuracy(scores, frame)


def _quote(argument: str) -> str:
    import shlex

    return shlex.quote(argument)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--hard-stop", type=float, default=540, help="seconds from start when everything must be written"
    )
    parser.add_argument("--config", type=Path, default=Path("research/configs/me5-small-ko-r2.yaml"))
    parser.add_argument("--base-model", default=os.environ.get("BASE_MODEL"), help="encoder folder (default: config's)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=os.environ.get("PROFILE", "gpu"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger().addHandler(logging.FileHandler(args.out / "driver.log"))
    profile = PROFILES[args.profile]
    for field_name in ("study_workers", "cv_folds", "seeds", "bootstrap", "repair"):  # e.g. STUDY_WORKERS=8
        if os.environ.get(field_name.upper()):
            setattr(profile, field_name, int(os.environ[field_name.upper()]))
    driver = Round2(args.out, args.hard_stop, args.config, args.base_model, profile)

    def stop(signum, frame):
        driver.jobs.stop_all(grace=5)
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    for phase in (driver.phase_a, driver.phase_b, driver.phase_c):
        try:
            phase()
        except Exception as error:  # noqa: BLE001 (report what finished, whatever failed)
            logger.exception("%s failed", phase.__name__)
            driver.notes.append(f"{phase.__name__} failed: {error!r}")
        driver.jobs.stop_all(keep=("study",) if phase == driver.phase_a else ())  # only the study outlives A
        driver.write_summary()
    logger.info("done in %.0f s: %s", time.time() - START, args.out / "summary.md")


if __name__ == "__main__":
    main()
