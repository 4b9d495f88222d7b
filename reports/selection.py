"""Which results files the report is built from, and why; every other file gets one reason it was skipped.

    select(paths, include_simulator=False, include_data=False) -> Selection

``paths`` are folders (every ``*.json`` in them) or files chosen by hand. A file is usable when it
is a complete run: exit status 0 or 1 (1: a backend disagreed, which the report shows) with a
result for every backend it selected, made on real hardware (no CUDA simulator) on the AirPassengers
data and the synthetic workloads (``config.data`` null). Simulator runs and ``--data`` runs are
used only when asked for (``include_simulator``, ``include_data``) or when the file is named by hand.
Among usable files the newest (by ``created``) wins each role:

    main      per workload and dtype: the newest run that is not a sweep, not on one thread and not a
              gpu_check file (loss curves, timing tables and bars, breakdown, JIT payoff)
    pair      per workload and dtype: a one-thread run and an N-thread run of the same machine
              (hostname and CPU model) made on the same day, the newest such pair (parallel efficiency).
              reports.cpu_bench writes ``<workload>-cpu_bench`` and ``<workload>-cpu_bench-1thread``
              together: they pair only with each other and are used or skipped together
    scaling   per workload and dtype: the newest file with a ``scaling`` entry or a sweep of threads
    sweep     per workload, dtype and swept parameter: the newest sweep
    cuda      per workload, dtype and CUDA kernel version: the newest timing of that version on a GPU

A file that cannot be read, is not JSON, or is not one JSON object is named and skipped, never raised.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from datetime import timedelta

from parallel_lstm.lstm_numpy import UserError

from .readings import created_at, kernel_version, machine_key, run_day, timed_results

SCHEMA_PREFIX = "parallel-lstm/run_comparison/"
CPU_BENCH, GPU_CHECK = "reports.cpu_bench", "reports.gpu_check"
PAIR_WINDOW = timedelta(minutes=10)      # a cpu_bench pair is made seconds apart


@dataclasses.dataclass
class Selection:
    """The documents chosen for each role (each carries ``_file``), and the reasons for every file."""

    main: dict = dataclasses.field(default_factory=dict)       # (workload, dtype) -> document
    pairs: dict = dataclasses.field(default_factory=dict)      # (workload, dtype) -> (N-thread, 1-thread)
    scaling: dict = dataclasses.field(default_factory=dict)    # (workload, dtype) -> document
    sweeps: dict = dataclasses.field(default_factory=dict)     # (workload, dtype, param) -> document
    cuda: dict = dataclasses.field(default_factory=dict)       # (workload, dtype, version) -> document
    used: dict = dataclasses.field(default_factory=dict)       # file name -> [why it was chosen]
    skipped: dict = dataclasses.field(default_factory=dict)    # file name -> one reason
    damaged: list = dataclasses.field(default_factory=list)    # names of files that are not a JSON object

    def documents(self) -> list[dict]:
        """Every chosen document once, oldest first."""
        seen = {}
        for doc in [*self.main.values(), *(d for pair in self.pairs.values() for d in pair),
                    *self.scaling.values(), *self.sweeps.values(), *self.cuda.values()]:
            seen[doc["_file"]] = doc
        return sorted(seen.values(), key=age_key)


def age_key(document: dict) -> tuple:
    """Sort key, oldest first: the creation time (unknown times first), then the file name."""
    when = created_at(document)
    return (when is not None, when.timestamp() if when else 0.0, document["_file"])


def results_paths(paths: list[str]) -> list[tuple[str, bool]]:
    """[(path of a JSON file, chosen by hand)] from folders and files; UserError for a path that is missing."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += [(p, False) for p in sorted(glob.glob(os.path.join(path, "*.json")))]
        elif os.path.isfile(path):
            found.append((path, True))
        else:
            raise UserError(f"results path {path} does not exist; run parallel-lstm compare first "
                            f"or name an existing folder or results file.")
    return found


