"""IR metrics, TREC run files, and evaluation jobs."""
from .metrics import evaluate, parse_metric
from .trec import read_run, write_run

__all__ = ["evaluate", "parse_metric", "read_run", "write_run"]
