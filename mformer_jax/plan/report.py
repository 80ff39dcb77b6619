"""A plan in words: the summary table the command prints, and why a plan does not fit with what
to try (the command's one error line)."""


def needed_bytes(p: dict):
  """Per-chip bytes of a plan: the memory analysis, or the compiler's figure when it refused."""
  if p['per_chip_bytes']:
    return p['per_chip_bytes']['total']
  return p['compiler_oom']['required_bytes']


def _size(n: int) -> str:
  return f'{n / 2**30:.2f} GiB' if abs(n) >= 2**28 else f'{n / 2**20:.1f} MiB'


def advice(result: dict, config) -> str:
  """Why it does not fit and what to try, in one line."""
  mem, oom, gib = result['per_chip_bytes'], result['compiler_oom'], _size
  tries = []
  m = config.model
  if m.remat != 'full':
    tries.append('--config.model.remat=full')
  if m.attention == 'trajectory' and result['setting']['trajectory_impl'] != 'chunked':
    tries.append('--config.model.trajectory_impl=chunked')
  if not config.mesh.fsdp:
    tries.append('--config.mesh.fsdp=True')
  if result['batch_per_chip'] > 1:
    tries.append(f"--batch_per_chip={result['batch_per_chip'] // 2} (or max)")
  tries = ', '.join(tries or ['a chip with more HBM'])
  kind = result['device_kind']
  if mem is None and oom['required_bytes']:
    need, have = oom['required_bytes'], oom['available_bytes']
    return (f'does not fit: the compiler needs {gib(need)} per chip, the {kind} has {gib(have)} '
            f'for it: short by {gib(need - have)}; try {tries}')
  if mem is None:
    return f"does not fit: the compiler ran out of HBM ({oom['message']}); try {tries}"
  hbm = result['hbm_bytes_per_chip']
  return (f"does not fit: {gib(mem['total'])} per chip needed, the {kind} has {gib(hbm)}: "
          f"short by {gib(mem['total'] - hbm)} (arguments {gib(mem['arguments'])}, temporaries "
          f"{gib(mem['temporaries'])}); try {tries}")


def table(result: dict) -> str:
  """The short summary the CLI prints."""
  mem, oom, s, gib = result['per_chip_bytes'], result['compiler_oom'], result['setting'], _size
  hbm = result['hbm_bytes_per_chip']
  rows = [
      ('slice', f"{result['topology']}: {result['chips']} x {result['device_kind']}, "
                f"{gib(hbm) if hbm else 'unknown'} HBM each"),
      ('step', f"{result['mode']}, {result['experiment']}, {result['batch_per_chip']} per chip "
               f"(global {result['global_batch']})"),
      ('setting', ', '.join(f'{k}={v}' for k, v in s.items())),
  ]
  if 'search' in result:
    rows.append(('search', ' '.join(f"{p['batch_per_chip']}{'+' if p['fits'] else '-'}"
                                    for p in result['search']) + '  (+ fits, - does not)'))
  if mem:
    coll = ', '.join(f"{k} {v['count']} x {gib(v['bytes'])}" for k, v in
                     result['collectives'].items() if isinstance(v, dict) and v['count'])
    rows += [
        ('per chip', f"{gib(mem['total'])} = arguments {gib(mem['arguments'])} + temporaries "
                     f"{gib(mem['temporaries'])} + outputs {gib(mem['outputs'])} - aliased "
                     f"{gib(mem['aliased'])}"),
        ('fits', f"{'yes' if result['fits'] else 'NO'} ({100 * mem['total'] / hbm:.0f} % of HBM)"
                 if hbm else 'unknown (no HBM size for this device kind)'),
        ('collectives', coll or 'none')]
  else:
    rows += [('per chip', f"compiler out of HBM: {oom['message']}"), ('fits', 'NO')]
  rows += [('model TFLOP/step', f"{result['model_tflops_per_step']:.4g} (flops.py's count)"),
           ('compile', f"{result['compile_seconds']:.1f} s (compiled, not run)")]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'  {k:<{width}}  {v}' for k, v in rows)
