"""How run_comparison.py and the bench tools (reports.cpu_bench, reports.gpu_check) measure: one method each.

    training run      measure_backend(): compile time apart, then the configured epochs (the loss log,
                      History.epoch_seconds, CPU user/sys, peak memory); these epochs are not the timing
    timing rounds     after every backend has trained, ``repeats`` interleaved rounds (A, B, A, B, ...) of one
                      epoch per backend on its own trainer (run_epoch with the training run's orders), so
                      that every backend meets the same spells of machine noise; each figure is the median
                      of its rounds with its spread (min, quartiles, max) and the number of rounds. The
                      order of the backends rotates from round to round (none always follows the same
                      one), and a backend whose epoch is short (under SETTLE_BELOW_S) first runs an untimed
                      forward epoch in its turn, so that what the previous backend leaves behind (its
                      threads still spin-waiting, its data in the caches) does not land in a short time
    compile time      a first 1-epoch run on a tiny slice of the same task and dtype minus a second one
    speedup           T_reference / T_backend of each round (paired), median and spread over the rounds; the
                      reference (NumPy) runs on its BLAS's threads, recorded next to every speedup
    parallel efficiency   T(1 thread) / (p x T(p threads)) of the SAME backend, each round's own p, from a
                      one-thread trainer timed in the same rounds; None where no such time was measured
    phase breakdown   forward, forward+backward and full epochs, adjacent in every round: forward = F,
                      backward = (F+B) - F, update = full - (F+B), each the median of its per-round values,
                      and None ("within noise") unless that median is positive and exceeds its noise (the
                      interquartile range of the per-round values)
    thread scaling    one trainer per thread count in the same rounds: speedup over 1 thread, parallel
                      efficiency and the serial fraction s of T(p) = T1 (s + (1-s)/p) (least squares)
    noise             the machine's load before, during and after, and the spread of every backend's rounds:
                      a busy machine or a wide spread gives one warning line (noise_report)
    reference rate    matmul_gflops(): NumPy's n x n product, one warm-up, then the median of repeats
    speedup(t_reference, t_backend)                    = t_reference / t_backend
    parallel_efficiency(t_one_thread, t_p_threads, p)  = t_one_thread / (p * t_p_threads)

The results fields these fill are documented in reports/resultfiles.py.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import time

import numpy as np

from parallel_lstm.lstm_numpy.contract import PHASES, Dataset, check_data, epoch_orders
from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.flops import epoch_flops

from .census import REFERENCE, BackendStatus
from .machine import blas_threads, cpu_times, peak_rss_bytes

BREAKDOWN_SKIP_S = 60.0      # no phases when one epoch takes longer (they cost about one more epoch per round)
BUSY_OTHERS_CORES = 0.5      # other processes using more than this many cores make the machine busy
WIDE_SPREAD = 0.2            # (q3 - q1) / median of a backend's rounds above this is a wide spread
SETTLE_BELOW_S = 0.1         # an epoch shorter than this gets an untimed forward epoch before it in each turn
COMPILE_NOTICE = "about 40 s on a 2-core machine"    # measured: 40.4 s cold for seed on a 2-core Xeon VM, 2026-11-23


def speedup(t_reference: float, t_backend: float) -> float:
    """How many times faster the backend runs than the reference: T_reference / T_backend."""
    return t_reference / t_backend


def parallel_efficiency(t_one_thread: float, t_p_threads: float, p: int) -> float:
    """T_1 / (p * T_p): 1.0 when p threads run p times as fast as one."""
    return t_one_thread / (p * t_p_threads)


def median_seconds(seconds) -> float:
    return float(np.median(seconds))


def epoch_spread(seconds) -> dict:
    """{min, q1, median, q3, max} of a list of epoch times."""
    q = np.percentile(np.asarray(seconds, dtype=float), [0, 25, 50, 75, 100])
    return dict(zip(("min", "q1", "median", "q3", "max"), map(float, q)))


def relative_spread(seconds) -> float:
    """(q3 - q1) / median: the width of the middle half of the values, as a fraction of the median."""
    spread = epoch_spread(seconds)
    return (spread["q3"] - spread["q1"]) / spread["median"]


def matmul_gflops(n: int = 2048, repeats: int = 3) -> dict:
    """NumPy's n x n matmul rate, the machine's reference GFLOP/s: one warm-up, then the median of repeats.

    One product costs 2 n^3 floating-point operations. Returns
    {"n", "repeats", "float64_gflops", "float32_gflops", "float64_seconds", "float32_seconds"}.
    """
    result = {"n": n, "repeats": repeats}
    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        a @ b                                          # warm-up: page faults, BLAS thread start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        seconds = median_seconds(times)
        result[f"{dtype}_seconds"] = seconds
        result[f"{dtype}_gflops"] = 2.0 * n**3 / seconds / 1e9
    return result


def blas_pinned(threads: int | None):
    """A context in which NumPy's BLAS (every BLAS loaded by then) runs on ``threads`` threads
    (threadpoolctl, which looks the libraries up afresh: one may have been loaded since); no change for None."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits   # only here: a run that pins no BLAS runs without it
    except ImportError:
        raise UserError("pinning NumPy's BLAS threads (--blas-threads, the one-thread reference) needs "
                        "threadpoolctl: pip install threadpoolctl, or leave the BLAS threads as they are.") from None
    return threadpool_limits(limits=threads, user_api="blas")


