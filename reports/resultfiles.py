"""Results files of run_comparison.py and the bench tools: naming, assembling, atomic writing, reading, the schema.

Every run writes two files into ``reports/results/`` (or ``--out``), with one stem:

    <YYYY-MM-DD_HHMMSS>_<host>_<workload>[-<k>].json     everything, the file a report is built from
    <YYYY-MM-DD_HHMMSS>_<host>_<workload>[-<k>].csv      one row per (sweep value, backend, epoch)

The bench tools write files of the same schema, one pair per workload (and thread count or kernel
version), the stem ending in ``<workload>-cpu_bench``, ``<workload>-cpu_bench-1thread`` or
``<workload>-gpu_check-v<N>``; their documents add ``tool`` (and gpu_check's ``validation`` and
``budget``). gpu_check also writes ``gpu_check-validation`` (a failed validation) and ``gpu_check-plan``
(a run with --max-seconds, or one that skipped or stopped): documents with no runs.

Both files are published together by ``lstm_numpy.files.publish_files``: each is written in full to a
temporary file in the same folder, then linked into its name, which fails rather than replaces when
the name exists; if the second name cannot be created the first is removed again, so a run's files
appear together or not at all (Ctrl-C and a full disk included). An earlier run is never
overwritten (a second run in the same second gets the suffix ``-2``, ``-3``...) and a reader never
sees half a file. Files get mode 0666 less the umask. Non-finite numbers are written as null.

JSON schema (``"schema": "parallel-lstm/run_comparison/2"``; version 1, before the interleaved rounds, had
``median_epoch_seconds`` from the training run and ``parallel_efficiency`` = speedup / threads, which is
not an efficiency: do not read a version-1 file's as version 2's); seconds are wall-clock
seconds, *_per_epoch means averaged over the epochs of the training run. A spread is
{min, q1, median, q3, max} of per-round values (quartiles by linear interpolation). Every timing
comes from the interleaved rounds that follow the training runs (reports/measuring.py): ``repeats``
rounds, each running one epoch of every timed trainer in turn, so that all of them meet the same
machine noise:

    schema            str
    created           str, ISO 8601 local time with offset
    argv              [str]   the command-line options as given
    exit_code         int     0 agree, 1 a backend disagrees with the reference
    verdict           {agree: bool, line: str, reference: "numpy", dtype: str, rtol: float,
                       compared: [backend], mismatches: [{backend, label, message}]}
    config            the exact configuration: {workload, backends, epochs, lr, batch_size, hidden,
                       seq_len, samples, dtype, threads, seed, kernel_version, data, column,
                       cuda_simulator, sweep: {param, values} | null (param "threads" for a thread sweep),
                       repeats: int | null (timing rounds), blas_threads: int | null (--blas-threads: NumPy's
                       BLAS pinned to that many threads for the whole run), one_thread: bool (one-thread
                       trainers timed for parallel efficiency), weak: bool (weak thread scaling),
                       clip_norm: float | null (--clip-norm: every backend's global gradient-norm clip),
                       init_params: {path (absolute), sha256 (of the file)} | null (--init-params: every backend
                       started from that file instead of the workload's seeded weights), save_params: str | null
                       (--save-params: where the numpy reference's final weights were saved, absolute),
                       train_config: TrainConfig fields}
    machine           reports.machine.describe_machine(): {hostname, platform, machine, cpu_model,
                       logical_cores, physical_cores, usable_cores, memory_bytes,
                       missing_readings: [str] (what this system cannot read, null in the results: peak memory
                       without the resource module, the load average without os.getloadavg, other processes'
                       cores without /proc/stat; [] on Linux),
                       numba: {num_threads, max_threads, threading_layer, threading_layer_requested},
                       thread_environment: {VAR: value}, libraries: {name: version},
                       blas: {name, version, threads (NumPy's BLAS threads during the run)} | null,
                       cuda_simulator: bool, gpus: [{name, compute_capability, memory_bytes, driver}],
                       cuda_device: {device, compute_capability, simulator} | null}
    reference_matmul  {n, repeats, float64_gflops, float32_gflops, float64_seconds, float32_seconds}
                      (reports.measuring.matmul_gflops: one warm-up, then the median of repeats)
    availability      {backend: {available: bool, reason: str | null (why it cannot run here),
                                 skip: str | null (why a default run left it out), selected: bool,
                                 simulator: bool, describe: {...}}}   every registered backend
    runs              [run]   one per sweep value; a run without --sweep has exactly one
    sweep             null | {param, values: [int], median_epoch_seconds: {backend: [float | null]},
                              q1_epoch_seconds, q3_epoch_seconds (the same shape: the rounds' quartiles),
                              slopes: {backend: float | null}}   slope of log(time) against log(size);
                      a size sweep's points have no phases and no one-thread trainers; null for a thread sweep
    scaling           null | {backend: {threads: [int] (ascending, 1 first), median_seconds: [float],
                              q1_seconds: [float], q3_seconds: [float], speedup_vs_1: [float],
                              parallel_efficiency: [float], serial_fraction: float | null,
                              mode: "strong" | "weak", repeats: int}}
                      --sweep threads=...: every CPU backend (the numpy reference with its BLAS pinned) at
                      each thread count in the same rounds. strong (the same work): speedup_vs_1 = median
                      over rounds of T1/T(p), parallel_efficiency = speedup_vs_1 / p, serial_fraction = s
                      of T(p) = T1 (s + (1-s)/p) fitted by least squares to the medians, clipped to [0, 1];
                      weak (--weak: p times the samples on p threads): parallel_efficiency = median of
                      T1/T(p), speedup_vs_1 = p x that (scaled speedup), s from T(p) = T1 (1 + s (p-1))
    load              null | {before, after: {load_1min, cores, others_cores, window_s},
                              during: {others_cores, window_s}}   how busy the machine was: the 1-minute
                      load average, and the cores other processes used (machine busy time from /proc/stat
                      less this process's CPU time) over a short window before and after, and over the
                      whole measurement; others_cores is null where /proc/stat does not exist, load_1min where
                      os.getloadavg does not (Windows)
    noise             null | {busy: bool, wide_spread: {backend[ at label]: (q3-q1)/median}, reasons: [str],
                              warning: str | null (the one line printed), busy_others_cores: float,
                              wide_spread_limit: float}   busy: other processes used more than
                      busy_others_cores cores, or the load average before the run exceeded the cores; a wide
                      spread: a backend's rounds spread more than wide_spread_limit
    tool              only in the bench tools' files: "reports.cpu_bench" or "reports.gpu_check"
    validation        only in gpu_check's files: [{check, version, dtype, task, sizes, ok: bool, error}],
                      every kernel version against the reference, checked before anything is timed
    budget            only in gpu_check's timing and plan files: {max_seconds: float | null (--max-seconds),
                      elapsed_seconds (when the file was written), items: [{workload, entry ("numpy", "torch",
                      "numba_cuda v3", ...), status: "timed" | "skipped" | "failed" | "not reached", reason: str |
                      null (why skipped or failed), estimated_seconds: float | null (the planned cost to train and
                      time it, reports/gpu_budget.py), median_epoch_seconds: float | null (timed entries)}]},
                      what had become of every (workload, entry) pair by then

    run = {label: str, sweep_value: int | null,
           workload: {name, task, shapes: {N_train, N_valid, T, D, H, Y, B}, epochs, lr,
                      flops_per_epoch, flops_per_training_step},
           results: {backend: result}, failed: {backend: traceback str} (backends that raised)}

    result = {backend, simulator: bool, timed: bool (false on the simulator: no timing claims),
              train_loss: [float] per epoch, valid_loss: [float] per epoch,
              epoch_seconds: [float] the training run's epochs (not interleaved; the CSV's per-epoch times),
              round_seconds: [float] the timing rounds' full epochs, round_threads: [int | null] the threads
                     each round ran on, timing_rounds: int,
              median_epoch_seconds (median of round_seconds), epoch_spread: spread of round_seconds,
              compile_seconds, user_seconds_per_epoch, sys_seconds_per_epoch,
              speedup (median over rounds of numpy's round / this round), speedup_spread: spread | null,
              reference_blas_threads: int | null (the numpy reference's BLAS threads: every speedup divides
                     numpy on that many threads),
              threads: int | null (the thread count of most rounds; numpy: its BLAS's; null for devices),
              one_thread_round_seconds: [float] | null, one_thread_median_seconds: float | null (the same
                     backend on one thread in the same rounds: CPU backends on more than one thread),
              parallel_efficiency: float | null (median over rounds of T(1 thread) / (p x T(p threads)) of
                     THIS backend, p the round's threads; null where no one-thread time was measured),
              parallel_efficiency_spread: spread | null,
              samples_per_second, gflops, fraction_of_matmul (gflops / reference_matmul of the dtype),
              peak_rss_bytes (process peak so far), peak_rss_growth_bytes (how much this backend's run
              raised that peak) (both null without the POSIX resource module: machine.missing_readings), device_memory_bytes | null, is_device: bool (stats name a device other
              than the CPU, or transfers),
              breakdown: {forward_seconds, backward_seconds, update_seconds (each null: within noise),
                          forward_noise_seconds, backward_noise_seconds, update_noise_seconds (the IQR of the
                          per-round values), within_noise: [phase], sum_seconds (the phases shown),
                          epoch_seconds, epoch_noise_seconds (median and IQR of the full epochs), setup_seconds,
                          host_params_seconds, transfer_seconds | null, repeats} | null
                     forward = F, backward = (F+B) - F, update = full - (F+B) per round (reports.measuring.
                     phase_breakdown); a phase is shown when its median is positive and exceeds its IQR,
              breakdown_skipped: str | null (why there is no breakdown: an epoch over 60 s),
              agrees: bool | null (null for the reference and where not compared), mismatch: str | null,
              extrapolated_from_minibatches: int (gpu_check's CPU baselines on heavy and gpu only: timed
                     on that many minibatches and scaled to a full epoch; losses are those of the sample),
              napkin: {...} (gpu_check's numba_cuda results only): lstm_numba_cuda.napkin's prediction for the
                     version, workload and dtype: {version, workload, dtype, cooperative (v4: one launch per
                     minibatch), launches_per_epoch, flops_per_step, dram_bytes_per_step, l2_bytes_per_step,
                     onchip_bytes_per_step (a training minibatch's work / T), the same *_per_epoch,
                     host_launch_seconds, device_seconds, device_seconds_by_limit: {compute | on-chip | L2 |
                     DRAM | barriers: s}, predicted_epoch_seconds, bound ("launches" or the limit that takes most
                     device time), peak_flops (the dtype's FMA peak), measured_over_predicted (median epoch /
                     prediction), fraction_of_peak (flops_per_epoch / median epoch / peak_flops)},
              stats: {...} the backend's own facts (threads, threading_layer; device,
                     compute_capability, kernel_version, launches_per_epoch, h2d_per_epoch,
                     d2h_per_epoch, device_memory_bytes, simulator)}

Timing fields are null where ``timed`` is false. The CSV repeats each result's summary fields on its
rows, with the rounds' quartiles as ``q1_epoch_seconds`` and ``q3_epoch_seconds``; its ``epoch_seconds``
are the training run's. ``read_results(path)`` loads and checks a file;
``run_record``, ``config_record`` and ``results_document`` assemble one (the harness and the bench tools alike).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import socket
from datetime import datetime
from pathlib import Path

import numpy as np

from parallel_lstm.lstm_numpy.errors import NameTakenError, UserError
from parallel_lstm.lstm_numpy.files import publish_files
from parallel_lstm.lstm_numpy.flops import epoch_flops, training_flops

SCHEMA = "parallel-lstm/run_comparison/2"

CSV_COLUMNS = (
    "label", "sweep_param", "sweep_value", "workload", "task", "N_train", "N_valid", "T", "D", "H", "Y", "B",
    "dtype", "backend", "simulator", "epoch", "train_loss", "valid_loss", "epoch_seconds",
    "median_epoch_seconds", "q1_epoch_seconds", "q3_epoch_seconds", "timing_rounds", "compile_seconds",
    "user_seconds_per_epoch", "sys_seconds_per_epoch", "speedup", "reference_blas_threads", "threads",
    "one_thread_median_seconds", "parallel_efficiency", "samples_per_second", "gflops", "fraction_of_matmul",
    "peak_rss_bytes", "device_memory_bytes", "agrees",
)


def default_results_dir() -> Path:
    """reports/results/ of the checkout this package lives in, else of the current directory."""
    here = Path(__file__).resolve().parent.parent
    root = here if (here / "pyproject.toml").exists() else Path.cwd()
    return root / "reports" / "results"


def run_record(label: str, sweep_value, workload, results: dict, failed: dict) -> dict:
    """One entry of ``runs``: the workload's shapes and FLOP counts and every backend's result."""
    shapes, config = workload.shapes, workload.config
    return {"label": label, "sweep_value": sweep_value, "results": results, "failed": failed,
            "workload": {"name": workload.name, "task": config.task, "shapes": shapes,
                         "epochs": config.epochs, "lr": config.lr,
                         "flops_per_epoch": epoch_flops(shapes, config.task),
                         "flops_per_training_step": training_flops(
                             shapes["T"], shapes["B"], shapes["D"], shapes["H"], shapes["Y"], config.task)}}


def config_record(workload, backends: list[str], dtype: str, *, data: str | None = None, column: str | None = None,
                  cuda_simulator: bool = False, sweep: tuple[str, list[int]] | None = None,
                  repeats: int | None = None, blas_threads: int | None = None, one_thread: bool = False,
                  weak: bool = False, init_params: dict | None = None, save_params: str | None = None) -> dict:
    """The ``config`` entry: the exact configuration of a run whose (first) workload is ``workload``."""
    config = workload.config
    return {"workload": workload.name, "backends": backends, "epochs": config.epochs, "lr": config.lr,
            "batch_size": config.batch_size, "hidden": workload.sizes[1], "seq_len": workload.shapes["T"],
            "samples": workload.shapes["N_train"], "dtype": dtype, "threads": config.threads,
            "seed": config.seed, "kernel_version": config.kernel_version,
            "data": os.path.abspath(data) if data else None, "column": column,
            "cuda_simulator": cuda_simulator,
            "sweep": {"param": sweep[0], "values": sweep[1]} if sweep else None,
            "repeats": repeats, "blas_threads": blas_threads, "one_thread": one_thread, "weak": weak,
            "clip_norm": config.clip_norm, "init_params": init_params, "save_params": save_params,
            "train_config": dataclasses.asdict(config)}


def results_document(*, argv: list[str], exit_code: int, verdict: dict, config: dict, machine: dict,
                     reference_matmul: dict | None, census: dict, runs: list[dict], sweep: dict | None,
                     load: dict | None = None, noise: dict | None = None, scaling: dict | None = None,
                     **extra) -> dict:
    """A whole results document (the schema above); ``census`` maps names to reports.census.BackendStatus,
    ``extra`` adds the bench tools' keys (tool, validation)."""
    return {
        "schema": SCHEMA, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": list(argv), "exit_code": exit_code, "verdict": verdict, "config": config, "machine": machine,
        "reference_matmul": reference_matmul,
        "availability": {n: {"available": s.reason is None, "reason": s.reason, "skip": s.skip,
                             "selected": s.selected, "simulator": s.simulator, "describe": s.describe}
                         for n, s in census.items()},
        "runs": runs,
        "sweep": sweep,
        "load": load,
        "noise": noise,
        "scaling": scaling,
        **extra,
    }


