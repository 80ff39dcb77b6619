"""ListOps (Long Range Arena), offline and seeded: generator, evaluator, TSV files, tokeniser.

Our own implementation of the distribution of the official generator
(`google-research/long-range-arena`, `lra_benchmarks/data/listops.py`):

* a node below depth 10 is an operator with probability 0.25, else a digit 0-9 (always a digit
  at depth 10); an operator takes 2-10 children and is one of MIN, MAX, MED (int of the median),
  SM (sum mod 10), drawn after its children;
* length = 1 per digit, 2 + the children's lengths per operator (its token and the `]`);
* rejection sampling keeps unique trees with min_length < length < max_length (500, 2000).

Random numbers are drawn in the official order from a `random.Random`, so a tree grown to
completion from a given stream is the one the official code grows from it (a test replays
expressions it produced). The official code sets no seed and splits in Python-set order; we seed
(chunks of 1000 trees, one stream each, so a cache build can resume) and split in generation
order. Trees that pass max_length are abandoned as soon as they do, which keeps the accepted
distribution and makes the 100k set a matter of minutes.

Files are the official TSV (`Source<TAB>Target` header, `basic_{train,val,test}.tsv`), so a
directory of the official `lra_release/listops-1000` files works in place of ours.

Tokenisation as the LRA input pipeline: parentheses dropped, `]` a token of its own, padded to
`max_length` (2000). The official vocabulary is built from a Python set of the tokens seen in the
validation data, so its ids depend on set order; ours is fixed (`VOCAB`): 0 padding, 1 CLS,
2-11 the digits, 12-15 MIN MAX MED SM, 16 `]` -- the same 15 symbols, permuted, plus CLS as an
input token (the official model appends a learned CLS vector instead; same function).
"""
import argparse
import csv
import os
import random

import numpy as np
from absl import logging

from mformer_jax.errors import ConfigError, InputError, MissingInputError, UserError, exit_with

MIN, MAX, MED, SUM_MOD, END = '[MIN', '[MAX', '[MED', '[SM', ']'
OPERATORS = [MIN, MAX, MED, SUM_MOD]
MAX_DEPTH, MAX_ARGS, OPERATOR_P = 10, 10, 0.25
_DIGITS = range(10)
CHUNK = 1000  # trees per random stream
SPLITS = {'train': 96_000, 'val': 2_000, 'test': 2_000}

PAD, CLS = 0, 1
VOCAB = ['<pad>', '<cls>'] + [str(d) for d in _DIGITS] + OPERATORS + [END]
# One byte per token, so that encoding is str.replace + a lookup table (100k expressions in
# seconds); 'X' is the official pipeline's name for ']'.
_SHORT = {MIN: 'a', MAX: 'b', MED: 'c', SUM_MOD: 'd'}
_LUT = np.full(256, -1, np.int32)
for _tok, _ch in ([(str(d), str(d)) for d in _DIGITS] + list(_SHORT.items())
                  + [(END, END), ('X', 'X')]):
  _LUT[ord(_ch)] = VOCAB.index(END if _tok == 'X' else _tok)
_DROP = str.maketrans('', '', ' ()\t\r\n')


def apply(op: str, args) -> int:
  if op == MIN:
    return min(args)
  if op == MAX:
    return max(args)
  if op == MED:  # int(np.median): the mean of the middle two, truncated
    s = sorted(args)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2
  return sum(args) % 10


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
class _Where:
  """Where a token is, formatted only when an error message needs it."""

  def __init__(self, pos, tok, source):
    self.pos, self.tok, self.source = pos, tok, source

  def __format__(self, spec):
    more = '...' if len(self.source) > 60 else ''
    return f'token {self.pos} ({self.tok!r}) of {self.source[:60]!r}{more}'


