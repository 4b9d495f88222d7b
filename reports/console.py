"""What run_comparison.py prints: the loss log, the timing, breakdown, device, scaling and sweep tables, progress.

    print_loss_log(workload, results, dtype)        every backend's train and valid loss per epoch, 12 digits
    print_timing(results, matmul, dtype, machine, load)   the timing table, the epoch breakdown, device
                                                    facts, the machine and its load
    print_scaling(scaling)                          time, speedup over 1 thread and parallel efficiency per thread count
    print_sweep(sweep, names)                       median epoch seconds per size and the fitted slopes
    Progress(enabled)                               progress lines on stderr, terminal or not

``results`` are per-backend results of the results-file schema (reports/resultfiles.py).
"""
from __future__ import annotations

import sys
import time

PROGRESS_AFTER_S = 3.0       # the first progress line once a step has taken this long
PROGRESS_EVERY_S = 5.0       # then at most one line this often


class Progress:
    """Lines on stderr, flushed, whether or not it is a terminal (nohup and tee runs show them too):
    ``say`` at once; ``epoch`` and ``note`` once a step has run PROGRESS_AFTER_S, then every PROGRESS_EVERY_S.
    Silent when not ``enabled`` (--quiet)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.label = ""
        self.start = self.printed = time.perf_counter()

    def begin(self, label: str) -> None:
        self.label, self.start = label, time.perf_counter()
        self.printed = self.start - PROGRESS_EVERY_S

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"  ... {text}", file=sys.stderr, flush=True)

    def _due(self) -> float | None:
        now = time.perf_counter()
        if not self.enabled or now - self.start < PROGRESS_AFTER_S or now - self.printed < PROGRESS_EVERY_S:
            return None
        self.printed = now
        return now - self.start

    def epoch(self, epoch: int, epochs: int) -> None:
        elapsed = self._due()
        if elapsed is not None:
            self.say(f"{self.label}: epoch {epoch}/{epochs - 1} done, {elapsed:.1f} s elapsed")

    def note(self, text: str) -> None:
        elapsed = self._due()
        if elapsed is not None:
            self.say(f"{self.label}: {text}, {elapsed:.1f} s elapsed")


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


def spread_text(spread: dict | None, spec: str) -> str:
    """'[q1 .. q3]' of a spread dict, '-' without one."""
    return "-" if not spread else f"[{spread['q1']:{spec}} .. {spread['q3']:{spec}}]"


def print_timing(results: dict, matmul: dict, dtype: str, machine: dict | None = None,
                 load: dict | None = None) -> None:
    w = max(12, max(len(name) for name in results) + 2)
    timed = [r for r in results.values() if r["timed"] and r["timing_rounds"]]
    rounds = timed[0]["timing_rounds"] if timed else 0
    blas = next((r["reference_blas_threads"] for r in timed if r["reference_blas_threads"]), None)
    print()
    print(f"Timing ({dtype}; {rounds} interleaved rounds of one epoch per backend after the training runs; epoch = "
          f"median of the rounds [q1 .. q3]; speedup = numpy on {fmt(blas, 'd', '?')} BLAS threads / backend, the "
          f"median of the paired rounds [q1 .. q3]; 1-thread = the same backend on one thread in the same rounds; "
          f"par.eff = T(1 thread) / (threads x T(threads)) of the same backend; compile = first minus second run on "
          f"a tiny slice (JIT, and for CUDA the context); user/sys = CPU seconds per epoch of the training run):")
    print(f"{'backend':<{w}}{'threads':>8}{'compile s':>11}{'epoch s':>11}{'[q1 .. q3]':>25}"
          f"{'speedup':>9}{'[q1 .. q3]':>18}{'1-thread s':>12}{'par.eff':>9}{'user s':>9}{'sys s':>9}"
          f"{'samples/s':>11}{'GFLOP/s':>9}{'% matmul':>10}{'peak RSS':>10}")
    for name, r in results.items():
        if not r["timed"]:
            print(f"{name:<{w}}  runs on Numba's CUDA simulator: losses checked, no timing claims")
            continue
        print(f"{name:<{w}}{fmt(r['threads'], 'd'):>8}{fmt(r['compile_seconds'], '.3f'):>11}"
              f"{r['median_epoch_seconds']:>11.4g}{spread_text(r['epoch_spread'], '.4g'):>25}"
              f"{fmt(r['speedup'], '.2f'):>9}{spread_text(r['speedup_spread'], '.2f'):>18}"
              f"{fmt(r['one_thread_median_seconds'], '.4g'):>12}{fmt(r['parallel_efficiency'], '.0%'):>9}"
              f"{r['user_seconds_per_epoch']:>9.3g}{r['sys_seconds_per_epoch']:>9.3g}"
              f"{r['samples_per_second']:>11.4g}{r['gflops']:>9.3g}{fmt(r['fraction_of_matmul'], '.2%'):>10}"
              f"{r['peak_rss_bytes'] / 2**20:>7.0f} MiB")
    print_breakdown(results, w)
    print_devices(results, w)
    if machine:
        print_machine(machine, load)
    if matmul:
        print(f"Reference: NumPy {matmul['n']}x{matmul['n']} matmul {matmul['float64_gflops']:.1f} GFLOP/s float64, "
              f"{matmul['float32_gflops']:.1f} GFLOP/s float32 (the '% matmul' column divides by the {dtype} rate).")


def phase_text(seconds, noise) -> str:
    """'1.23e-03 ±4e-05', or 'noise ±4e-05' for a phase within its noise."""
    return f"{fmt(seconds, '.4g', 'noise')} ±{noise:.1g}"


def print_breakdown(results: dict, w: int) -> None:
    rows = [(name, r["breakdown"]) for name, r in results.items() if r.get("breakdown")]
    if not rows:
        return
    print()
    print(f"Epoch breakdown (seconds, median of {rows[0][1]['repeats']} rounds ± the interquartile range; "
          f"backward = (forward+backward) - forward and update = epoch - (forward+backward), paired within a round; "
          f"'noise': the phase does not exceed its noise; sum = the phases shown, to compare with the epoch; "
          f"forward includes the validation pass; setup and host_params happen once per trainer; h2d+d2h = both, "
          f"for device backends):")
    print(f"{'backend':<{w}}{'forward':>18}{'backward':>18}{'update':>18}{'sum':>11}{'epoch':>18}{'setup':>10}"
          f"{'host_params':>13}{'h2d+d2h':>10}")
    for name, b in rows:
        print(f"{name:<{w}}{phase_text(b['forward_seconds'], b['forward_noise_seconds']):>18}"
              f"{phase_text(b['backward_seconds'], b['backward_noise_seconds']):>18}"
              f"{phase_text(b['update_seconds'], b['update_noise_seconds']):>18}{b['sum_seconds']:>11.4g}"
              f"{phase_text(b['epoch_seconds'], b['epoch_noise_seconds']):>18}{b['setup_seconds']:>10.3g}"
              f"{b['host_params_seconds']:>13.3g}{fmt(b['transfer_seconds'], '.3g'):>10}")


def print_devices(results: dict, w: int) -> None:
    devices = [(name, r) for name, r in results.items() if r["is_device"]]
    if not devices:
        return
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


def print_machine(machine: dict, load: dict | None) -> None:
    numba_info, env = machine["numba"], machine["thread_environment"]
    blas = machine.get("blas") or {}
    print()
    print(f"Machine: {machine['cpu_model']}; {machine['logical_cores']} logical cores "
          f"({machine['physical_cores'] or '?'} physical, {machine['usable_cores']} usable); Numba "
          f"{numba_info['num_threads']} threads, threading layer {numba_info['threading_layer'] or 'not started'}; "
          f"NumPy BLAS {blas.get('name') or '?'} on {fmt(blas.get('threads'), 'd', '?')} threads "
          f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS'] or 'unset'})"
          + ("; CUDA simulator on" if machine["cuda_simulator"] else ""))
    if load:
        parts = [f"{when} {fmt(load[when].get('others_cores'), '.2f', '?')}"
                 for when in ("before", "during", "after") if load.get(when)]
        loads = [f"{when} {fmt(load[when].get('load_1min'), '.2f', '?')}"
                 for when in ("before", "after") if load.get(when)]
        print(f"Load: cores used by other processes {', '.join(parts)}; 1-minute load average {', '.join(loads)}.")


def print_scaling(scaling: dict) -> None:
    for name, s in scaling.items():
        mode = s["mode"]
        work = "the same work" if mode == "strong" else "work grows with threads"
        print()
        print(f"{mode.capitalize()} scaling of {name} ({work}"
              f"; epoch = median of {s['repeats']} interleaved rounds [q1 .. q3]; speedup over 1 thread = "
              + ("T(1) / T(p)" if mode == "strong" else "p T(1) / T(p)")
              + "; par.eff = " + ("T(1) / (p T(p))" if mode == "strong" else "T(1) / T(p)")
              + ", both medians of the paired rounds):")
        print(f"{'threads':>8}{'epoch s':>11}{'[q1 .. q3]':>25}{'speedup':>9}{'par.eff':>9}")
        for k, p in enumerate(s["threads"]):
            print(f"{p:>8}{s['median_seconds'][k]:>11.4g}"
                  f"{spread_text({'q1': s['q1_seconds'][k], 'q3': s['q3_seconds'][k]}, '.4g'):>25}"
                  f"{s['speedup_vs_1'][k]:>9.2f}{s['parallel_efficiency'][k]:>9.0%}")
        fraction = s["serial_fraction"]
        law = "T(p) = T1 (s + (1-s)/p)" if mode == "strong" else "T(p) = T1 (1 + s (p-1))"
        limit = f"; Amdahl's limit 1/s = {1 / fraction:.1f}x on any number of threads" if fraction else ""
        print(f"serial fraction s = {fmt(fraction, '.3f')} (least squares fit of {law}){limit}")


def print_sweep(sweep: dict, names: list[str]) -> None:
    param = sweep["param"]
    print()
    print(f"Sweep of {param} (median epoch seconds of the interleaved rounds; slope = d log(time) / d log({param})):")
    print(f"{param:<10}" + "".join(f"{name:>14}" for name in names))
    for k, value in enumerate(sweep["values"]):
        print(f"{value:<10}" + "".join(f"{fmt(sweep['median_epoch_seconds'][n][k], '.4g', 'simulator'):>14}"
                                       for n in names))
    print(f"{'slope':<10}" + "".join(f"{fmt(sweep['slopes'][n], '.3f'):>14}" for n in names))
