"""Rewrite the README "Results" section (between <!-- results:start --> and <!-- results:end -->)
from a `vla bench` run. Nothing else in the README is touched.

    python scripts/readme_results.py outputs/bench/<time>/bench.json [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vla.bench.report import update_readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_json", type=Path, help="bench.json written by `vla bench`")
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    args = parser.parse_args()
    report = json.loads(args.bench_json.read_text())
    print(f"updated {update_readme(args.readme, report)}")


if __name__ == "__main__":
    main()
