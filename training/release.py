"""Turn an exported model package into the shipped default model (``models/default``).

    python -m training.release outputs/final/best --notes research/experiments/default-model.md

Keeps what CPU serving needs (config, tokenizer, the int8 ONNX export), the metadata and the
training report, and writes ``MODEL_CARD.md`` from the metadata, so that every figure on the
card is the one measured by ``training.export``. Refuses a package without int8 metrics or one
that would exceed the size budget.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from tokenizers import Tokenizer

from models.backends import ONNX_INT8, ONNX_SUBDIR
from models.package import METADATA_FILE, REPORT_DIR, base_model_name, read_metadata
from models.scoring import ScoreSettings
from training.contrast import MINIMAL_PAIR_TITLES, format_minimal_pair_table, format_table
from training.logs import configure_logging
from training.report import calibration_table

ORDER_WORDS = {
    "average": "both sentence orders are scored and averaged",
    "canonical": "each pair is scored once, the shorter sentence first (swapping them gives the same score)",
    "none": "pairs are scored as given",
}

logger = logging.getLogger("training.release")

DEFAULT_DIR = Path("models/default")
MAX_BYTES = 30_000_000
KEEP = ("config.json", "tokenizer_config.json", "special_tokens_map.json", METADATA_FILE)  # + tokenizer.json
TABLE_HEADER = (
    "| model | validation Pearson | validation F1 | KLUE-STS dev Pearson | KLUE-STS dev F1 "
    "| KorSTS dev Pearson | KorSTS dev F1 |\n|---|---:|---:|---:|---:|---:|---:|"
)


def _row(name: str, metrics: dict[str, dict[str, float]]) -> str:
    cells = []
    for set_name in ("validation", "dev", "korsts_dev"):
        m = metrics.get(set_name)
        cells += ["", ""] if m is None else [f"{m['pearson']:.4f}", f"{m['f1']:.4f}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def _korsts(onnx: dict) -> str:
    if "korsts_dev" not in onnx["onnx_int8"]:
        return "."
    pairs = ", ".join(
        f"{name} {onnx[key]['korsts_dev']['pearson']:.4f} / {onnx[key]['korsts_dev']['spearman']:.4f}"
        for name, key in (("PyTorch", "torch"), ("int8", "onnx_int8"))
    )
    return f"; its Pearson / Spearman: {pairs}."


def _contrast_text(onnx: dict) -> str:
    if "contrast" not in onnx:
        return ""
    return (
        "\nMeaning, not topic: the served `similar` flag on the contrast set (`data/contrast/`, pairs "
        "written for this project: paraphrases should be similar, the other categories not):\n\n"
        + format_table(onnx["contrast"])
        + "\n"
        + _minimal_pair_text(onnx)
    )


def _minimal_pair_text(onnx: dict) -> str:
    if not onnx.get("minimal_pairs"):
        return ""
    text = (
        "\nMinimal pairs: for one anchor sentence, its meaning-preserving variant must score at least 3.0 and "
        "above its meaning-changing variant, which must score below 3.0 (a model calling nothing, or "
        "everything, similar scores 0; `paraphrase` is the share of preserving pairs scored >= 3.0).\n"
    )
    for name, results in onnx["minimal_pairs"].items():
        text += f"\n{MINIMAL_PAIR_TITLES.get(name, name).capitalize()}:\n\n" + format_minimal_pair_table(results) + "\n"
    return text


def _deltas(by_set: dict[str, float]) -> str:
    return ", ".join(f"{value:.3f} ({name})" for name, value in by_set.items())


def _split_text(hyper: dict) -> str:
    fraction = hyper.get("validation_fraction", 0.1)
    metric = hyper.get("selection_metric", "pearson")
    held = f"{fraction:.0%} (validation) to choose epochs, recipes and merges on its {metric}"
    if hyper.get("split", "random") == "random":
        return f"split at random with seed {hyper['split_seed']}: {1 - fraction:.0%} to train on, {held}."
    return (
        f"split with seed {hyper['split_seed']} so that pairs sharing a sentence or a near-duplicate of one "
        f"(character 3-gram cosine >= {hyper.get('near_duplicate_threshold')}) stay on one side, stratified by "
        f"source and label bin: {1 - fraction:.0%} to train on, {held}."
    )


def _calibration_text(metadata: dict) -> str:
    record = metadata.get("calibration")
    if not record:
        return ""
    return f"""
