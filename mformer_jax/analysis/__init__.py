"""The paper's appendix studies, one module per study: `python -m mformer_jax.analysis.<name>`.

Recorded results (commands, numbers, figures) live in the top-level `paper/` folder, whose
README maps each appendix item to its command, our number and the paper's.
"""
