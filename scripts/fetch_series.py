#!/usr/bin/env python3
"""Fetch three public time series as CSV files for `recur train --csv`.

pmdarima ships the Box & Jenkins airline passengers (monthly, 1949-1960, 144 values) and the
Australian wine sales `wineind` (monthly, 1980-01 to 1994-08, 176 values) as literals in
its Python sources; statsmodels ships the yearly sunspot numbers (1700-2008) as a CSV file.
This script downloads the two wheels with pip (no install), reads the literals without
executing anything (ast) and the CSV from the wheel, checks the lengths and first values,
and writes airpassengers.csv (month,passengers), wineind.csv (month,sales) and
sunspots.csv (year,sunspots) into the given folder. The data is not part of recur's
repository.

    python3 scripts/fetch_series.py data/series
"""

import ast
import csv
import io
import pathlib
import subprocess
import sys
import tempfile
import zipfile

PMDARIMA = "pmdarima==2.1.1"
STATSMODELS = "statsmodels==0.15.0"


def array_literal(source: str, function: str) -> list:
    """The `rslt = np.array([...])` list literal inside `function`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Assign)
                    and getattr(inner.targets[0], "id", None) == "rslt"
                ):
                    # np.array([...]) or np.array([...]).astype(dtype)
                    for call in ast.walk(inner.value):
                        if (
                            isinstance(call, ast.Call)
                            and getattr(call.func, "attr", None) == "array"
                        ):
                            return ast.literal_eval(call.args[0])
    raise SystemExit(f"no array literal in {function}")


def months(start_year: int, n: int) -> list:
    return [f"{start_year + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


def write(path: pathlib.Path, header: tuple, rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows)")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--dest", tmp, PMDARIMA, STATSMODELS],
            check=True,
        )
        pm = next(pathlib.Path(tmp).glob("pmdarima-*.whl"))
        sm = next(pathlib.Path(tmp).glob("statsmodels-*.whl"))
        with zipfile.ZipFile(pm) as z:
            air = array_literal(
                z.read("pmdarima/datasets/airpassengers.py").decode(), "load_airpassengers")
            wine = array_literal(
                z.read("pmdarima/datasets/wineind.py").decode(), "load_wineind")
        with zipfile.ZipFile(sm) as z:
            text = z.read("statsmodels/datasets/sunspots/sunspots.csv").decode()
    sun = [(int(float(r["YEAR"])), float(r["SUNACTIVITY"]))
           for r in csv.DictReader(io.StringIO(text))]
    checks = [
        ("airpassengers", len(air), 144, air[:3], [112, 118, 132]),
        ("wineind", len(wine), 176, wine[:3], [15136, 16733, 20016]),
        ("sunspots", len(sun), 309, [v for _, v in sun[:3]], [5.0, 11.0, 16.0]),
    ]
    for name, n, expected_n, first, expected_first in checks:
        if n != expected_n or first != expected_first:
            raise SystemExit(f"{name}: {n} values starting {first}, expected {expected_n} "
                             f"starting {expected_first}")
    write(out / "airpassengers.csv", ("month", "passengers"), list(zip(months(1949, 144), air)))
    write(out / "wineind.csv", ("month", "sales"), list(zip(months(1980, 176), wine)))
    write(out / "sunspots.csv", ("year", "sunspots"), [(y, f"{v:g}") for y, v in sun])
    return 0


if __name__ == "__main__":
    sys.exit(main())
