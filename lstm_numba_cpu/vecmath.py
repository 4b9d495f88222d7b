"""tanh written so that a loop over it vectorises (LLVM turns it into SIMD code; libm's tanh is a call per element).

Float64 throughout (float32 inputs are widened and the result rounded back, which is at least as
accurate as NumPy's float32 tanh). The algorithm is Cephes' tanh and exp (S. L. Moshier), accurate to
a few units in the last place of float64, which keeps every backend comparison far inside 1e-10:

    |x| <  0.625:  tanh x = x + x z P(z) / Q(z),  z = x^2           (rational minimax)
    |x| >= 0.625:  tanh x = (e - 1) / (e + 1), e = exp(2|x|), sign restored  (no cancellation there)
    exp y = 2^n exp(r), y = n ln2 + r, |r| <= ln2/2, exp(r) by a Pade form; 2^n from its bits.

Both branches are computed and one is selected, so the loop has no branch to stop vectorisation.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

SERIAL = dict(cache=True, error_model="numpy")

LOG2E = 1.4426950408889634073599
LN2_HI = 6.93145751953125e-1          # ln 2 split in two so that n * LN2_HI is exact (Cody-Waite)
LN2_LO = 1.42860682030941723212e-6
EXP_LARGE = 40.0                      # 2|x| beyond 40: tanh is 1 in float64; keeps 2^n in range


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a bit cast, no conversion)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(**SERIAL)
def tanh(x):
    """tanh of a float64 (see the module docstring), with a single division.

    Divisions are the slow SIMD operation, so each branch is written as num / den and only the
    selected pair is divided: for |x| < 0.625, x + x z P/Q = (x Q + x z P) / Q; beyond it, with
    exp(2|x|) = 2^n (q + p) / (q - p) (Cephes' Pade form of exp(r)), tanh = (e - 1) / (e + 1)
    = (2^n (q + p) - (q - p)) / (2^n (q + p) + (q - p)).
    """
    a = abs(x)
    # small |x|: rational minimax in z = x^2
    z = x * x
    P = ((-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3) * z
    Q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
    # large |x|: exp(y), y = 2|x| = n ln2 + r
    y = min(2.0 * a, EXP_LARGE)
    n = np.floor(LOG2E * y + 0.5)
    r = (y - n * LN2_HI) - n * LN2_LO
    rr = r * r
    p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1)
    q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr \
        + 2.00000000000000000009e0
    scaled = (q + p) * _float_from_bits((np.int64(n) + 1023) << 52)      # 2^n (q + p)
    small = a < 0.625
    num = x * Q + x * P if small else np.copysign(scaled - (q - p), x)
    den = Q if small else scaled + (q - p)
    return num / den


def tanh_of(x):
    """tanh(x) in the type of x: float32 inputs are widened, and the result rounded back."""
    raise NotImplementedError("tanh_of is for compiled code only")


@overload(tanh_of)
def _tanh_of(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: np.float32(tanh(np.float64(x)))
    return lambda x: tanh(x)
