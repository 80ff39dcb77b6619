"""Evaluation and inference: the multi-view `evaluator` and its `metrics`, `predict` for one
video (with its labelled copy, `overlay`), and `features` of a list of videos."""