def tiny_slice(workload) -> Dataset:
    """The same task, dtype and sizes on a few sequences: enough to compile every kernel."""
    B = workload.config.batch_size
    d = workload.data
    n_train, n_valid = min(len(d.X_train), B + 1), min(len(d.X_valid), 2)
    return Dataset(d.X_train[:n_train], d.Y_train[:n_train], d.X_valid[:n_valid], d.Y_valid[:n_valid])


def warm_up(module, params, workload) -> float:
    """Run a 1-epoch training and every run_epoch phase on a tiny slice; return the seconds taken."""
    tiny = tiny_slice(workload)
    config = dataclasses.replace(workload.config, epochs=1)
    start = time.perf_counter()
    module.train(params, tiny, config)
    checked = check_data(params, tiny, config.task)
    trainer = module.make_trainer(params, checked, config)
    order = epoch_orders(len(checked.X_train), 1, config.seed)[0]
    for phase in PHASES:
        trainer.run_epoch(order, phase)
    trainer.host_params()
    return time.perf_counter() - start


def compile_seconds(module, params, workload) -> float:
    """JIT compile time: a first tiny run (compiles) minus a second one (already compiled)."""
    first = warm_up(module, params, workload)
    second = warm_up(module, params, workload)
    return max(first - second, 0.0)


def is_device(stats: dict) -> bool:
    """The backend's stats name a device other than the CPU, or count host-device transfers."""
    return ("h2d_per_epoch" in stats or "d2h_per_epoch" in stats
            or stats.get("device") not in (None, "cpu"))


# Filled from the timing rounds by apply_rounds; None until then, and for backends that are not timed.
ROUND_FIELDS = ("round_seconds", "round_threads", "timing_rounds", "epoch_spread", "speedup", "speedup_spread",
                "reference_blas_threads", "one_thread_round_seconds", "one_thread_median_seconds",
                "parallel_efficiency", "parallel_efficiency_spread", "breakdown")