def load(path: str) -> tuple[dict | None, str | None]:
    """(document, None) or (None, why the file cannot be used as a document)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc.__class__.__name__}: {exc})"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON (truncated or damaged: {exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(document, dict):
        return None, f"not a results file: the JSON is a {type(document).__name__}, not an object"
    return document, structure_problem(document)


def structure_problem(document: dict) -> str | None:
    """Why a JSON object is not a results document the report can read, or None."""
    schema = document.get("schema")
    if not str(schema).startswith(SCHEMA_PREFIX):
        return f"not a results file of schema {SCHEMA_PREFIX}* (schema {schema!r})"
    config, runs = document.get("config"), document.get("runs")
    if not isinstance(config, dict) or not isinstance(config.get("workload"), str) \
            or not isinstance(config.get("dtype"), str):
        return "its config lacks the workload or dtype"
    if not isinstance(runs, list) or not runs:
        return ("it holds no runs (a gpu_check whose validation failed, a gpu_check plan, or an empty file): "
                "nothing to plot")
    for run in runs:
        if not isinstance(run, dict) or not isinstance(run.get("results"), dict) \
                or not all(isinstance(r, dict) for r in run["results"].values()):
            return "a run in it has no results table"
    return None


def disqualified(document: dict, include_simulator: bool, include_data: bool) -> str | None:
    """Why a readable document is not a complete run the report may use, or None."""
    code = document.get("exit_code")
    if code not in (0, 1):
        return f"a failed run (exit status {code})"
    config = document["config"]
    for run in document["runs"]:
        missing = [b for b in config.get("backends") or [] if b not in run["results"]]
        if missing:
            raised = " (it raised)" if missing[0] in (run.get("failed") or {}) else ""
            return f"partial: {missing[0]} has no results{raised}" + (f" in run {run.get('label')}"
                                                                       if len(document["runs"]) > 1 else "")
    simulated = config.get("cuda_simulator") is True or any(
        r.get("simulator") is True for run in document["runs"] for r in run["results"].values())
    if simulated and not include_simulator:
        return "made on Numba's CUDA simulator, which times nothing (--include-simulator uses it)"
    if config.get("data") and not include_data:
        return (f"trained on --data {os.path.basename(str(config['data']))}, not the AirPassengers data "
                f"(--include-data uses it)")
    return None


def role_of(document: dict) -> str:
    """main, one_thread, scaling, sweep or cuda: the role a usable document competes for first."""
    config, sweep = document["config"], document.get("sweep")
    if document.get("tool") == GPU_CHECK:
        return "cuda"
    if isinstance(sweep, dict) and sweep.get("param") == "threads":
        return "scaling"
    if isinstance(sweep, dict):
        return "sweep"
    if config.get("threads") == 1:
        return "one_thread"
    return "main"


def description(document: dict) -> str:
    config = document["config"]
    return f"`{config['workload']}` {config['dtype']}"


def cpu_bench_partner(document: dict, documents: list[dict]) -> dict | None:
    """The other file of a reports.cpu_bench pair (every thread / one thread), or None."""
    if document.get("tool") != CPU_BENCH:
        return None
    one = document["config"].get("threads") == 1
    when = created_at(document)
    for other in documents:
        if other is document or other.get("tool") != CPU_BENCH or (other["config"].get("threads") == 1) == one:
            continue
        other_when = created_at(other)
        if (other["config"]["workload"], other["config"]["dtype"], machine_key(other), other.get("argv")) == \
                (document["config"]["workload"], document["config"]["dtype"], machine_key(document),
                 document.get("argv")) and when and other_when and abs(other_when - when) <= PAIR_WINDOW:
            return other
    return None


def parallel_backends(many: dict, one: dict) -> list[str]:
    """Backends timed on one thread in ``one`` and on more in ``many``: those a pair measures."""
    single, multi = timed_results(one), timed_results(many)
    return [b for b in single if b in multi and single[b].get("threads") == 1
            and isinstance(multi[b].get("threads"), int) and multi[b]["threads"] > 1]


def pair_candidates(usable: list[dict]) -> dict:
    """(workload, dtype) -> [(N-thread document, 1-thread document)], same machine and day."""
    candidates: dict = {}
    for one in (d for d in usable if role_of(d) == "one_thread"):
        if one.get("tool") == CPU_BENCH:
            many = [cpu_bench_partner(one, usable)]
        else:
            many = [d for d in usable if role_of(d) == "main" and d.get("tool") != CPU_BENCH
                    and (d["config"]["workload"], d["config"]["dtype"]) == (one["config"]["workload"],
                                                                           one["config"]["dtype"])
                    and machine_key(d) == machine_key(one) and run_day(d) == run_day(one)]
        for d in many:
            if d is not None and parallel_backends(d, one):
                candidates.setdefault((one["config"]["workload"], one["config"]["dtype"]), []).append((d, one))
    return candidates


def choose(selection: Selection, usable: list[dict], explicit: set) -> None:
    """Fill the roles from the usable documents (oldest first), newest winning; record why."""
    def use(document, why):
        hand = " (named on the command line)" if document["_file"] in explicit else ""
        selection.used.setdefault(document["_file"], []).append(why + hand)

    for document in usable:
        config, role = document["config"], role_of(document)
        key = (config["workload"], config["dtype"])
        if role == "main":
            selection.main[key] = document
        elif role == "scaling":
            selection.scaling[key] = document
        elif role == "sweep":
            selection.sweeps[key + (document["sweep"].get("param"),)] = document
        elif role == "cuda" and "numba_cuda" in timed_results(document):
            selection.cuda[key + (kernel_version(document),)] = document
        if isinstance(document.get("scaling"), dict) and role != "scaling":
            selection.scaling[key] = document
    for key, pairs in pair_candidates(usable).items():
        selection.pairs[key] = max(pairs, key=lambda pair: max(age_key(pair[0]), age_key(pair[1])))

    for (workload, dtype), document in selection.main.items():
        use(document, f"newest complete `{workload}` {dtype} run: loss curves, timing table and figures")
    for (workload, dtype), (many, one) in selection.pairs.items():
        use(many, f"the many-thread side of the `{workload}` {dtype} parallel efficiency, with `{one['_file']}`")
        use(one, f"the one-thread side of the `{workload}` {dtype} parallel efficiency, with `{many['_file']}` "
                 f"(same machine, same day)")
    for (workload, dtype), document in selection.scaling.items():
        use(document, f"newest `{workload}` {dtype} thread-scaling run")
    for (workload, dtype, param), document in selection.sweeps.items():
        use(document, f"newest `{workload}` {dtype} sweep of {param}")
    for (workload, dtype, version), document in selection.cuda.items():
        use(document, f"newest `{workload}` {dtype} GPU timing of CUDA kernel v{version}")


def why_not_used(document: dict, selection: Selection) -> str:
    """The one reason a usable document was left out: a newer file took its role."""
    config, role = document["config"], role_of(document)
    key = (config["workload"], config["dtype"])
    winner = {"main": selection.main.get(key), "scaling": selection.scaling.get(key),
              "sweep": selection.sweeps.get(key + ((document.get("sweep") or {}).get("param"),)),
              "cuda": selection.cuda.get(key + (kernel_version(document),))}.get(role)
    if role == "one_thread":
        pair = selection.pairs.get(key)
        if pair:
            return f"a newer one-thread pairing for {description(document)} exists (`{pair[1]['_file']}`)"
        return (f"one-thread run with no many-thread run of {description(document)} from the same machine "
                f"and day to pair it with")
    if role == "cuda" and winner is None:
        return "no GPU timing of numba_cuda in it"
    if winner is not None:
        return f"older than `{winner['_file']}` for {description(document)} ({role} role)"
    return f"nothing in the report uses it ({role} role)"


def select(paths: list[str], include_simulator: bool = False, include_data: bool = False) -> Selection:
    """Read the results files under ``paths`` and choose the ones the report is built from."""
    selection, usable, explicit = Selection(), [], set()
    for path, by_hand in results_paths(paths):
        name = os.path.basename(path)
        document, problem = load(path)
        if document is None:
            selection.damaged.append(name)
        elif problem is None:
            problem = disqualified(document, include_simulator or by_hand, include_data or by_hand)
        if problem is not None:
            selection.skipped[name] = problem
            continue
        document["_file"] = name
        usable.append(document)
        if by_hand:
            explicit.add(name)
    usable.sort(key=age_key)
    for document in list(usable):        # a cpu_bench pair is used or skipped together
        partner_needed = document.get("tool") == CPU_BENCH
        if partner_needed and cpu_bench_partner(document, usable) is None:
            selection.skipped[document["_file"]] = "its partner file from the same parallel-lstm bench run is missing or skipped"
            usable.remove(document)
    choose(selection, usable, explicit)
    for document in usable:
        if document["_file"] not in selection.used:
            selection.skipped[document["_file"]] = why_not_used(document, selection)
    return selection
