"""The report is built from chosen results files: a folder of synthetic results files into a temporary folder."""
import csv
import json
import os
import re
import struct

import numpy as np
import pytest

from parallel_lstm.lstm_numpy.flops import epoch_flops
from parallel_lstm.reports import build, figures, timing_figures
from parallel_lstm.reports.build import build_report, main as build_main
from results_factory import SHAPES, document, sweep_document, write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DAY = "2026-11-22T"
HIDDEN = [8, 16, 32, 64]


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    return struct.unpack(">II", raw[16:24])


def hidden_times(h):
    """Synthetic epoch times that grow as H^1.5 (numpy) and H^1.2 (numba_cpu)."""
    return {"numpy": 1e-4 * h ** 1.5, "numba_cpu": 1e-4 * h ** 1.2}


def results_folder(folder):
    """Every kind of file the report meets: main runs, a pair, sweeps, a scaling entry, GPU versions, bad files."""
    spread = {"min": 0.0018, "q1": 0.0019, "median": 0.002, "q3": 0.0021, "max": 0.0025, "repeats": 7}
    write(folder, "a_seed", document("seed", created=DAY + "09:00:00+00:00", spread=spread, commit="abc123"))
    write(folder, "b_light", document("light", created=DAY + "09:10:00+00:00", epochs=6,
                                      noisy=["another process took 40% of a core"],
                                      load={"before": {}, "after": {}, "busy": True, "notes": ["load 3.1 on 2 cores"]}))
    write(folder, "c_heavy", document("heavy", created=DAY + "09:20:00+00:00", times={"numpy": 6.0, "numba_cpu": 2.5}))
    write(folder, "d_heavy-1thread", document("heavy", created=DAY + "09:30:00+00:00", threads=1,
                                              times={"numpy": 6.0, "numba_cpu": 4.0}))
    scaling = {"numba_cpu": {"threads": [1, 2, 4], "median_seconds": [1.0, 0.6, 0.4], "q1_seconds": [0.95, 0.55, 0.38],
                             "q3_seconds": [1.05, 0.65, 0.42], "serial_fraction": 0.2, "mode": "strong"}}
    write(folder, "e_heavy-f32", document("heavy", "float32", created=DAY + "09:40:00+00:00", epochs=1,
                                          scaling=scaling))
    write(folder, "f_light-hidden", sweep_document("light", "hidden", HIDDEN, hidden_times,
                                                   created=DAY + "10:00:00+00:00"))
    for version in (1, 2):
        gpu = document("heavy", created=DAY + f"11:0{version}:00+00:00", tool="reports.gpu_check",
                       times={"numpy": 6.0, "numba_cuda": 0.5 / version})
        gpu["config"]["kernel_version"] = version
        write(folder, f"g_heavy-gpu_check-v{version}", gpu)
    write(folder, "h_light-sim", document("light", created=DAY + "12:00:00+00:00", simulator=True,
                                          times={"numpy": 0.01, "numba_cuda": 0.5}))
    (folder / "i_truncated.json").write_text('{"schema": "parallel-lstm/run_comparison/1", "runs": [{')
    return folder


def stub_forecast(folder, seeds, backend, overrides):
    """A stand-in for the forecast section (a fresh training run), where a test is about the timing part."""
    return ["## Forecast", "", "(stub)"], []


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    build_report(folder, results_folder(folder / "results"), seeds=2, forecast_overrides={"epochs": 5})
    return folder