def jsonable(value):
    """Plain JSON values: NumPy scalars and arrays converted, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.dtype):
        return str(value)
    return repr(value)


def csv_rows(document: dict) -> list[dict]:
    """One row per (run, backend, epoch), every per-backend summary repeated on its rows."""
    rows = []
    sweep_param = (document.get("sweep") or {}).get("param")
    dtype = document["config"]["dtype"]
    for run in document["runs"]:
        workload = run["workload"]
        for name, result in run["results"].items():
            for epoch, (train, valid) in enumerate(zip(result["train_loss"], result["valid_loss"])):
                seconds = result["epoch_seconds"][epoch] if result.get("epoch_seconds") else None
                spread = result.get("epoch_spread") or {}
                row = {"label": run["label"], "sweep_param": sweep_param, "sweep_value": run["sweep_value"],
                       "workload": workload["name"], "task": workload["task"], **workload["shapes"],
                       "dtype": dtype, "backend": name, "epoch": epoch, "train_loss": train,
                       "valid_loss": valid, "epoch_seconds": seconds,
                       "q1_epoch_seconds": spread.get("q1"), "q3_epoch_seconds": spread.get("q3")}
                for column in CSV_COLUMNS:
                    if column not in row:
                        row[column] = result.get(column)
                rows.append(row)
    return rows


def csv_text(rows: list[dict], columns) -> str:
    """``rows`` as CSV text with a header of ``columns``: empty cells for null or missing, floats in full (repr)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else
                             repr(row[k]) if isinstance(row.get(k), float) else row[k]) for k in columns})
    return buffer.getvalue()


