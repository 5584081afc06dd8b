"""README and docs/: every relative link leads to a file, and every command they show names what exists.

Commands that need a network, a GPU or minutes are not run here; what can be checked offline is:
each `make TARGET` is a Makefile target, each `python -m MODULE` a module of this repository (or
an installed one) that answers `--help`, and each path a command names exists.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.-]+):", re.MULTILINE)


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for language, block in FENCE.findall(doc.read_text(encoding="utf-8")):
            if language not in ("", "bash", "sh"):
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    found.append((doc.name, line))
    return found


COMMANDS = _commands()


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file(doc):
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: link to {target} leads nowhere"


def test_every_make_command_is_a_target():
    targets = set(MAKE_TARGET.findall((REPO / "Makefile").read_text()))
    made = [(doc, word) for doc, line in COMMANDS for word in re.findall(r"(?:^|\s|&& )make ([a-z][\w-]*)", line)]
    assert made, "no make commands found: the pattern no longer matches the docs"
    for doc, target in made:
        assert target in targets, f"{doc}: `make {target}` is not a Makefile target"


def test_every_python_module_command_answers_help():
    modules = sorted({m for _, line in COMMANDS for m in re.findall(r"python3? -m ([\w.]+)", line)} - {"pytest", "pip"})
    assert "load_tests.bench" in modules, "the pattern no longer finds the documented python -m commands"
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"`python -m {module}`: no such module"
        if module.startswith(("training.", "load_tests.", "models.", "research.")):
            done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, timeout=300)
            assert done.returncode == 0, f"`python -m {module} --help` failed:\n{done.stderr.decode()[-2000:]}"


def test_paths_the_commands_name_exist():
    pattern = r"(?:--config|CONFIG=|-r) ?((?:training|load_tests|research|requirements)/[\w./-]+)"
    named = {path for _, line in COMMANDS for path in re.findall(pattern, line)}
    assert named, "no config paths found in the commands: the pattern no longer matches the docs"
    for path in named:
        assert (REPO / path).exists(), f"a documented command names {path}, which does not exist"
