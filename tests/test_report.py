"""The report is built from results files: a tiny run into a temporary folder."""
import struct

import pytest

import run_comparison
from reports.build import build_report, main as build_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    results = folder / "results"
    for argv in (["--epochs", "2"], ["--workload", "light", "--epochs", "2"],
                 ["--workload", "light", "--epochs", "1", "--sweep", "hidden=4,8"]):
        assert run_comparison.main(argv + ["--backends", "numpy", "--out", str(results), "--quiet"]) == 0
    build_report(folder, results, seeds=2, forecast_overrides={"epochs": 5})   # a short forecast keeps this quick
    return folder


EXPECTED = ["passengers", "change", "change-normalized", "change-encoded", "losses-seed", "losses-light",
            "epoch-time", "speedup", "scaling-light-hidden", "forecast"]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_figure_is_a_plausible_png_and_a_pdf(report, name):
    png = report / "figures" / f"{name}.png"
    width, height = png_size(png)
    assert 600 <= width <= 2400 and 300 <= height <= 1400
    assert png.stat().st_size > 15_000, "a figure this small has lost its content"
    assert (report / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_md_holds_its_tables(report):
    text = (report / "REPORT.md").read_text()
    assert "| implementation | CPU user | CPU sys | wall (6 epochs)" not in text   # 2 epochs were run
    assert "| implementation | CPU user | CPU sys | wall (2 epochs) | JIT compile (apart) | efficiency |" in text
    assert "| Numba-CUDA V3 (read-only arrays kept on the device) | 17.2 s | 1703% |" in text
    assert "| method | horizon | RMSE | MAE | MAPE | MASE |" in text
    assert "| seasonal naive | one-step | 50.0 |" in text
    assert "| seed | one-step RMSE |" in text and text.count("\n| 1 | ") == 1   # one row per seed
    assert "Scaling with hidden on light ([4, 8])" in text
    for name in EXPECTED:
        assert f"(figures/{name}.png)" in text


def test_missing_results_folder_is_one_sentence(tmp_path, capsys):
    assert build_main(["--results", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "does not exist; run python run_comparison.py first" in capsys.readouterr().err