def measure_backend(status: BackendStatus, workload, params, progress, compiled: set) -> tuple[dict, object]:
    """Compile and train one backend on the workload; returns (result dict, History).

    The result holds the training run (losses, per-epoch times, CPU user/sys, memory); its timing
    fields are filled later from the interleaved rounds (apply_rounds). ``compiled``: names of the
    backends whose compile time was measured already (this adds to it); ``progress``: a
    reports.console.Progress.
    """
    module, name = status.module, status.name
    epochs = workload.config.epochs
    timed = not status.simulator
    progress.begin(name)
    compile_s = None
    if timed and name not in compiled:
        if "numba" in status.describe:        # a JIT backend: say why the next minute is silent
            progress.say(f"compiling kernels for {name}, first run only, {COMPILE_NOTICE}")
        compile_s = compile_seconds(module, params, workload)
        compiled.add(name)
        progress.note("compiled")
    rss_before = peak_rss_bytes()
    (user_before, sys_before) = cpu_times()        # every thread of the process
    history = module.train(params, workload.data, workload.config,
                           progress=lambda epoch, seconds: progress.epoch(epoch, epochs))
    (user_after, sys_after) = cpu_times()
    rss_after = peak_rss_bytes()
    stats = dict(history.stats)
    result = {
        "backend": name, "simulator": status.simulator, "timed": timed,
        "train_loss": list(history.train_loss), "valid_loss": list(history.valid_loss),
        "epoch_seconds": list(history.epoch_seconds) if timed else None,
        "median_epoch_seconds": median_seconds(history.epoch_seconds) if timed else None,
        "compile_seconds": compile_s,
        "user_seconds_per_epoch": (user_after - user_before) / epochs if timed else None,
        "sys_seconds_per_epoch": (sys_after - sys_before) / epochs if timed else None,
        "threads": stats.get("threads"),
        "peak_rss_bytes": rss_after,
        "peak_rss_growth_bytes": None if rss_after is None else rss_after - rss_before,
        "device_memory_bytes": stats.get("device_memory_bytes"),
        "is_device": is_device(stats),
        "stats": stats, "breakdown_skipped": None, "agrees": None, "mismatch": None,
        **dict.fromkeys(ROUND_FIELDS),
    }
    return result, history


@dataclasses.dataclass
class Timed:
    """One trainer that the rounds time: a backend, maybe at a fixed thread count or on a sample.

    ``threads``: the thread count of its epochs where fixed (the reference: its BLAS's), else None and
    each epoch's count is read from ``trainer.stats["threads"]``; ``blas``: NumPy's BLAS is pinned to this
    many threads around each epoch (the reference at a chosen thread count); ``phases``: also time the
    forward and forward+backward epochs in each round; ``scale``: multiplies every time (a sample of
    minibatches scaled to a full epoch); ``settle``: run an untimed forward epoch first in each turn (short
    epochs); ``expected_seconds``: a guess of one round's cost, for notes.
    """

    key: str
    trainer: object
    orders: np.ndarray
    threads: int | None = None
    blas: int | None = None
    phases: bool = False
    scale: float = 1.0
    setup_seconds: float = 0.0
    settle: bool = False
    expected_seconds: float = 0.0


def timed_entry(status: BackendStatus, workload, params, key: str | None = None, threads: int | None = None,
                phases: bool = False, scale: float = 1.0, epoch_seconds: float | None = None,
                work: float = 1.0) -> Timed:
    """A fresh trainer for the rounds, from the initial parameters, with the training run's orders.

    ``threads``: run it on that many threads (the reference: NumPy's BLAS pinned by threadpoolctl; the
    other backends: TrainConfig.threads); None keeps the backend's own choice. ``epoch_seconds``: the
    training run's median epoch (settles short epochs, guesses the cost of a round, with ``work`` its
    expected slowdown, e.g. on fewer threads).
    """
    reference = status.name == REFERENCE
    config = workload.config
    if threads is not None and not reference:
        config = dataclasses.replace(config, threads=threads)
    data = check_data(params, workload.data, config.task)
    orders = epoch_orders(len(data.X_train), config.epochs, config.seed)
    with blas_pinned(threads if reference else None):
        start = time.perf_counter()
        trainer = status.module.make_trainer(params, data, config)
        setup = time.perf_counter() - start
        fixed = (threads or blas_threads()) if reference else threads
    epoch = epoch_seconds or 0.0
    return Timed(key or status.name, trainer, orders, fixed, threads if reference else None, phases, scale, setup,
                 settle=epoch_seconds is not None and epoch_seconds < SETTLE_BELOW_S,
                 expected_seconds=epoch * work * (2 if phases else 1))


def cpu_thread_ceiling(status: BackendStatus, result: dict, config) -> int | None:
    """The most threads a CPU backend runs on here (the reference: its BLAS's); None for a device backend."""
    if result["is_device"]:
        return None
    if status.name == REFERENCE:
        return blas_threads()
    return (config.threads or status.describe.get("max_threads") or status.describe.get("threads")
            or result.get("threads"))


