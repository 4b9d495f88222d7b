"""The work model: floating-point operations of a training step and of an epoch, counted from the
model's shapes (``model.py``). GFLOP/s figures of every measuring tool come from here.
"""
from __future__ import annotations


def training_flops(T: int, B: int, D: int, H: int, Y: int, task: str) -> float:
    """Floating-point operations of one training step (forward + BPTT) on B sequences of T steps.

    The gate matmuls dominate: every step and row computes z = W_ih x_t + W_hh h_{t-1}, a
    (4H, D+H) matrix times a vector, 2*4H*(D+H) operations; the backward pass costs about twice
    the forward (gradients with respect to the inputs and to the weights), hence

        3 * 2*T*B*4H*(D+H)    plus the head, 3 * 2*B*H*Y (regression: the last step only)
                                          or 3 * 2*T*B*H*Y (classification: every step).

    Elementwise gate work and the loss are O(T*B*H) and left out.
    """
    head_steps = T if task == "classification" else 1
    return 3.0 * (2.0 * T * B * 4 * H * (D + H) + 2.0 * head_steps * B * H * Y)


def epoch_flops(shapes: dict, task: str) -> float:
    """One epoch: a training step on every training sequence, plus the validation forward pass (1/3 of a step)."""
    T, D, H, Y = shapes["T"], shapes["D"], shapes["H"], shapes["Y"]
    per_sequence = training_flops(T, 1, D, H, Y, task)
    return per_sequence * shapes["N_train"] + per_sequence / 3.0 * shapes["N_valid"]
