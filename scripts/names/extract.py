#!/usr/bin/env python3
"""Extracts the U.S. Census Bureau's 1990 name files into the person detector's dictionaries.

The Census Bureau published `dist.all.last`, `dist.female.first` and `dist.male.first` from the
1990 census (frequently occurring surnames and given names). Works of the U.S. federal
government are in the public domain. The `names` package on PyPI (MIT) ships the three files
unchanged; this script reads them from there, keeps the names only (lower-cased, sorted, one per
line, no frequencies) and writes them to crates/kernels/data/names/.

Usage: pip install names==0.3.0 && python3 scripts/names/extract.py
"""

import os
import sys

import names

SRC = os.path.dirname(names.__file__)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "kernels", "data", "names")


def read(filename):
    with open(os.path.join(SRC, filename), encoding="ascii") as f:
        return {line.split()[0].lower() for line in f if line.strip()}


def write(filename, items):
    with open(os.path.join(OUT, filename), "w", encoding="utf-8") as f:
        for name in sorted(items):
            f.write(name + "\n")
    print(f"{filename}: {len(items)} names", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("us_census_1990_given.txt", read("dist.female.first") | read("dist.male.first"))
    write("us_census_1990_surnames.txt", read("dist.all.last"))


if __name__ == "__main__":
    main()