Scores are calibrated: a strictly increasing map ({record["knots"]} knots, `config.json` `ko_sts.calibration`)
fitted on {record["fitted_on"]} ({record["fit_pairs"]} pairs), applied after both orders are averaged.
Rankings are unchanged; PyTorch metrics without and with it:

{calibration_table(record)}
"""


def _source_text(metadata: dict) -> str:
    by_source = metadata.get("metrics_by_source", {}).get("dev")
    if not by_source:
        return ""
    rows = [f"| {source} | {m['pairs']} | {m['pearson']:.4f} | {m['f1']:.4f} |" for source, m in by_source.items()]
    header = "| KLUE-STS dev source | pairs | Pearson | F1 |\n|---|---:|---:|---:|"
    return f"\nPer source (PyTorch):\n\n{header}\n" + "\n".join(rows) + "\n"


def model_card(metadata: dict, notes: str, size_mb: float) -> str:
    """The model card: what the model is, how it was trained, what it scores and where it fails."""
    onnx, hyper = metadata["onnx"], metadata["hyperparameters"]
    int8_dev = onnx["onnx_int8"]["dev"]
    settings = metadata["score_settings"]
    extra = ", ".join(Path(f["path"]).name for f in metadata["data"].get("extra_train", [])) or "none"
    for soft in metadata["data"].get("soft_labels", []):
        extra += (
            f"; soft labels ({Path(soft['path']).name}, {soft['rows']:,} pairs, sha256 {soft['sha256'][:12]}) "
            'replace the labels of the training pairs they hold and add the rest (see "How it was made")'
        )
    recipe = "\n".join(f"| {k} | {v} |" for k, v in hyper.items())
    return f"""# ko-sts default model: me5-small-ko cross-encoder for KLUE-STS

