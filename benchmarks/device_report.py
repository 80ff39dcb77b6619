"""The device check's results read back: the best setting, ours against the official model at
the same batch, and the rendered tables (markdown) written beside the JSON."""


def ran(rows: list) -> list:
  return [r for r in rows if 'error' not in r and r.get('clips_per_s')]


def best(train_rows: list):
  """The trajectory row of most clips/s (None if none ran)."""
  rows = [r for r in ran(train_rows) if r.get('attention') == 'trajectory']
  return max(rows, key=lambda r: r['clips_per_s']) if rows else None


def best_profile(train_rows: list):
  """The profile of the fastest trajectory row that has one, with its name and batch."""
  rows = [r for r in ran(train_rows) if r.get('profile') and r.get('attention') == 'trajectory']
  if not rows:
    return None
  r = max(rows, key=lambda r: r['clips_per_s'])
  return {'name': r['name'], 'batch': r['batch'], **r['profile']}


def official_row(results: dict, mode: str, batch: int):
  return next((r for r in ran(results['official'])
               if r.get('mode') == mode and r.get('batch') == batch), None)


def versus(ours, theirs) -> dict:
  """Ours / official in clips/s and in peak memory (None where either is missing)."""
  if not ours or not theirs:
    return {'clips_per_s': None, 'peak_memory': None}
  mem = (ours['peak_bytes'] / theirs['peak_bytes']
         if ours.get('peak_bytes') and theirs.get('peak_bytes') else None)
  return {'clips_per_s': ours['clips_per_s'] / theirs['clips_per_s'], 'peak_memory': mem}


def _gib(n) -> str:
  return '-' if n is None else f'{n / 2**30:.2f}'


def _num(x, fmt='.3g', scale=1.0) -> str:
  return '-' if x is None else format(x * scale, fmt)


def _pct(x) -> str:
  return '-' if x is None else f'{100 * x:.1f} %'


def _setting(r) -> str:
  if 'attention' not in r:   # a setting that failed before it was built
    return r['name']
  impl = f" {r['impl']}" if r.get('impl', '-') != '-' else ''
  backend = '+cudnn' if r.get('backend') == 'cudnn' else ''
  return f"{r['attention']}{impl}{backend}, remat {r['remat']}"


def train_table(results: dict) -> list:
  matmul = (results.get('matmul') or {}).get('tflops')
  lines = ['| setting | batch | step ms | clips/s | peak GiB | ref TFLOP/s | MFU ref / nominal | '
           'MFU ref / matmul | MFU executed / nominal | vs official clips/s | '
           'vs official memory |', '|' + ' --- |' * 11]
  for r in results['train']:
    if 'error' in r or not r.get('clips_per_s'):
      lines.append(f"| {_setting(r)} | {r.get('batch', '-')} | error: "
                   f"{r.get('error', 'no time')[:120]} |" + ' |' * 8)
      continue
    vs = versus(r, official_row(results, 'train', r['batch']))
    lines.append(
        f"| {_setting(r)} | {r['batch']} | {_num(r['step_s'], '.1f', 1e3)} | "
        f"{_num(r['clips_per_s'])} | {_gib(r.get('peak_bytes'))} | "
        f"{_num(r['tflops_reference'])} | {_pct(r.get('mfu_reference'))} | "
        f"{_pct(r['tflops_reference'] / matmul if matmul else None)} | "
        f"{_pct(r.get('mfu_executed'))} | {_num(vs['clips_per_s'], '.2f')} | "
        f"{_num(vs['peak_memory'], '.2f')} |")
  return lines


def simple_table(rows: list, label) -> list:
  lines = ['| run | batch | ms | clips/s | peak GiB | peak of |', '|' + ' --- |' * 6]
  for r in rows:
    if 'error' in r:
      lines.append(f"| {label(r)} | {r.get('batch', '-')} | error: {r['error'][:120]} | | | |")
    else:
      lines.append(f"| {label(r)} | {r['batch']} | {_num(r['step_s'], '.1f', 1e3)} | "
                   f"{_num(r['clips_per_s'])} | {_gib(r.get('peak_bytes'))} | "
                   f"{r.get('peak_what', '-')} |")
  return lines


def profile_lines(p) -> list:
  if not p:
    return ['(no profile: no trajectory setting ran)']
  shares = ', '.join(f'{k} {100 * v:.1f} %' for k, v in p['shares'].items())
  lines = [f"{p['name']}, batch {p['batch']}; source: {p['source']}"
           + (f" ({p['note']})" if p.get('note') else ''), '', f'Shares: {shares}.', '',
           '| op | category | ms/step | share |', '| --- | --- | --- | --- |']
  for o in p['top_ops']:
    lines.append(f"| {o['op'][-110:]} | {o['category']} | {_num(o.get('ms_per_step'), '.3f')} | "
                 f"{_pct(o.get('share')) if 'share' in o else str(o.get('count')) + ' ops'} |")
  return lines


def render(results: dict) -> str:
  """The check's own document (written beside its JSON): a title, then `body`."""
  m = results['machine']
  device = ', '.join(m.get('gpus', [])) or m.get('cpu', '?')
  return (f"# Device check ({results['mode']}): {device}, jax {m.get('jax', '?')}\n\n"
          + body(results, '##'))


def body(results: dict, level: str) -> str:
  """Every table of a device check, under headings of `level` (benchmarks.report renders the
  same text into results/README.md, one level deeper)."""
  m, mm = results['machine'], results.get('matmul') or {}
  b = best(results['train'])
  lines = [f"{results['model']}, {results['dtype']}; {m.get('date', '')}; "
               f"{results.get('elapsed_s', 0):.0f} s"
               + (f" of a {results['budget_s']:.0f} s budget." if results['budget_s'] else '.'),
           '', f"Measured bf16 matmul ({mm.get('n', '-')}^3): {_num(mm.get('tflops'), '.1f')} "
               f"TFLOP/s; nominal dense bf16 peak: "
               f"{_num(b.get('peak_tflops') if b else None, '.0f')} TFLOP/s.",
           '', f'{level} Training step (the trainer\'s own step, AdamW)', '', *train_table(results),
           '', f'{level} Official PyTorch model (bf16 autocast, AdamW)', '',
           *simple_table(results['official'], lambda r: r.get('mode', 'official')),
           '', f'{level} Eval forward (the views of one video as one batch)', '',
           *simple_table(results['eval'] + [r for r in results['official']
                                            if r.get('mode') == 'eval'],
                         lambda r: 'official' if r.get('mode') else 'ours ' + _setting(r))]
  ours_eval = next(iter(ran(results['eval'])), None)
  ev = versus(ours_eval, official_row(results, 'eval', ours_eval['batch']) if ours_eval
              else None)
  lines += ['', f"Eval ours / official: {_num(ev['clips_per_s'], '.2f')}x clips/s at "
                f"{_num(ev['peak_memory'], '.2f')}x the peak memory.",
            '', f'{level} Profile of the best trajectory setting', '',
            *profile_lines(results.get('profile'))]
  notes = results['notes'] + [f'skipped: {s}' for s in results['skipped']]
  if notes:
    lines += ['', f'{level} Notes', ''] + [f'- {n}' for n in notes]
  return '\n'.join(lines) + '\n'
