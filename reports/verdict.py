"""Does every backend compute what the NumPy reference computes? The comparison and the one verdict line.

    compare_with_reference(results, histories, dtype, label) -> [mismatch]   marks results agrees / mismatch
    verdict_line(names, mismatches, dtype, epochs, census) -> str           'VERDICT: PASS: ...' or 'FAIL'
    verdict_record(line, names, mismatches, dtype) -> dict                 the results file's "verdict"

The rule is lstm_numpy.checks.assert_same_history: every epoch's training and validation loss
and every final parameter, rtol 1e-10 in float64 and 1e-4 in float32.
"""
from __future__ import annotations

from parallel_lstm.lstm_numpy.checks import assert_same_history, rtol_for

from .census import REFERENCE


def compare_with_reference(results: dict, histories: dict, dtype: str, label: str) -> list[dict]:
    """assert_same_history for every backend against the reference; marks each result, returns the mismatches."""
    rtol = rtol_for(dtype)
    reference = histories[REFERENCE]
    mismatches = []
    for name, history in histories.items():
        if name == REFERENCE:
            continue
        try:
            assert_same_history(name, history, reference, rtol=rtol)
        except AssertionError as exc:
            results[name]["agrees"], results[name]["mismatch"] = False, str(exc)
            mismatches.append({"backend": name, "label": label, "message": str(exc)})
        else:
            results[name]["agrees"] = True
    return mismatches


def verdict_line(names: list[str], mismatches: list[dict], dtype: str, epochs: int, census: dict) -> str:
    others = [n for n in names if n != REFERENCE]
    if mismatches:
        failed = sorted({m["backend"] for m in mismatches})
        return (f"VERDICT: FAIL: {', '.join(failed)} did not match the numpy reference within rtol "
                f"{rtol_for(dtype):g} ({dtype}): {mismatches[0]['message']}")
    if not others:
        skipped = [n for n, s in census.items() if not s.selected]
        return ("VERDICT: only the numpy reference ran" + (f" ({', '.join(skipped)} skipped)" if skipped else "")
                + "; nothing to compare.")
    return (f"VERDICT: PASS: {', '.join(others)} agree with the numpy reference within rtol {rtol_for(dtype):g} "
            f"({dtype}) on every epoch's train and valid loss ({epochs} epochs) and the final parameters.")


def verdict_record(line: str, names: list[str], mismatches: list[dict], dtype: str) -> dict:
    """The results file's ``verdict`` entry."""
    return {"agree": not mismatches, "line": line, "reference": REFERENCE, "dtype": dtype, "rtol": rtol_for(dtype),
            "compared": [n for n in names if n != REFERENCE], "mismatches": mismatches}
