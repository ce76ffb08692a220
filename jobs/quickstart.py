"""The quickstart: SciFact baseline evaluation end to end, printed as a table.

    python -m jobs.quickstart [--data-dir DIR] [--output-dir out/quickstart]
"""
import sys

from rayrag.cli import main

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))
