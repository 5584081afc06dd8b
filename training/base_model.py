"""Is the encoder a run starts from within reach? Checked before any data is read or model built.

``model_name_or_path`` is a local folder or a Hugging Face hub id. A folder must hold a
``config.json``; a hub id must be in the local cache or the hub must answer for it. Otherwise the
run stops at once with :class:`BaseModelUnavailable`, whose message names both ways out: hub access,
or a local copy of the model.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_TIMEOUT_S = 10.0
_TRUE = {"1", "ON", "YES", "TRUE"}


class BaseModelUnavailable(Exception):
    """The base model is neither a local folder nor reachable on the hub; the message says what to do.

    Not a ``RuntimeError``: a tuning study must stop, not record one failed trial after another.
    """


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks every Hugging Face library not to reach the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def _ways_out(name: str, reason: str) -> str:
    return f"""cannot start from base model {name!r}: {reason}.
Two ways out:
  1. the Hugging Face hub: unset HF_HUB_OFFLINE and let this machine reach https://huggingface.co
     (or a mirror, HF_ENDPOINT); the model is downloaded once, then read from the cache
     (~/.cache/huggingface). make train fine-tunes KoELECTRA-base-v3 from there; make train-small
     builds outputs/bases/me5-small-ko from multilingual-e5-small there;
  2. a local copy: a folder with the model's config.json, weights and tokenizer, named by
     --model_name_or_path DIR (make train TRAIN_ARGS="--model_name_or_path DIR") or by
     model_name_or_path: in the config. The 4-bit me5-small-ko the shipped default was made from is
     one (../shared/models/me5-small-ko where it exists): make reproduce-default ME5_SMALL_KO=DIR.
See docs/training.md, "Which base model"."""


def require_base_model(name: str) -> str:
    """Returns how ``name`` will be loaded: ``"folder"``, ``"cache"`` or ``"hub"``.

    Raises:
        BaseModelUnavailable: naming the model, why it cannot be loaded and both ways out.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelUnavailable(_ways_out(name, f"the folder {path} holds no config.json"))
        return "folder"
    looks_like_a_path = (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or ("/" in name and path.parent.is_dir())
    )
    if looks_like_a_path:
        raise BaseModelUnavailable(_ways_out(name, "there is no such folder, and it is no hub id (owner/name)"))
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return "cache"
    if hub_offline():
        raise BaseModelUnavailable(_ways_out(name, "HF_HUB_OFFLINE is set and the model is not in the local cache"))
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise BaseModelUnavailable(_ways_out(name, "the hub needs a login for it (huggingface-cli login)")) from None
    except RepositoryNotFoundError:
        raise BaseModelUnavailable(_ways_out(name, "there is no such folder, and the hub has no such model")) from None
    except Exception as error:  # noqa: BLE001 (any network failure means the same to the user)
        raise BaseModelUnavailable(_ways_out(name, f"the hub cannot be reached ({error})")) from None
    return "hub"


def main(argv: list[str] | None = None) -> None:
    """``python -m training.base_model NAME``: says how NAME would load, or exits 1 with the ways out."""
    import sys

    (name,) = sys.argv[1:] if argv is None else argv
    try:
        print(f"{name}: {require_base_model(name)}")
    except BaseModelUnavailable as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