def plan_entries(census: dict, results: dict, workload, params, *, phases: bool, one_thread: bool,
                 thread_counts: list[int] | None = None, workload_for=None) -> list[Timed]:
    """The trainers the rounds time: every timed backend as configured (``phases``: with its phases, unless
    its epoch takes over BREAKDOWN_SKIP_S), and every CPU backend at each of ``thread_counts`` (a thread
    sweep, keys ``name@p``, on ``workload_for(p)`` when given) or, with ``one_thread``, on one thread
    (``name@1``) where it runs on more than one."""
    entries = []
    for name, result in results.items():
        if not result["timed"]:
            continue
        status, epoch = census[name], result["median_epoch_seconds"]
        with_phases = phases and epoch <= BREAKDOWN_SKIP_S
        if phases and not with_phases:
            result["breakdown_skipped"] = f"an epoch takes {epoch:.0f} s, over {BREAKDOWN_SKIP_S:.0f} s"
        entries.append(timed_entry(status, workload, params, phases=with_phases, epoch_seconds=epoch))
        ceiling = cpu_thread_ceiling(status, result, workload.config)
        if ceiling is None:
            continue
        counts = thread_counts or ([1] if one_thread and ceiling > 1 else [])
        for p in counts:
            entries.append(timed_entry(status, workload_for(p) if workload_for else workload, params,
                                       key=f"{name}@{p}", threads=p, epoch_seconds=epoch, work=ceiling / p))
    return entries


def run_rounds(entries: list[Timed], repeats: int, progress, keep_going=None) -> dict[str, dict]:
    """``repeats`` rounds, each running every entry's epoch in turn (and its phases, adjacent); returns
    {key: {"forward": [s], "backward": [s] (forward+backward), "update": [s] (full epochs), "threads": [p],
    "setup_seconds", "host_params_seconds"}}, one value per round in each list. ``keep_going(seconds)``,
    asked before every round after the first with the last round's seconds, may stop them early (a time budget)."""
    times = {e.key: {"forward": [], "backward": [], "update": [], "threads": []} for e in entries}
    if not entries:           # nothing timed here (every backend on the CUDA simulator)
        return times
    progress.begin("timing")
    last_round = 0.0
    for r in range(repeats):
        if r and keep_going is not None and not keep_going(last_round):
            progress.say(f"timing: {r} of {repeats} rounds; the time budget does not hold another")
            break
        round_start = time.perf_counter()
        progress.note(f"round {r + 1}/{repeats} of one epoch per backend")
        for entry in entries[r % len(entries):] + entries[:r % len(entries)]:
            order = entry.orders[r % len(entry.orders)]
            if entry.settle:
                with blas_pinned(entry.blas):
                    entry.trainer.run_epoch(order, "forward")
            for phase in PHASES if entry.phases else ("update",):
                with blas_pinned(entry.blas):
                    start = time.perf_counter()
                    entry.trainer.run_epoch(order, phase)     # returns host losses: a GPU is synchronised here
                    times[entry.key][phase].append(entry.scale * (time.perf_counter() - start))
            times[entry.key]["threads"].append(entry.trainer.stats.get("threads") or entry.threads)
        last_round = time.perf_counter() - round_start
    for entry in entries:
        start = time.perf_counter()
        entry.trainer.host_params()
        times[entry.key].update(setup_seconds=entry.setup_seconds, host_params_seconds=time.perf_counter() - start)
    return times


def phase_breakdown(forward, forward_backward, full) -> dict:
    """The phases of an epoch from per-round times of forward, forward+backward and full epochs.

    forward = F, backward = (F+B) - F, update = full - (F+B), each paired within a round; a phase is the
    median of its per-round values and its noise their interquartile range. A phase whose median is not
    positive or does not exceed its noise is None (within noise) and listed in ``within_noise``;
    ``sum_seconds`` adds the phases shown, to compare with ``epoch_seconds`` (the full epochs' median)
    within the noise shown.
    """
    F, FB, U = (np.asarray(v, dtype=float) for v in (forward, forward_backward, full))
    parts = {"forward": F, "backward": FB - F, "update": U - FB}
    out, within = {}, []
    for name, values in parts.items():
        spread = epoch_spread(values)
        noise = spread["q3"] - spread["q1"]
        shown = spread["median"] > 0 and spread["median"] > noise
        out[f"{name}_seconds"] = spread["median"] if shown else None
        out[f"{name}_noise_seconds"] = noise
        if not shown:
            within.append(name)
    epoch = epoch_spread(U)
    out.update(within_noise=within, sum_seconds=sum(out[f"{n}_seconds"] or 0.0 for n in parts),
               epoch_seconds=epoch["median"], epoch_noise_seconds=epoch["q3"] - epoch["q1"], repeats=len(U))
    return out


