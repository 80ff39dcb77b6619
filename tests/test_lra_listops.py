"""ListOps: our evaluator and generator against expressions the official generator produced.

tests/data/listops_official.tsv was made outside this repository by running the official
`lra_benchmarks/data/listops.py` (google-research/long-range-arena @ cd31e5c) from a scratch
driver: `random.seed(12)`, then `generate_tree(1, 10, 10)` repeatedly, keeping unique operator
trees -- the first 240 shorter than 120 tokens, then 30 with 500 < length < 2000 -- written with
its `to_string` / `to_value` in its TSV format. The reference statistics below come from the
same code (random.seed(1), 3000 unique trees with 500 < length < 2000).
"""
import collections
import os
import random
import re

import numpy as np
import pytest

from mformer_jax.errors import InputError, MissingInputError
from mformer_jax.lra import listops

OFFICIAL = os.path.join(os.path.dirname(__file__), 'data', 'listops_official.tsv')
# Official generator, 3000 trees: label frequencies 0..9 and mean length.
OFFICIAL_LABELS = [0.169, 0.092, 0.069, 0.075, 0.096, 0.088, 0.080, 0.074, 0.088, 0.168]
OFFICIAL_MEAN_LENGTH = 1048


@pytest.fixture(scope='module')
def official():
  return listops.read_tsv(OFFICIAL)


@pytest.fixture(scope='module')
def generated():
  return listops.generate(1500, seed=0)


def test_value_agrees_with_official_to_value(official):
  assert len(official) == 270
  assert [listops.value(s) for s, _ in official] == [t for _, t in official]
  assert len({t for _, t in official}) == 10  # every label occurs


def test_generator_replays_the_official_random_stream(official):
  # Same draws in the same order: a Random seeded like the official run grows the same trees.
  rng, rows = random.Random(12), []
  while len(rows) < len(official):
    source, x, length = listops.tree(rng)
    if length > 1 and ((500 < length < 2000) if len(rows) >= 240 else length < 120) \
        and source not in {s for s, _ in rows}:
      rows.append((source, x))
  assert rows == official


def test_generate_matches_the_official_distribution(generated):
  lengths = np.asarray([sum(t not in '()' for t in s.split()) for s, _ in generated])
  assert lengths.min() > 500 and lengths.max() < 2000
  assert abs(lengths.mean() - OFFICIAL_MEAN_LENGTH) < 40
  ops = collections.Counter(re.findall(r'\[[A-Z]+', ' '.join(s for s, _ in generated)))
  total = sum(ops.values())
  assert set(ops) == set(listops.OPERATORS)
  assert all(abs(n / total - 0.25) < 0.01 for n in ops.values()), ops
  labels = collections.Counter(t for _, t in generated)
  freq = np.asarray([labels[i] / len(generated) for i in range(10)])
  assert 0.5 * np.abs(freq - OFFICIAL_LABELS).sum() < 0.05  # total variation distance
  assert freq.argmax() in (0, 9) and freq.max() < 0.2
  assert all(listops.value(s) == t for s, t in generated[:200])


def test_generate_is_seeded_unique_and_prefix_stable(generated):
  assert len({s for s, _ in generated}) == len(generated)
  assert listops.generate(20, seed=0) == generated[:20]
  assert listops.generate(20, seed=1) != generated[:20]
  short = listops.generate(50, seed=3, min_length=20, max_length=60)
  assert all(20 < len(listops.encode([s], 100)[0].nonzero()[0]) - 1 < 60 for s, _ in short)


@pytest.mark.parametrize('source, match', [
    ('( ( [MAX 2 ) 9 )', 'never closed'),
    ('( ( ( [MAX 2 ) 9 ) ] ) )', 'unbalanced'),
    ('( ( ( [MAX 2 ) 9 ) ]', 'unclosed'),
    ('[MAX 2 12 ]', 'unknown token'),
    ('[FOO 2 ]', 'unknown token'),
    ('2 ]', 'without an operator'),
    ('[SM ]', 'without arguments'),
    ('3 4', 'more than one'),
    ('', 'empty'),
])
def test_malformed_expressions_get_one_clear_error(source, match):
  with pytest.raises(InputError, match=match):
    listops.value(source)


def test_operators():
  assert listops.value('[MED 1 2 3 4 ]') == 2           # int(median) = int(2.5)
  assert listops.value('( ( ( ( ( [SM 9 ) 8 ) 7 ) 6 ) ] )') == 0
  assert listops.value('[MIN 3 [MAX 1 7 X 5 ]') == 3    # X: the pipeline's name for ']'
  assert listops.value('7') == 7


def test_encode():
  ids = listops.encode(['( ( ( [MAX 2 ) 9 ) ] )', '[SM 0 ]'], max_length=8)
  v = listops.VOCAB.index
  assert ids.tolist() == [[v('<cls>'), v('[MAX'), v('2'), v('9'), v(']'), 0, 0, 0],
                          [v('<cls>'), v('[SM'), v('0'), v(']'), 0, 0, 0, 0]]
  assert listops.encode(['[MIN 1 2 3 4 5 6 7 8 9 ]'], max_length=4).tolist() == [
      [1, v('[MIN'), v('1'), v('2')]]
  with pytest.raises(InputError, match='vocabulary'):
    listops.encode(['[MIN 1 Q ]'])


def test_build_files_resume_and_missing_path(tmp_path):
  sizes = {'train': 30, 'val': 5, 'test': 5}
  listops.build(str(tmp_path), seed=4, sizes=sizes, min_length=10, max_length=40)
  rows = {s: listops.read_tsv(listops.split_path(str(tmp_path), s)) for s in sizes}
  assert [len(r) for r in rows.values()] == [30, 5, 5]
  assert rows['train'] + rows['val'] + rows['test'] == listops.generate(40, seed=4, min_length=10,
                                                                         max_length=40)
  with open(listops.split_path(str(tmp_path), 'train'), 'rb') as f:
    assert f.readline() == b'Source\tTarget\r\n'  # the official csv dialect
  assert not os.path.exists(tmp_path / 'chunks')  # removed once the splits are written
  # An interrupted build resumes from its finished chunks (here: a planted one, to see it used).
  planted = [(f'[SM {i % 10} 0 ]', i % 10) for i in range(listops.CHUNK)]
  os.makedirs(tmp_path / 'again' / 'chunks')
  listops.write_tsv(str(tmp_path / 'again' / 'chunks' / '4_10_40_00000.tsv'), planted)
  listops.build(str(tmp_path / 'again'), seed=4, sizes=sizes, min_length=10, max_length=40)
  assert listops.read_tsv(listops.split_path(str(tmp_path / 'again'), 'train'))[:10] == planted[:10]
  tokens, labels = listops.load_split(str(tmp_path), 'test', max_length=64)
  again, _ = listops.load_split(str(tmp_path), 'test', max_length=64)  # from the cache
  assert tokens.shape == (5, 64) and (tokens == again).all()
  assert labels.tolist() == [t for _, t in rows['test']]
  with pytest.raises(MissingInputError, match='no ListOps file'):
    listops.read_tsv(str(tmp_path / 'nope.tsv'))