EXPECTED = ["passengers", "change", "change-normalized", "change-encoded", "losses-seed", "losses-light",
            "loss-difference-float64", "loss-difference-float32", "epoch-time-float64", "epoch-time-float32",
            "speedup-float64", "speedup-float32", "breakdown-float64", "breakdown-float32", "jit-payoff-float64",
            "jit-payoff-float32",
            "sweep-light-float64-hidden", "strong-scaling-heavy-float64", "strong-scaling-heavy-float32",
            "cuda-versions-float64", "forecast"]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_figure_is_a_plausible_png_and_a_pdf_with_truetype_fonts(report, name):
    png = report / "figures" / f"{name}.png"
    width, height = png_size(png)
    assert 600 <= width <= 2400 and 300 <= height <= 1400
    assert png.stat().st_size > 15_000, "a figure this small has lost its content"
    pdf = (report / "figures" / f"{name}.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-"
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf        # TrueType (pdf.fonttype 42), no Type 3
    assert b"/CreationDate" not in pdf
    assert f"(figures/{name}.png)" in (report / "REPORT.md").read_text()


def test_no_other_figures_are_written(report):
    names = {p.stem for p in (report / "figures").iterdir()}
    assert names == set(EXPECTED)


def test_report_lists_the_files_used_and_skipped_at_the_top(report):
    text = (report / "REPORT.md").read_text()
    files = text[text.index("## Results files"):text.index("## Data")]
    used, skipped = files.split("Skipped:")
    for name in ("a_seed", "b_light", "c_heavy", "d_heavy-1thread", "e_heavy-f32", "f_light-hidden",
                 "g_heavy-gpu_check-v1", "g_heavy-gpu_check-v2"):
        assert f"- `{name}.json`: " in used
    assert "- `d_heavy-1thread.json`: the one-thread side of the `heavy` float64 parallel efficiency" in used
    assert re.search(r"- `h_light-sim.json`: made on Numba's CUDA simulator.*--include-simulator", skipped)
    assert "- `i_truncated.json`: not valid JSON (truncated or damaged" in skipped
    assert text.index("## Results files") < text.index("## Data")


def test_parallel_efficiency_is_the_same_backends_one_thread_time_and_nothing_else(report):
    text = (report / "REPORT.md").read_text()
    assert "efficiency/thread" not in text
    heavy = text[text.index("**heavy** (N_train=256"):]
    heavy_table = heavy[:heavy.index("\n\n", heavy.index("| backend"))]
    assert "| parallel efficiency |" in heavy_table
    assert re.search(r"\| numba_cpu \| 2\.50 s \| .* \| 2\.40x \| 80% \|", heavy_table)    # 4.0 / (2 x 2.5)
    assert re.search(r"\| numpy \| 6\.00 s \| .* \| not measured \|", heavy_table)
    seed = text[text.index("**seed** (N_train=59"):]
    assert "parallel efficiency" not in seed[:seed.index("\n\n", seed.index("| backend"))]
    assert "1 thread 4 s, 2 threads 2.5 s (80%)" in text


def test_busy_machines_noisy_results_and_missing_spread_are_marked(report):
    text = (report / "REPORT.md").read_text()
    light = text[text.index("**light** (N_train=95"):]
    assert re.search(r"\| numba_cpu \| 2\.00 ms † \|", light)
    assert "BUSY MACHINE: light: machine busy during this run (load 3.1 on 2 cores)" in text
    assert "file `b_light.json`) **Warning: machine busy during this run (load 3.1 on 2 cores).**" in text
    assert "another process took 40% of a core" in text
    assert "seed: quartiles of 7 repeats" in text              # epoch_spread as recorded
    assert "light: quartiles of the 6 recorded epochs" in text     # older files: the epoch list
    assert "heavy: no spread recorded" in text                 # float32 run of one epoch
    assert "No spread recorded for the speedup" in text


def test_hidden_sweep_states_the_work_models_slope_and_the_fitted_ones(report):
    text = (report / "REPORT.md").read_text()
    flops = [epoch_flops(dict(SHAPES["light"], H=h), "regression") for h in HIDDEN]
    expected = np.polyfit(np.log(HIDDEN), np.log(flops), 1)[0]
    assert 1.7 < expected < 2.0
    assert f"grows with log-log slope {expected:.2f} over these sizes" in text
    assert "about as H^2" in text
    assert "numpy 1.50, which grows slower than the work" in text and "numba_cpu 1.20" in text


def test_summary_csv_has_one_row_per_run_and_backend_of_the_files_used(report):
    with open(report / "results-summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    seed = [r for r in rows if r["workload"] == "seed"]
    assert [(r["backend"], r["commit"]) for r in seed] == [("numpy", "abc123"), ("numba_cpu", "abc123")]
    assert float(seed[1]["q1_seconds"]) == 0.0019 and seed[1]["repeats"] == "7"
    sweep = [r for r in rows if r["sweep_param"] == "hidden"]
    assert sorted({int(r["sweep_value"]) for r in sweep}) == HIDDEN and len(sweep) == 2 * len(HIDDEN)
    assert {r["file"] for r in rows} == {f"{n}.json" for n in ("a_seed", "b_light", "c_heavy", "d_heavy-1thread",
                                                               "e_heavy-f32", "f_light-hidden",
                                                               "g_heavy-gpu_check-v1", "g_heavy-gpu_check-v2")}
    assert all(r["commit"] == "" for r in rows if r["workload"] != "seed")       # not recorded: null
    assert [r["busy_machine"] for r in rows if r["workload"] == "light" and not r["sweep_param"]] == ["True", "True"]


def test_report_md_holds_the_original_format_and_forecast_tables(report):
    text = (report / "REPORT.md").read_text()
    assert ("| implementation | CPU user | CPU sys | wall (3 epochs) | JIT compile (apart) | speedup over NumPy |"
            in text)
    assert "| Numba-CUDA V3 (read-only arrays kept on the device) | 17.2 s | 1703% |" in text
    assert "| method | horizon | RMSE | MAE | MAPE | MASE |" in text
    assert "| seasonal naive | one-step | 50.0 |" in text
    assert "| seed | one-step RMSE |" in text and text.count("\n| 1 | ") == 1   # one row per seed


def test_rebuilding_from_the_same_results_writes_the_same_bytes(report, tmp_path):
    build_report(tmp_path, report / "results", seeds=2, forecast_overrides={"epochs": 5})
    first = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file() and "results" not in p.parts)
    again = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert first == again
    different = [str(p) for p in first if (report / p).read_bytes() != (tmp_path / p).read_bytes()]
    assert different == []


def test_time_bars_are_linear_with_their_values_printed(monkeypatch, tmp_path):
    seen = {}

    def keep(fig, folder, name, notes=()):
        seen[name] = [(ax.get_yscale(), [t.get_text() for t in ax.texts]) for ax in fig.axes]
        return figures.save(fig, folder, name, notes)
    monkeypatch.setattr(timing_figures, "save", keep)
    mains = {"seed": document("seed", times={"numpy": 0.00876, "numba_cpu": 0.00152}),
             "heavy": document("heavy", times={"numpy": 2.38, "numba_cpu": 0.937})}
    timing_figures.epoch_time_figure(str(tmp_path), "float64", mains)
    timing_figures.speedup_figure(str(tmp_path), "float64", mains)
    assert seen["epoch-time-float64"] == [("linear", ["8.76 ms", "1.52 ms"]), ("linear", ["2.38 s", "0.937 s"])]
    assert seen["speedup-float64"] == [("linear", ["5.76x", "2.54x"])]


@pytest.mark.parametrize("low, high", [(0.0048, 0.0061), (1e-4, 3.0), (0.5, 0.9), (1e-6, 1e3)])
def test_log_axes_carry_few_labels_that_never_overlap(low, high):
    fig, ax = figures.plt.subplots(figsize=(6, 4))
    ax.plot([1, 2], [low, high])
    figures.log_axis(ax.yaxis, low, high, figures.short_seconds)
    figures.log_axis(ax.xaxis, 1, 2, str, ticks=[1, 2])
    fig.canvas.draw()
    for axis in (ax.yaxis, ax.xaxis):
        assert all(not t.get_text() for t in axis.get_ticklabels(minor=True))
        boxes = [t.get_window_extent() for t in axis.get_ticklabels() if t.get_text()]
        assert 2 <= len(boxes) <= 7
        assert not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
    figures.plt.close(fig)


def test_thread_and_size_ticks_leave_out_values_too_close_to_label():
    assert figures.spaced_ticks([1, 2, 4, 8, 16]) == [1, 2, 4, 8, 16]
    assert figures.spaced_ticks(range(1, 17)) == [1, 2, 3, 5, 7, 10, 16]
    assert figures.spaced_ticks([100, 110, 120, 130]) == [100, 130]


def test_the_committed_results_still_build(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "forecast_section", stub_forecast)
    build_report(tmp_path, os.path.join("reports", "results"))
    text = (tmp_path / "REPORT.md").read_text()
    assert "- `2026-11-23_080545_vm_heavy.json`: newest complete `heavy` float64 run" in text
    assert "- `2026-11-21_072605_vm_heavy.json`: older than `2026-11-23_080545_vm_heavy.json`" in text
    assert "(figures/strong-scaling-heavy-float64.png)" in text and "efficiency/thread" not in text
    assert (tmp_path / "figures" / "sweep-light-float64-hidden.pdf").exists()


@pytest.mark.parametrize("argv, message", [
    (["--forecast-backend", "tensorflow"], "invalid choice: 'tensorflow'"),
    (["--seeds", "0"], "must be a positive integer"),
    (["--results", "no/such/folder"], "results path no/such/folder does not exist"),
])
def test_bad_options_are_one_sentence_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert build_main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_an_out_path_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "REPORT.md"
    target.write_text("mine")
    assert build_main(["--results", str(tmp_path), "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "mine"


def test_figures_of_an_earlier_build_that_this_one_does_not_write_are_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "forecast_section", stub_forecast)
    figures_folder = tmp_path / "figures"
    figures_folder.mkdir()
    for name in ("scaling-heavy-samples.png", "epoch-time.pdf", "my-own-plot.png", "notes.txt"):
        (figures_folder / name).write_text("earlier")
    build_report(tmp_path, results_folder(tmp_path / "results"))
    left = {p.name for p in figures_folder.iterdir()}
    assert {"my-own-plot.png", "notes.txt", "epoch-time-float64.png"} <= left
    assert not {"scaling-heavy-samples.png", "epoch-time.pdf"} & left


def test_the_command_line_names_damaged_files_and_builds(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(build, "forecast_section", stub_forecast)
    results = tmp_path / "results"
    write(results, "light", document("light"))
    (results / "broken.json").write_text(json.dumps(document("seed"))[:200])
    assert build_main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parallel-lstm report: skipped broken.json: not valid JSON")
    assert "wrote" in captured.out and (tmp_path / "out" / "results-summary.csv").exists()


def test_new_fields_speedup_spread_blas_threads_and_weak_scaling_are_drawn(tmp_path):
    doc = document("heavy", times={"numpy": 6.0, "numba_cpu": 2.0},
                   scaling={"numba_cpu": {"threads": [1, 2, 4], "median_seconds": [1.0, 1.1, 1.3],
                                          "mode": "weak", "serial_fraction": None}})
    doc["config"]["reference_blas_threads"] = 1
    doc["runs"][0]["results"]["numba_cpu"]["speedup_spread"] = {"q1": 2.9, "median": 3.0, "q3": 3.2}
    speedup = timing_figures.speedup_figure(str(tmp_path), "float64", {"heavy": doc})
    assert speedup.notes[:2] == ["Error bars from the recorded speedup quartiles.",
                                 "heavy: the NumPy reference ran on 1 BLAS thread."]
    series = build.scaling_series(doc)
    assert [(s.mode, s.serial_fraction) for s in series] == [("weak", None)]
    [weak] = timing_figures.thread_scaling_figure(str(tmp_path), "heavy", "float64", series, {"run": doc}, "a test")
    assert weak.name == "weak-scaling-heavy-float64" and "No spread recorded for numba_cpu." in weak.notes
    assert png_size(tmp_path / "weak-scaling-heavy-float64.png")[0] > 600
