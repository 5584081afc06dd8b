"""How a cross-encoder's raw outputs become 0-5 similarity scores (no PyTorch, no transformers).

The settings live in the model's ``config.json`` under ``ko_sts``, the way sentence-transformers
keeps its cross-encoder settings there: training writes them, every scoring backend reads them
with plain :mod:`json`, so that serving on ONNX Runtime imports neither torch nor transformers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

MAX_SCORE = 5.0
SIMILAR_THRESHOLD = 3.0  # KLUE-STS binarises gold and prediction at >= 3.0
CONFIG_FILE = "config.json"
CONFIG_KEY = "ko_sts"
Activation = Literal["identity", "sigmoid"]
Symmetry = Literal["none", "average", "canonical"]
SYMMETRIES: tuple[Symmetry, ...] = ("none", "average", "canonical")


class ScoreSettingsError(ValueError):
    """A model whose ``config.json`` does not say how its outputs become scores."""


def canonical_first(a: str, b: str) -> bool:
    """Whether ``a`` comes first in the canonical order of a pair: the shorter sentence (in characters) first,
    the smaller string (Python order) first when both are as long.

    Chosen on the shipped default's validation sets among four fixed rules (shorter first, longer first,
    string order, a hash), against both orders averaged: shorter first lost nothing there (+0.0001 validation,
    +0.0002 KorSTS hold-out), string order 0.0012 and 0.0028 (``research/results/symmetry-orders.md``).
    """
    return (len(a), a) <= (len(b), b)


@dataclass(frozen=True)
class Calibration:
    """A strictly increasing piecewise-linear map from raw to calibrated scores (``np.interp``).

    Fitted on held-out predictions (``research.calibrate``); strictly increasing, so it moves
    scores across the 3.0 threshold without changing any ranking.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
            raise ScoreSettingsError("calibration needs two lists of the same length (at least 2 knots)")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0):
            raise ScoreSettingsError("calibration knots must be strictly increasing in both x and y")
        if x[0] > 0.0 or x[-1] < MAX_SCORE or y[0] < 0.0 or y[-1] > MAX_SCORE:
            raise ScoreSettingsError(f"calibration must map all of 0-{MAX_SCORE:g} into 0-{MAX_SCORE:g}")

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.x, self.y)