def value(source: str) -> int:
  """The label of one expression, e.g. `( ( ( [MAX 2 ) 9 ) ] )` -> 9.

  Parentheses are optional (the tokenised form without them is accepted) but must balance.
  """
  if not isinstance(source, str):
    raise InputError(f'expected a string, got {type(source).__name__}')
  stack, result, depth = [], None, 0
  for pos, tok in enumerate(source.split()):
    where = _Where(pos, tok, source)
    if tok == '(':
      depth += 1
    elif tok == ')':
      depth -= 1
      if depth < 0:
        raise InputError(f'unbalanced ")" at {where}')
    elif tok in OPERATORS:
      if result is not None:
        raise InputError(f'more than one expression at {where}')
      stack.append((tok, []))
    elif tok in (END, 'X'):
      if not stack:
        raise InputError(f'"]" without an operator at {where}')
      op, args = stack.pop()
      if not args:
        raise InputError(f'{op} without arguments at {where}')
      x = apply(op, args)
      if stack:
        stack[-1][1].append(x)
      else:
        result = x
    elif len(tok) == 1 and tok.isdigit():
      if stack:
        stack[-1][1].append(int(tok))
      elif result is None:
        result = int(tok)
      else:
        raise InputError(f'more than one expression at {where}')
    else:
      raise InputError(f'unknown token at {where} (expected a digit 0-9, '
                       f'{", ".join(OPERATORS)}, "]" or a parenthesis)')
  if stack:
    raise InputError(f'{len(stack)} operator(s) never closed with "]" in '
                     f'{source[:60]!r}')
  if depth:
    raise InputError(f'{depth} unclosed "(" in {source[:60]!r}')
  if result is None:
    raise InputError('empty expression')
  return result


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------
class _TooLong(Exception):
  pass


def _node(rng: random.Random, depth: int, out: list, length: int, limit: float):
  """Appends one subtree's source pieces to `out`; returns (value, length so far).

  Draws in the official order; raises _TooLong as soon as the length reaches `limit`."""
  if depth < MAX_DEPTH and rng.random() <= OPERATOR_P:
    num_args = rng.randint(2, MAX_ARGS)
    head = len(out)
    out.append(None)  # the operator is drawn after its children
    length += 2
    args = []
    for _ in range(num_args):
      x, length = _node(rng, depth + 1, out, length, limit)
      args.append(x)
      out.append(')')
    op = rng.choice(OPERATORS)
    out[head] = '( ' * (num_args + 1) + op
    out.append('] )')
    return apply(op, args), length
  x = rng.choice(_DIGITS)
  out.append(str(x))
  if length + 1 >= limit:
    raise _TooLong
  return x, length + 1


def tree(rng: random.Random, limit: float = float('inf')):
  """One tree from the root: (source, value, length), or None if it reached `limit`."""
  out = []
  try:
    x, length = _node(rng, 1, out, 0, limit)
  except _TooLong:
    return None
  return ' '.join(out), x, length


def _chunk(seed: int, index: int, min_length: int, max_length: int):
  rng = random.Random(f'listops:{seed}:{index}')
  rows = []
  while len(rows) < CHUNK:
    t = tree(rng, max_length)
    if t is not None and t[2] > min_length:
      rows.append((t[0], t[1]))
  return rows