def most_common(values):
    """The most frequent non-None value (the first seen among equals), or None."""
    counted = collections.Counter(v for v in values if v is not None)
    return counted.most_common(1)[0][0] if counted else None


def paired(numerators, denominators, factors=None) -> list[float]:
    """Per-round ratios n_r / (f_r * d_r); a round whose factor is None is left out."""
    factors = factors or [1] * len(numerators)
    return [n / (f * d) for n, d, f in zip(numerators, denominators, factors) if f is not None]


def apply_rounds(results: dict, rounds: dict, keys: dict | None = None) -> None:
    """Fill every result's timing fields from the rounds, in place (fields: reports/resultfiles.py).

    ``keys`` maps a result's name to its rounds key (default: the name itself); the one-thread rounds
    of a key are ``key@1``. Speedup pairs each round with the reference's round.
    """
    keys = keys or {}
    reference = rounds.get(keys.get(REFERENCE, REFERENCE))
    for name, result in results.items():
        key = keys.get(name, name)
        own = rounds.get(key)
        if own is None:
            continue
        seconds = own["update"]
        result.update(round_seconds=seconds, round_threads=own["threads"], timing_rounds=len(seconds),
                      median_epoch_seconds=median_seconds(seconds), epoch_spread=epoch_spread(seconds))
        threads = [p or result["threads"] for p in own["threads"]]   # trainers that do not report: as trained
        if not result["is_device"]:
            result["threads"] = most_common(threads)
        if reference is not None:
            ratios = paired(reference["update"], seconds)
            result.update(speedup=median_seconds(ratios), speedup_spread=epoch_spread(ratios),
                          reference_blas_threads=most_common(reference["threads"]))
        one = rounds.get(f"{key}@1")
        if one is not None and not result["is_device"]:
            efficiencies = paired(one["update"], seconds, threads)
            result.update(one_thread_round_seconds=one["update"],
                          one_thread_median_seconds=median_seconds(one["update"]))
            if efficiencies:
                result.update(parallel_efficiency=median_seconds(efficiencies),
                              parallel_efficiency_spread=epoch_spread(efficiencies))
        if own["forward"]:
            parts = phase_breakdown(own["forward"], own["backward"], own["update"])
            parts.update(setup_seconds=own["setup_seconds"], host_params_seconds=own["host_params_seconds"])
            parts["transfer_seconds"] = (own["setup_seconds"] + own["host_params_seconds"]
                                         if result["is_device"] else None)
            result["breakdown"] = parts


def serial_fraction(threads, seconds, mode: str = "strong") -> float | None:
    """The serial fraction s fitted by least squares to median times at thread counts (1 among them).

    strong (same work): T(p) = T1 (s + (1 - s)/p) (Amdahl); weak (work grows with p):
    T(p) = T1 (1 + s (p - 1)), Amdahl's law on p times the work. T1 is the measured one-thread time;
    s is clipped to [0, 1]; None without a one-thread time or a second thread count.
    """
    times = dict(zip(threads, seconds))
    t1 = times.get(1)
    if not t1:
        return None
    p = np.array([k for k in times if k != 1], dtype=float)
    t = np.array([times[k] for k in times if k != 1], dtype=float)
    if p.size == 0:
        return None
    if mode == "strong":
        a, y = t1 * (1 - 1 / p), t - t1 / p
    else:
        a, y = t1 * (p - 1), t - t1
    return float(np.clip(np.dot(a, y) / np.dot(a, a), 0.0, 1.0))


