"""Puts the repository's ``ko_sts`` package and its ``.proto`` into the client's sdist and wheel.

The package has one copy, at the repository root, where ``bentoml serve`` and the container images
import it; the proto stays in ``proto/``. Built from the repository (``pip install ./client``,
``pip install git+...#subdirectory=client``, ``uv build client``), both come from ``..``; built
from an unpacked sdist (which holds them already, and a ``PKG-INFO``), nothing is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTO = "ko_sts/v1/similarity.proto"


class ClientSources(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        here = Path(self.root)
        if (here / "PKG-INFO").is_file():  # an unpacked sdist
            return
        repo = here.parent
        build_data["force_include"][str(repo / "ko_sts")] = "ko_sts"
        build_data["force_include"][str(repo / "proto" / PROTO)] = PROTO
