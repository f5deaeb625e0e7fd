"""Another git revision of this project as an importable package tree, to benchmark old against new code.

``export_revision(rev, dest)`` writes ``git archive REV`` of the checkout this package runs from and lays it
out as the installed package is (``sim/`` and ``models/`` become ``regconsist_ros.sim`` and
``regconsist_ros.models``, as setup.py's ``package_dir`` maps them): its ``config/`` folder sits beside the
package, where ``config.config_dir()`` looks. ``sys.path.insert(0, tree)`` then imports that revision.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

PACKAGE = "regconsist_ros"
MAPPED = ("sim", "models")  # top-level folders installed as regconsist_ros.<name>


def checkout_root() -> Path:
    """The git work tree this package was imported from (ValueError when it is not one, e.g. a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise ValueError(f"--against needs a git checkout of the project ({here} is not in one): {e}") from None
    return Path(out.stdout.strip())


def export_revision(rev: str, dest: str | Path) -> tuple[Path, str]:
    """``git archive`` of ``rev`` laid out as the installed package under ``dest`` -> (tree, full commit)."""
    root, dest = checkout_root(), Path(dest)
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise ValueError(f"--against {rev!r}: not a revision of {root}") from None
    src = dest / "src"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        t.extractall(src, filter="data")
    tree = dest / "tree"
    shutil.copytree(src / PACKAGE, tree / PACKAGE)
    for name in MAPPED:
        if (src / name).is_dir():
            shutil.copytree(src / name, tree / PACKAGE / name)
    if (src / "config").is_dir():  # config.config_dir(): the folder beside the package
        shutil.copytree(src / "config", tree / "config")
    return tree, commit