@dataclass(frozen=True)
class ScoreSettings:
    """How a cross-encoder's logits become a similarity score, saved as ``config.ko_sts``.

    Args:
        activation: ``identity`` for a model trained on raw 0-5 labels (MSE), ``sigmoid`` for one
            trained on labels scaled to 0-1 (binary cross-entropy).
        max_length: token budget for a tokenised pair; longer pairs are truncated.
        symmetry: how the sentence order is treated. ``none``: each pair is scored as given (one row);
            ``average``: both orders are scored and averaged (two rows per pair); ``canonical``: each pair
            is scored once, in an order fixed by the sentences themselves (:func:`canonical_first`: the shorter
            first), so that swapping them gives the identical score at half the work of ``average``. Configs written
            before this setting hold ``symmetric: true/false``, read as ``average``/``none``.
        calibration: optional monotone map applied to the (averaged) score.
    """

    activation: Activation = "identity"
    max_length: int = 128
    symmetry: Symmetry = "none"
    calibration: Calibration | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.symmetry, bool):  # the former ``symmetric`` flag, passed positionally
            object.__setattr__(self, "symmetry", legacy_symmetry(self.symmetry))
        if self.symmetry not in SYMMETRIES:
            raise ScoreSettingsError(f"symmetry must be one of {', '.join(SYMMETRIES)}, got {self.symmetry!r}")

    @property
    def symmetric(self) -> bool:
        """Whether a pair scores the same in both sentence orders (``average`` or ``canonical``)."""
        return self.symmetry != "none"

    @property
    def rows_per_pair(self) -> int:
        """Sequences the network runs per pair: 2 when both orders are averaged, else 1."""
        return 2 if self.symmetry == "average" else 1

    def order(self, first: list[str], second: list[str]) -> tuple[list[str], list[str]]:
        """The rows the network runs for pairs ``(first[i], second[i])``, as first and second segments.

        ``none``: the pairs as given; ``average``: the pairs, then the same pairs swapped; ``canonical``:
        each pair once, in :func:`canonical_first`'s order.
        """
        if self.symmetry == "average":
            return first + second, second + first
        if self.symmetry == "canonical":
            swap = [not canonical_first(a, b) for a, b in zip(first, second)]
            return (
                [b if s else a for a, b, s in zip(first, second, swap)],
                [a if s else b for a, b, s in zip(first, second, swap)],
            )
        return list(first), list(second)

    @classmethod
    def from_dict(cls, stored: dict[str, Any] | None) -> ScoreSettings:
        """Builds the settings from the ``ko_sts`` entry of a config."""
        if stored is None:
            raise ScoreSettingsError(
                "This checkpoint has no 'ko_sts' entry in config.json, so it was not trained by "
                "ko-sts-serve and its output scale is unknown. Fine-tune it with `make train` first."
            )
        stored = dict(stored)
        legacy = stored.pop("symmetric", None)
        if legacy is not None:
            if "symmetry" in stored and stored["symmetry"] != legacy_symmetry(legacy):
                raise ScoreSettingsError(
                    f"config.json says both symmetric: {legacy} and symmetry: {stored['symmetry']!r}; keep symmetry"
                )
            stored.setdefault("symmetry", legacy_symmetry(legacy))
        calibration = stored.pop("calibration", None)
        if calibration is not None:
            calibration = Calibration(x=tuple(calibration["x"]), y=tuple(calibration["y"]))
        return cls(**stored, calibration=calibration)

    @classmethod
    def from_config(cls, config: Any) -> ScoreSettings:
        """Reads the settings from a transformers ``PretrainedConfig`` (training side)."""
        return cls.from_dict(getattr(config, CONFIG_KEY, None))

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ScoreSettings:
        """Reads the settings from ``config.json`` in a model directory with :mod:`json` alone."""
        path = Path(model_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {model_dir} is not a ko-sts model package")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")).get(CONFIG_KEY))

    def to_dict(self) -> dict[str, Any]:
        """The ``ko_sts`` entry as stored in ``config.json``."""
        stored = asdict(self)
        if self.calibration is None:
            del stored["calibration"]
        else:
            stored["calibration"] = {"x": list(self.calibration.x), "y": list(self.calibration.y)}
        return stored

    def save_to(self, config: Any) -> None:
        """Writes the settings into a transformers config (saved with ``save_pretrained``)."""
        setattr(config, CONFIG_KEY, self.to_dict())

    def raw_scores(self, logits: np.ndarray) -> np.ndarray:
        """Maps raw outputs of shape (n,) or (n, 1) to uncalibrated scores clipped to [0, 5]."""
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if self.activation == "sigmoid":
            scores = MAX_SCORE / (1.0 + np.exp(-logits))
        else:
            scores = logits
        return np.clip(scores, 0.0, MAX_SCORE)

    def to_scores(self, logits: np.ndarray, swapped_logits: np.ndarray | None = None) -> np.ndarray:
        """Served scores: activation, the mean over both orders when given, then calibration."""
        scores = self.raw_scores(logits)
        if swapped_logits is not None:
            scores = (scores + self.raw_scores(swapped_logits)) / 2.0
        return scores if self.calibration is None else self.calibration(scores)

    def scores_from_rows(self, logits: np.ndarray) -> np.ndarray:
        """Served scores from the logits of :meth:`order`'s rows (``average``: the pairs, then the pairs swapped)."""
        logits = np.asarray(logits).reshape(-1)
        if self.symmetry == "average":
            half = len(logits) // 2
            return self.to_scores(logits[:half], logits[half:])
        return self.to_scores(logits)


def legacy_symmetry(symmetric: bool) -> Symmetry:
    """The symmetry a config's former ``symmetric`` flag meant: both orders averaged, or the given order."""
    return "average" if symmetric else "none"
