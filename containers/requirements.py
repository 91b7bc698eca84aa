"""What a container image installs, read from pyproject.toml so that it cannot drift from the package.

    python requirements.py pipeline|serving       # requirement lines for pip install --requirement
    python requirements.py write                  # containers/requirements-<image>.txt (make constraints)
    python requirements.py check pipeline|serving # pip check, minus what the image leaves out on purpose
    python requirements.py prune                  # drop the test suites named by drop_tests
    python requirements.py substitute-pins        # `make constraints`: substitutes at the originals' versions

The builds install containers/requirements-<image>.txt, written from this (a test keeps them equal):
a committed file, so the dependency layer is rebuilt only when the list or the pins change.
The pipeline image installs every dependency of [project]; the serving image only the ones named in
[tool.propensity.images].serving (what `propensity serve` imports). [tool.propensity.images].substitute
swaps a distribution for a lighter one with the same import package (xgboost -> xgboost-cpu). The
ranges are pyproject's; the exact versions come from containers/constraints.txt at install time.

Runs in the image's build stage with only the standard library (no packaging module there).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

IMAGES = ("pipeline", "serving")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
MISSING = re.compile(r"^propensity [^ ]+ requires ([A-Za-z0-9._-]+), which is not installed\.$")


def canonical(name: str) -> str:
    """PEP 503 normalised name: how pip compares distribution names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = NAME.match(requirement)
    if not match:
        raise ValueError(f"pyproject.toml: cannot read a distribution name from {requirement!r}")
    return canonical(match.group(1))


def image_requirements(pyproject: dict, image: str) -> list[str]:
    """The image's requirement lines: pyproject's specifiers, substitutes applied, then build tools."""
    if image not in IMAGES:
        raise ValueError(f"unknown image {image!r} (known: {', '.join(IMAGES)})")
    settings = pyproject["tool"]["propensity"]["images"]
    substitute = {canonical(k): v for k, v in settings.get("substitute", {}).items()}
    dependencies = pyproject["project"]["dependencies"]
    by_name = {requirement_name(r): r for r in dependencies}
    if image == "serving":
        chosen = [canonical(n) for n in settings["serving"]]
        unknown = sorted(set(chosen) - set(by_name))
        if unknown:
            raise ValueError(
                f"pyproject.toml [tool.propensity.images].serving names {', '.join(unknown)}, "
                "which [project].dependencies does not list"
            )
    else:
        chosen = list(by_name)
    lines = []
    for name in chosen:
        requirement = by_name[name]
        if name in substitute:
            requirement = substitute[name] + requirement[NAME.match(requirement).end() :]  # type: ignore[union-attr]
        lines.append(requirement)
    return lines + list(pyproject["build-system"]["requires"])


def left_out(pyproject: dict, image: str) -> set[str]:
    """Dependencies of propensity that the image does not install under their own name."""
    installed = {requirement_name(r) for r in image_requirements(pyproject, image)}
    return {requirement_name(r) for r in pyproject["project"]["dependencies"]} - installed


def check(pyproject: dict, image: str) -> int:
    """pip check, failing on every problem except propensity's deliberately absent dependencies."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    expected = left_out(pyproject, image)
    problems = []
    for line in result.stdout.splitlines():
        match = MISSING.match(line.strip())
        if not (match and canonical(match.group(1)) in expected):
            problems.append(line)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"pip check: {len(problems)} problem(s); left out on purpose: {', '.join(sorted(expected)) or '-'}")
    return 1 if problems else 0


def prune(pyproject: dict) -> int:
    """Delete the bundled test suites of the listed import packages (about 110 MB that no task or
    endpoint imports: pandas alone ships 39 MB of tests). Only these packages: for some others (e.g.
    evidently) a ``tests`` package is part of the library."""
    site = Path(sysconfig.get_paths()["purelib"])
    freed = 0
    for package in pyproject["tool"]["propensity"]["images"]["drop_tests"]:
        root = site / package
        if not root.is_dir():
            raise SystemExit(f"prune: {package} is not installed in {site}")
        for tests in sorted(root.rglob("tests"), key=lambda p: len(p.parts)):
            if tests.is_dir():
                freed += sum(f.stat().st_size for f in tests.rglob("*") if f.is_file())
                shutil.rmtree(tests)
    print(f"prune: removed {freed / 1e6:.0f} MB of test suites")
    return 0


def substitute_pins(pyproject: dict) -> list[str]:
    """A pin for each substitute at the version of the distribution it replaces (installed here)."""
    from importlib.metadata import version

    substitute = pyproject["tool"]["propensity"]["images"].get("substitute", {})
    return [f"{new}=={version(old)}" for old, new in sorted(substitute.items())]


def requirements_file(image: str) -> Path:
    return Path(__file__).resolve().parent / f"requirements-{image}.txt"


def file_text(pyproject: dict, image: str) -> str:
    """The committed requirement file of ``image``: a header, then the lines."""
    header = (
        f"# What the {image} image installs (pip -r, with -c constraints.txt). Written by\n"
        "# `python containers/requirements.py write` (make constraints) from pyproject.toml: do not edit.\n"
    )
    return header + "\n".join(image_requirements(pyproject, image)) + "\n"


def write(pyproject: dict) -> int:
    for image in IMAGES:
        requirements_file(image).write_text(file_text(pyproject, image))
        print(f"wrote {requirements_file(image)}")
    return 0


def find_pyproject() -> Path:
    """pyproject.toml in the working directory (the build stage), else the repository's."""
    here = Path("pyproject.toml")
    return here if here.exists() else Path(__file__).resolve().parents[1] / "pyproject.toml"


def main(argv: list[str]) -> int:
    pyproject = tomllib.loads(find_pyproject().read_text())
    if argv == ["substitute-pins"]:
        print("\n".join(substitute_pins(pyproject)))
        return 0
    if argv == ["write"]:
        return write(pyproject)
    if argv == ["prune"]:
        return prune(pyproject)
    if len(argv) == 2 and argv[0] == "check":
        return check(pyproject, argv[1])
    if len(argv) == 1:
        print("\n".join(image_requirements(pyproject, argv[0])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
