"""What run_comparison.py prints: the loss log, the timing, breakdown and device tables, the sweep table, progress.

    print_loss_log(workload, results, dtype)        every backend's train and valid loss per epoch, 12 digits
    print_timing(results, matmul, dtype, machine)   the timing table, the epoch breakdown, device facts
    print_sweep(sweep, names)                       median epoch seconds per size and the fitted slopes
    Progress(enabled)                               'backend: epoch k/n' lines once a run takes a while

``results`` are per-backend results of the results-file schema (reports/resultfiles.py).
"""
from __future__ import annotations

import time

PROGRESS_AFTER_S = 3.0       # progress lines start once a backend's run has taken this long


class Progress:
    """'backend: epoch k/n, s elapsed' lines for runs longer than a few seconds, on a terminal only."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.label = ""
        self.start = time.perf_counter()

    def begin(self, label: str) -> None:
        self.label, self.start = label, time.perf_counter()

    def epoch(self, epoch: int, epochs: int) -> None:
        elapsed = time.perf_counter() - self.start
        if self.enabled and elapsed >= PROGRESS_AFTER_S:
            print(f"  ... {self.label}: epoch {epoch}/{epochs - 1} done, {elapsed:.1f} s elapsed", flush=True)

    def note(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        if self.enabled and elapsed >= PROGRESS_AFTER_S:
            print(f"  ... {self.label}: {text}, {elapsed:.1f} s elapsed", flush=True)


def fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def print_loss_log(workload, results: dict, dtype: str) -> None:
    s, c = workload.shapes, workload.config
    print(f"Loss log: workload {workload.name} ({c.task}), N_train={s['N_train']} N_valid={s['N_valid']} "
          f"T={s['T']} D={s['D']} H={s['H']} Y={s['Y']} B={s['B']}, lr {c.lr:g}, {c.epochs} epochs, "
          f"{dtype}, seed {c.seed}")
    width = 19
    header = "epoch " + "".join(f"{name + ' train':>{width}}{name + ' valid':>{width}}" for name in results)
    print(header)
    for epoch in range(c.epochs):
        print(f"{epoch:<6}" + "".join(f"{r['train_loss'][epoch]:>{width}.12g}{r['valid_loss'][epoch]:>{width}.12g}"
                                      for r in results.values()))


def print_timing(results: dict, matmul: dict, dtype: str, machine: dict | None = None) -> None:
    w = max(12, max(len(name) for name in results) + 2)
    print()
    print(f"Timing ({dtype}; compile = first minus second run on a tiny slice: JIT, and for CUDA the context; "
          f"epoch = median over the training run; user/sys = CPU seconds per epoch; speedup = numpy / backend; "
          f"efficiency = speedup / threads):")
    print(f"{'backend':<{w}}{'threads':>8}{'compile s':>11}{'epoch s':>11}{'user s':>9}{'sys s':>9}"
          f"{'speedup':>9}{'eff/thr':>9}{'samples/s':>11}{'GFLOP/s':>9}{'% matmul':>10}{'peak RSS':>10}")
    for name, r in results.items():
        if not r["timed"]:
            print(f"{name:<{w}}  runs on Numba's CUDA simulator: losses checked, no timing claims")
            continue
        print(f"{name:<{w}}{fmt(r['threads'], 'd'):>8}{fmt(r['compile_seconds'], '.3f'):>11}"
              f"{r['median_epoch_seconds']:>11.4g}{r['user_seconds_per_epoch']:>9.3g}{r['sys_seconds_per_epoch']:>9.3g}"
              f"{fmt(r['speedup'], '.2f'):>9}{fmt(r['parallel_efficiency'], '.2f'):>9}"
              f"{r['samples_per_second']:>11.4g}{r['gflops']:>9.3g}{fmt(r['fraction_of_matmul'], '.2%'):>10}"
              f"{r['peak_rss_bytes'] / 2**20:>7.0f} MiB")
    rows = [(name, r["breakdown"], r) for name, r in results.items() if r["breakdown"]]
    if rows:
        print()
        print("Epoch breakdown (seconds, median of repeats; forward includes the validation pass; "
              "setup and host_params happen once per run; h2d+d2h = both, for device backends):")
        print(f"{'backend':<{w}}{'forward':>10}{'backward':>10}{'update':>10}{'setup':>10}{'host_params':>13}"
              f"{'h2d+d2h':>10}{'repeats':>9}")
        for name, b, _ in rows:
            print(f"{name:<{w}}{b['forward_seconds']:>10.4g}{b['backward_seconds']:>10.4g}{b['update_seconds']:>10.4g}"
                  f"{b['setup_seconds']:>10.3g}{b['host_params_seconds']:>13.3g}"
                  f"{fmt(b['transfer_seconds'], '.3g'):>10}{b['repeats']:>9}")
    devices = [(name, r) for name, r in results.items() if r["is_device"]]
    if devices:
        print()
        print(f"{'backend':<{w}}{'device':<28}{'cc':>6}{'memory':>12}{'launches/ep':>13}{'h2d/ep':>8}"
              f"{'d2h/ep':>8}{'kernel':>8}")
        for name, r in devices:
            s = r["stats"]
            memory = s.get("device_memory_bytes")
            device = str(s.get("device") or "?") + (" (simulator)" if r["simulator"] else "")
            print(f"{name:<{w}}{device:<28}{str(s.get('compute_capability') or '-'):>6}"
                  f"{fmt(memory and memory / 2**20, '.1f'):>8} MiB{fmt(s.get('launches_per_epoch'), 'd'):>13}"
                  f"{fmt(s.get('h2d_per_epoch'), 'd'):>8}{fmt(s.get('d2h_per_epoch'), 'd'):>8}"
                  f"{str(s.get('kernel_version') or '-'):>8}")
    if machine:
        numba_info, env = machine["numba"], machine["thread_environment"]
        blas = (machine.get("blas") or {}).get("name") or "?"
        print()
        print(f"Machine: {machine['cpu_model']}; {machine['logical_cores']} logical cores "
              f"({machine['physical_cores'] or '?'} physical, {machine['usable_cores']} usable); Numba "
              f"{numba_info['num_threads']} threads, threading layer {numba_info['threading_layer'] or 'not started'}; "
              f"NumPy BLAS {blas} (OMP_NUM_THREADS={env['OMP_NUM_THREADS'] or 'unset'})"
              + ("; CUDA simulator on" if machine["cuda_simulator"] else ""))
    if matmul:
        print(f"Reference: NumPy {matmul['n']}x{matmul['n']} matmul {matmul['float64_gflops']:.1f} GFLOP/s float64, "
              f"{matmul['float32_gflops']:.1f} GFLOP/s float32 (the '% matmul' column divides by the {dtype} rate).")


def print_sweep(sweep: dict, names: list[str]) -> None:
    param = sweep["param"]
    print()
    print(f"Sweep of {param} (median epoch seconds; slope = d log(time) / d log({param})):")
    print(f"{param:<10}" + "".join(f"{name:>14}" for name in names))
    for k, value in enumerate(sweep["values"]):
        print(f"{value:<10}" + "".join(f"{fmt(sweep['median_epoch_seconds'][n][k], '.4g', 'simulator'):>14}"
                                       for n in names))
    print(f"{'slope':<10}" + "".join(f"{fmt(sweep['slopes'][n], '.3f'):>14}" for n in names))