def scaling_record(rounds: dict, names: list[str], thread_counts: list[int], mode: str) -> dict:
    """The results file's ``scaling``: per backend timed at every thread count (keys ``name@p``), the
    median and quartiles, speedup over 1 thread and parallel efficiency (per-round pairs), and the serial
    fraction. Weak scaling (``mode="weak"``: the work grows with p): efficiency = T1 / T(p), speedup =
    p T1 / T(p) (the scaled speedup)."""
    counts = sorted(thread_counts)
    record = {}
    for name in names:
        if not all(f"{name}@{p}" in rounds for p in counts):
            continue
        per = [rounds[f"{name}@{p}"]["update"] for p in counts]
        spreads = [epoch_spread(s) for s in per]
        ratios = [median_seconds(paired(per[0], s)) for s in per]        # T1 / T(p), per round
        strong = mode == "strong"
        record[name] = {
            "threads": counts, "mode": mode, "repeats": len(per[0]),
            "median_seconds": [s["median"] for s in spreads], "q1_seconds": [s["q1"] for s in spreads],
            "q3_seconds": [s["q3"] for s in spreads],
            "speedup_vs_1": [r if strong else p * r for r, p in zip(ratios, counts)],
            "parallel_efficiency": [r / p if strong else r for r, p in zip(ratios, counts)],
            "serial_fraction": serial_fraction(counts, [s["median"] for s in spreads], mode),
        }
    return record


def derived_rates(results: dict, workload, matmul: dict | None, dtype: str) -> None:
    """Samples/s, GFLOP/s and the fraction of NumPy's matmul rate from each median epoch, in place."""
    flops = epoch_flops(workload.shapes, workload.config.task)
    for result in results.values():
        median = result["median_epoch_seconds"]
        for key in ("samples_per_second", "gflops", "fraction_of_matmul"):
            result[key] = None
        if not median:
            continue
        result["samples_per_second"] = workload.shapes["N_train"] / median
        result["gflops"] = flops / median / 1e9
        result["fraction_of_matmul"] = result["gflops"] / matmul[f"{dtype}_gflops"] if matmul else None


def labelled_results(runs: list[dict]) -> dict[str, dict]:
    """{'backend' or 'backend at label' (sweep points): result} of a document's runs, for noise_report."""
    return {f"{name}{' at ' + run['label'] if run.get('sweep_value') is not None else ''}": result
            for run in runs for name, result in run["results"].items()}


def noise_report(load: dict, results: dict[str, dict]) -> dict:
    """Is the machine busy, or a spread wide? The results file's ``noise``, with its one warning line.

    ``load``: {before, during, after} readings (reports.machine); busy when other processes used more
    than BUSY_OTHERS_CORES cores in any of them, or the load average before the run exceeded the cores
    (after the run it counts this run's own threads). ``results``: {label: result}; a wide spread: a
    result's rounds have (q3 - q1) / median above WIDE_SPREAD.
    """
    reasons = []
    readings = [r for r in (load.get("before"), load.get("during"), load.get("after")) if r]
    others = [r["others_cores"] for r in readings if r.get("others_cores") is not None]
    before = load.get("before") or {}
    cores = before.get("cores")
    if others and max(others) > BUSY_OTHERS_CORES:
        reasons.append(f"other processes used up to {max(others):.1f} of {cores or '?'} cores")
    if before.get("load_1min") is not None and cores and before["load_1min"] > cores:
        reasons.append(f"the load average was {before['load_1min']:.1f} on {cores} cores before the run")
    busy = bool(reasons)
    wide = {label: relative_spread(result["round_seconds"]) for label, result in results.items()
            if result.get("round_seconds") and result["median_epoch_seconds"]}
    wide = {label: width for label, width in wide.items() if width > WIDE_SPREAD}
    if wide:
        reasons.append("wide spread (q3-q1 over the median) of "
                       + ", ".join(f"{label} {width:.0%}" for label, width in wide.items()))
    warning = (f"WARNING: these timings are not trustworthy: {'; '.join(reasons)}; rerun on a quiet machine "
               f"(or with more --repeats)." if reasons else None)
    return {"busy": busy, "wide_spread": wide, "reasons": reasons, "warning": warning,
            "busy_others_cores": BUSY_OTHERS_CORES, "wide_spread_limit": WIDE_SPREAD}