def results_stem(workload: str, when: datetime | None = None, host: str | None = None) -> str:
    """<date_time>_<host>_<workload>, with the host reduced to file-name-safe characters."""
    when = when or datetime.now()
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", host or socket.gethostname()).strip("-.") or "host"
    return f"{when:%Y-%m-%d_%H%M%S}_{host}_{workload}"


def write_results(out_dir: str, stem: str, document: dict) -> tuple[str, str]:
    """Write <stem>.json and <stem>.csv into out_dir together (both or neither, lstm_numpy.files),
    never over an earlier run's files. Returns the two paths written.
    """
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the results folder {out_dir} ({exc.strerror}); choose another with --out.") from None
    document = jsonable(document)
    json_text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    table = csv_text(csv_rows(document), CSV_COLUMNS)
    for k in range(1, 10_000):
        name = stem if k == 1 else f"{stem}-{k}"
        json_path = os.path.join(out_dir, name + ".json")
        csv_path = os.path.join(out_dir, name + ".csv")
        if os.path.exists(json_path) or os.path.exists(csv_path):
            continue
        try:   # the JSON last: a reader that finds it finds its CSV
            publish_files([(csv_path, table), (json_path, json_text)], what="results file")
        except NameTakenError:          # another run took the name just now
            continue
        return json_path, csv_path
    raise UserError(f"no free results file name for {stem} in {out_dir}; choose another folder with --out.")


def read_results(path) -> dict:
    """Load a JSON results file and check it is one of ours."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a run_comparison results file of schema {SCHEMA}.")
    return document