def generate(num: int, *, seed: int, min_length: int = 500, max_length: int = 2000,
             progress: bool = False):
  """`num` unique (source, target) pairs with min_length < length < max_length.

  Chunk i of 1000 accepted trees comes from its own stream (seed, i): the first n rows of
  generate(num) are generate(n) for every n <= num."""
  if not 0 <= min_length < max_length - 1:
    raise ConfigError(f'need 0 <= min_length < max_length - 1, got {min_length}, {max_length}')
  rows, seen, index = [], set(), 0
  while len(rows) < num:
    for row in _chunk(seed, index, min_length, max_length):
      if row[0] not in seen and len(rows) < num:
        seen.add(row[0])
        rows.append(row)
    index += 1
    if progress and index % 10 == 0:
      logging.info('ListOps: %d / %d expressions', len(rows), num)
  return rows


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def write_tsv(path: str, rows) -> None:
  """The official format: csv with tab delimiter (\\r\\n line ends), `Source Target` header."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.writer(f, delimiter='\t')
    writer.writerow(['Source', 'Target'])
    writer.writerows(rows)
  os.replace(tmp, path)


def read_tsv(path: str):
  """[(source, target)] from an official-format TSV."""
  if not os.path.exists(path):
    raise MissingInputError(f'no ListOps file at {path} (build one with `python -m '
                            f'mformer_jax.lra.listops --data_dir=DIR`, or point at the official '
                            f'lra_release/listops-1000 directory)')
  with open(path, newline='') as f:
    reader = csv.reader(f, delimiter='\t')
    header = next(reader, None)
    if header != ['Source', 'Target']:
      raise InputError(f'{path}: expected a "Source<TAB>Target" header, got {header}')
    try:
      return [(s, int(t)) for s, t in reader]
    except ValueError as e:
      raise InputError(f'{path}: malformed row ({e})') from None


def split_path(data_dir: str, split: str) -> str:
  return os.path.join(data_dir, f'basic_{split}.tsv')


def build(data_dir: str, *, seed: int = 0, sizes=None, min_length: int = 500,
          max_length: int = 2000) -> None:
  """Writes basic_{train,val,test}.tsv (96k/2k/2k by default) = generate(sum, seed) in order
  train, val, test. Resumable: finished chunks are kept under data_dir/chunks until the end."""
  sizes = dict(SPLITS if sizes is None else sizes)
  if all(os.path.exists(split_path(data_dir, s)) for s in sizes):
    return
  chunk_dir = os.path.join(data_dir, 'chunks')
  os.makedirs(chunk_dir, exist_ok=True)
  total = sum(sizes.values())
  rows, seen, index = [], set(), 0
  while len(rows) < total:
    path = os.path.join(chunk_dir, f'{seed}_{min_length}_{max_length}_{index:05d}.tsv')
    if os.path.exists(path):
      chunk = read_tsv(path)
    else:
      chunk = _chunk(seed, index, min_length, max_length)
      write_tsv(path, chunk)
    for row in chunk:
      if row[0] not in seen and len(rows) < total:
        seen.add(row[0])
        rows.append(row)
    index += 1
    logging.log_every_n_seconds(logging.INFO, 'ListOps %s: %d / %d expressions', 10, data_dir,
                                len(rows), total)
  start = 0
  for split, n in sizes.items():
    write_tsv(split_path(data_dir, split), rows[start:start + n])
    start += n
  for name in os.listdir(chunk_dir):  # only needed to resume an interrupted build
    os.remove(os.path.join(chunk_dir, name))
  os.rmdir(chunk_dir)


# ----------------------------------------------------------------------------------------------
# Tokenisation
# ----------------------------------------------------------------------------------------------
def encode(sources, max_length: int = 2000) -> np.ndarray:
  """(n, max_length) int32 ids: CLS, the tokens (truncated to max_length - 1), then padding."""
  out = np.zeros((len(sources), max_length), np.int32)
  out[:, 0] = CLS
  for i, s in enumerate(sources):
    for tok, ch in _SHORT.items():
      s = s.replace(tok, ch)
    ids = _LUT[np.frombuffer(s.translate(_DROP).encode(), np.uint8)][:max_length - 1]
    if (ids < 0).any():
      raise InputError(f'expression {i} has characters outside the ListOps '
                       f'vocabulary: {sources[i][:60]!r}')
    out[i, 1:1 + len(ids)] = ids
  return out


def load_split(data_dir: str, split: str, max_length: int = 2000):
  """(tokens (n, max_length) int32, labels (n,) int32), the encoding cached beside the TSV."""
  tsv = split_path(data_dir, split)
  cache = f'{tsv}.{max_length}.npz'
  if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(tsv):
    with np.load(cache) as z:
      return z['tokens'].astype(np.int32), z['labels']
  rows = read_tsv(tsv)
  tokens = encode([s for s, _ in rows], max_length)
  labels = np.asarray([t for _, t in rows], np.int32)
  try:
    np.savez(cache, tokens=tokens.astype(np.uint8), labels=labels)  # ids < 256: 4x smaller
  except OSError:  # a read-only copy of the official files: encode every time
    pass
  return tokens, labels


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.lra.listops',
                              description=__doc__.split('\n')[0])
  p.add_argument('--data_dir', required=True, help='Where to write basic_{train,val,test}.tsv.')
  p.add_argument('--seed', type=int, default=0, help='Generator seed.')
  p.add_argument('--min_length', type=int, default=500, help='Keep trees longer than this.')
  p.add_argument('--max_length', type=int, default=2000, help='Keep trees shorter than this.')
  p.add_argument('--sizes', default='96000,2000,2000', help='train,val,test sizes.')
  args = p.parse_args(argv)
  sizes = [int(n) for n in args.sizes.split(',') if n.strip().isdigit()]
  if len(sizes) != len(SPLITS) or len(args.sizes.split(',')) != len(SPLITS):
    p.error(f'--sizes={args.sizes!r}: expected three integers (train,val,test)')
  try:
    build(args.data_dir, seed=args.seed, min_length=args.min_length,
          max_length=args.max_length, sizes=dict(zip(SPLITS, sizes)))
  except UserError as e:
    exit_with(e)
  for split in SPLITS:
    print(split_path(args.data_dir, split))


if __name__ == '__main__':
  main()
