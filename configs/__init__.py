"""Experiment configs, one file per experiment (their argument convention: config_lib's docstring).

Loaded by path (`--config=configs/FILE.py:ARG`) or imported (`from configs import released`)
from the repository root, where every command runs: `python -m` and pytest (pyproject's
`pythonpath`) put it first on sys.path.
"""
