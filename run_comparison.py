"""Train the LSTM on one workload and print its loss log.

Minimal version: the reference backend on the ``seed`` workload (the original
project's settings: lr 0.1, 6 epochs numbered 0..5). The full harness (every
backend, verdict, timings, results files) grows from here.
"""
from __future__ import annotations

import sys

import lstm_numpy
from data import make_workload


def main(argv=None) -> int:
    workload = make_workload("seed")
    params = lstm_numpy.init_params(*workload.sizes, seed=workload.config.seed)
    history = lstm_numpy.train(params, workload.data, workload.config)
    print(f"workload seed: {workload.shapes}, lr {workload.config.lr}, backend numpy")
    for epoch, (train, valid) in enumerate(zip(history.train_loss, history.valid_loss)):
        print(f"Epoch {epoch}:\tTrain Loss = {train:.12g}\tValid Loss = {valid:.12g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