The model `make serve` puts into the BentoML store when the store has none: a Korean
sentence-pair similarity cross-encoder, served in int8 on the CPU: by OpenVINO by default, by ONNX
Runtime with `KO_STS_BACKEND=onnx` (the metrics below are ONNX Runtime's).

**KLUE-STS dev (int8, as served): Pearson {int8_dev["pearson"]:.4f}, F1 {int8_dev["f1"]:.4f}.**

It stands in for the project's intended default, KoELECTRA-base v3
(`training/configs/koelectra-base-v3.yaml`), wherever the Hugging Face hub is out of reach:
it is small enough ({size_mb:.1f} MB here) to ship inside the repository.

## Model

- Base: `{base_model_name(metadata)}` (trained from `{metadata["base_model"]}`; see "How it was made").
- Head: `{hyper["pooling"]}` pooling, one output; objective `{hyper["objective"]}`
  (score = {"5 * sigmoid(logit)" if settings["activation"] == "sigmoid" else "the raw output"}, clipped to 0-5);
  {ORDER_WORDS[ScoreSettings.from_dict(settings).symmetry]};
  pairs truncated to {settings["max_length"]} tokens.
- Files: `onnx/{ONNX_INT8}` ({onnx["int8"]["scheme"]}; ONNX Runtime's quantisers on the float32
  export, opset {onnx["opset"]}), the tokenizer, `config.json` (score settings under `ko_sts`),
  `metadata.json` (everything below, machine-readable) and `report/` (learning curves, dev scatter).
  On a GPU, `python -m models.store` rebuilds float16 PyTorch weights from the int8 file.

## Data

Trained on KLUE-STS v1.1 train (CC BY-SA 4.0; `data/`), duplicates merged, {_split_text(hyper)}
Extra training data: {extra}. KLUE-STS dev and KorSTS dev were only ever reported, never used to
choose anything.
{_calibration_text(metadata)}
## Metrics

Pearson and F1 (gold and prediction binarised at >= 3.0, KLUE's definition) of the served
scores. The PyTorch row is the checkpoint this export was made from (weights saved in
{metadata["training"]["saved_dtype"]}, computed in float32 on the CPU).

{TABLE_HEADER}
{_row("PyTorch", onnx["torch"])}
{_row("ONNX float32", onnx["onnx_fp32"])}
{_row("ONNX int8 (served)", onnx["onnx_int8"])}
{_source_text(metadata)}{_contrast_text(onnx)}
ONNX float32 against PyTorch: max |score difference| {onnx["parity_max_abs_delta"]:.1e} over
{onnx["parity_pairs"]} pairs. KorSTS dev is out of domain (translated STS-B captions, news, forums){_korsts(onnx)}
Published KLUE-STS dev baselines (Pearson / F1 x100): KLUE-BERT-base 90.85 / 82.84,
KoELECTRA-base 92.46 / 84.84.

## How it was made

{notes.strip()}

Training report: [report/README.md](report/README.md).

| hyperparameter | value |
|---|---|
{recipe}

## Limits

- Korean only: the trimmed vocabulary drops most non-Korean pieces; emoji, rare Hanja and many
  English words become `<unk>` or fragments (see the base model's card).
- Domain: KLUE-STS covers Airbnb reviews, policy news and smart-speaker queries. Scores on other
  text are less reliable (compare the KorSTS column).
- int8 against float32, per pair: largest difference {_deltas(onnx["int8"]["max_abs_delta"])}, 99th
  percentile {_deltas(onnx["int8"]["p99_abs_delta"])} (0-5 scale). A pair's score does not depend on
  the pairs it is batched with (largest change measured: {onnx["int8"]["batch_invariance_max_abs_delta"]:.1e}).
- `similar` is the KLUE threshold (score >= 3.0) on the (calibrated) score, not a probability.
- Scores are a similarity judgement, not an entailment or factuality check.
"""


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _assemble(staging: Path, package_dir: Path, metadata: dict, notes: str) -> None:
    (staging / ONNX_SUBDIR).mkdir(parents=True)
    for name in KEEP:
        if (package_dir / name).is_file():
            shutil.copy2(package_dir / name, staging / name)
    # the same tokenizer without indentation: about 0.5 MB less in every clone
    Tokenizer.from_file(str(package_dir / "tokenizer.json")).save(str(staging / "tokenizer.json"), pretty=False)
    shutil.copy2(package_dir / ONNX_SUBDIR / ONNX_INT8, staging / ONNX_SUBDIR / ONNX_INT8)
    shutil.copytree(package_dir / REPORT_DIR, staging / REPORT_DIR)
    card = staging / "MODEL_CARD.md"
    card.write_text(model_card(metadata, notes, _size(staging) / 1e6), encoding="utf-8")


def release(package_dir: Path, notes: str, target: Path = DEFAULT_DIR) -> Path:
    """Replaces ``target`` with the CPU-serving subset of ``package_dir`` and its model card.

    The release is assembled beside ``target`` and swapped in only once it passes the size check:
    a refused release leaves the current default model in place.
    """
    metadata = read_metadata(package_dir)
    if "onnx_int8" not in metadata.get("onnx", {}):
        raise ValueError(f"{package_dir} has no int8 metrics: run `python -m training.export {package_dir}` first")
    staging = target.with_name(f".{target.name}.release")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        _assemble(staging, package_dir, metadata, notes)
        size = _size(staging)
        if size > MAX_BYTES:
            raise ValueError(
                f"the default model would take {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB budget; "
                f"{target} is unchanged"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    logger.info("released %s to %s (%.1f MB)", package_dir, target, size / 1e6)
    return target


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path, help="exported model package")
    parser.add_argument("--notes", type=Path, required=True, help="markdown: how this model was made")
    parser.add_argument("--target", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    release(args.package_dir, args.notes.read_text(encoding="utf-8"), args.target)


if __name__ == "__main__":
    main()
