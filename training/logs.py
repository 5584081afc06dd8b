"""Logging set-up for the command-line tools: our INFO lines, other libraries' warnings only."""

from __future__ import annotations

import logging

import transformers

OUR_LOGGERS = ("training", "models", "research")


def configure_logging() -> None:
    """Timestamped INFO logs from this project; WARNING and above from everything else."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    transformers.logging.set_verbosity_warning()
