"""Numba parallel-CPU kernels of the LSTM: the reference's equations (lstm_numpy/model.py), hand-written.

Letters: B batch, T time steps, D input features, H hidden units, Y outputs; G = 4H gate rows (i, f, g, o).

Layouts are the reference cache's, time-major, with room for ``B_max`` rows (a minibatch uses rows 0..n_rows-1):

    Xb (T, B_max, D)          the minibatch's inputs, gathered in the epoch's order
    Yb (B_max, Y | T)         its targets (class ids stored in the model's dtype)
    h, c (T+1, B_max, H)      h[0] = c[0] = 0; h[t] is the state step t starts from
    gates (T, B_max, 4H)      pre-activations z, overwritten by the activated i, f, g, o
    tanh_c (T, B_max, H)      tanh(c[t+1])
    out (T, B_max, Y)         head outputs (regression uses only out[T-1]), then d loss / d out
    dh (T, B_max, H)          the head's gradient on h[1..T]
    dz (T, B_max, 4H)         gradient on the pre-activations
    grads                     (dW_ihT (D, 4H), dW_hhT (H, 4H), db, dW_y, db_y): input weights' gradients transposed

Determinism (the equivalence rule of lstm_numpy/checks.py): every output element is computed by one thread, summing its terms in
one fixed order (k ascending in products; t then b in weight gradients), so results do not depend on the
thread count or on how rows are grouped. Parallel loops run over independent things: groups of batch
rows in forward and BPTT (a group runs its whole time loop without meeting the other threads), blocks
of rows of dW. No BLAS, no fastmath: sums keep their written order and are never reassociated.

Per minibatch, three parallel regions: ``rows_pass`` (forward, head, BPTT of each row group),
``lstm_weight_grads`` (blocks of rows of dW_hh^T), ``sgd_rows`` (the update); the epoch loop around them is
compiled too (``train_epoch``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

SERIAL = dict(cache=True, error_model="numpy")   # numpy error model: no ZeroDivision branch in loops
PARALLEL = dict(SERIAL, parallel=True)

from parallel_lstm.lstm_numpy.contract import BACKWARD, CLASSIFICATION, FORWARD, REGRESSION, UPDATE  # noqa: F401 (codes read by kernels)


class Workspace(NamedTuple):
    """The preallocated buffers of one minibatch (layouts in the module docstring); row_loss (B_max,) float64
    holds each row's summed loss terms, dh_next and dc_next (B_max, H) are BPTT's carries."""

    Xb: np.ndarray
    Yb: np.ndarray
    h: np.ndarray
    c: np.ndarray
    gates: np.ndarray
    tanh_c: np.ndarray
    out: np.ndarray
    dh: np.ndarray
    dz: np.ndarray
    dh_next: np.ndarray
    dc_next: np.ndarray
    row_loss: np.ndarray


# ----------------------------------------------------------------------------- tanh that vectorises
# tanh written so that a loop over it vectorises (LLVM turns it into SIMD code; libm's tanh is a call per element).
#
# Float64 throughout (float32 inputs are widened and the result rounded back, which is at least as
# accurate as NumPy's float32 tanh). The algorithm is Cephes' tanh and exp (S. L. Moshier), accurate to
# a few units in the last place of float64, which keeps every backend comparison far inside 1e-10:
#
#     |x| <  0.625:  tanh x = x + x z P(z) / Q(z),  z = x^2           (rational minimax)
#     |x| >= 0.625:  tanh x = (e - 1) / (e + 1), e = exp(2|x|), sign restored  (no cancellation there)
#     exp y = 2^n exp(r), y = n ln2 + r, |r| <= ln2/2, exp(r) by a Pade form; 2^n from its bits.
#
# Both branches are computed and one is selected, so the loop has no branch to stop vectorisation.
# It lives in this module because Numba's cache keys on the source file of the cached function only:
# a change to a helper in another module would leave stale compiled kernels behind.

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
    """tanh of a float64 (see the comment above), with a single division.

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


# ----------------------------------------------------------------------------- the one matmul

@njit(**SERIAL)
def accumulate(out, coeffs, M):
    """out (R, N) += coeffs (R, K) @ M (K, N); each out[r, n] sums its K terms in ascending k.

    k advances four at a time in one left-to-right expression, which performs the same additions
    in the same order as one k at a time but loads and stores ``out`` once per four products. The
    innermost loop runs over n (contiguous in ``out`` and ``M``), so SIMD lanes hold different
    outputs and never split a sum. The four rows of M in use are reused by every row r from L1.
    Row r's result does not depend on R or on which other rows share the call.

    Every row view is cut to the same N columns (out[r, :N], M[k, :N]), so that the eight arrays of the
    inner loop share one visible length: measured ~20% faster weight gradients in float32 than with
    whole-row views out[r], M[k] (the same sums), no change in float64.
    """
    R, K = coeffs.shape
    N = out.shape[1]
    k = 0
    while k + 4 <= K:
        m0, m1, m2, m3 = M[k, :N], M[k + 1, :N], M[k + 2, :N], M[k + 3, :N]
        r = 0
        while r + 4 <= R:      # four rows share each load of M and give the CPU four independent chains
            a0, a1, a2, a3 = coeffs[r, k], coeffs[r, k + 1], coeffs[r, k + 2], coeffs[r, k + 3]
            b0, b1, b2, b3 = coeffs[r + 1, k], coeffs[r + 1, k + 1], coeffs[r + 1, k + 2], coeffs[r + 1, k + 3]
            c0, c1, c2, c3 = coeffs[r + 2, k], coeffs[r + 2, k + 1], coeffs[r + 2, k + 2], coeffs[r + 2, k + 3]
            d0, d1, d2, d3 = coeffs[r + 3, k], coeffs[r + 3, k + 1], coeffs[r + 3, k + 2], coeffs[r + 3, k + 3]
            o, p, q, u = out[r, :N], out[r + 1, :N], out[r + 2, :N], out[r + 3, :N]
            for n in range(o.shape[0]):     # range(len) lets Numba prove n >= 0, so LLVM vectorises
                x0, x1, x2, x3 = m0[n], m1[n], m2[n], m3[n]
                o[n] = o[n] + a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                p[n] = p[n] + b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
                q[n] = q[n] + c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
                u[n] = u[n] + d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
            r += 4
        if r + 2 <= R:         # the rows left over: a pair, then a single row
            a0, a1, a2, a3 = coeffs[r, k], coeffs[r, k + 1], coeffs[r, k + 2], coeffs[r, k + 3]
            b0, b1, b2, b3 = coeffs[r + 1, k], coeffs[r + 1, k + 1], coeffs[r + 1, k + 2], coeffs[r + 1, k + 3]
            o, p = out[r, :N], out[r + 1, :N]
            for n in range(o.shape[0]):
                x0, x1, x2, x3 = m0[n], m1[n], m2[n], m3[n]
                o[n] = o[n] + a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                p[n] = p[n] + b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            r += 2
        if r < R:
            a0, a1, a2, a3 = coeffs[r, k], coeffs[r, k + 1], coeffs[r, k + 2], coeffs[r, k + 3]
            o = out[r, :N]
            for n in range(o.shape[0]):
                o[n] = o[n] + a0 * m0[n] + a1 * m1[n] + a2 * m2[n] + a3 * m3[n]
        k += 4
    while k < K:
        m0 = M[k, :N]
        for r in range(R):
            a0 = coeffs[r, k]
            o = out[r, :N]
            for n in range(o.shape[0]):
                o[n] = o[n] + a0 * m0[n]
        k += 1


# ----------------------------------------------------------------------------- the cell

@njit(**SERIAL)
def sigmoid(x, half):
    """The reference's sigmoid, 0.5*tanh(0.5x)+0.5; ``half`` is 0.5 in the dtype of x."""
    return half * tanh_of(half * x) + half


@njit(**SERIAL)
def activate(z):
    """Pre-activations z (4H,) -> i, f, g, o = sigma, sigma, tanh, sigma, in place.
    One simple loop per block (and a tanh that vectorises), so each loop becomes SIMD code."""
    H = z.shape[0] // 4
    half = z.dtype.type(0.5)
    i_f = z[:2 * H]
    for k in range(i_f.shape[0]):
        i_f[k] = sigmoid(i_f[k], half)
    g = z[2 * H:3 * H]
    for k in range(g.shape[0]):
        g[k] = tanh_of(g[k])
    o = z[3 * H:]
    for k in range(o.shape[0]):
        o[k] = sigmoid(o[k], half)


@njit(**SERIAL)
def cell_update(gates, c_prev, c_next, tanh_c, h_next):
    """gates (4H,) activated i, f, g, o -> c_next = f*c_prev + i*g, tanh_c = tanh(c_next), h_next = o*tanh_c (H,)."""
    H = c_prev.shape[0]
    i, f, g, o = gates[:H], gates[H:2 * H], gates[2 * H:3 * H], gates[3 * H:]
    for k in range(H):
        c = f[k] * c_prev[k] + i[k] * g[k]
        tc = tanh_of(c)
        c_next[k] = c
        tanh_c[k] = tc
        h_next[k] = o[k] * tc


@njit(**SERIAL)
def gate_backward(dh_head, dh_next, dc_next, c_prev, gates, tanh_c, dz):
    """One row, one step, the mirror of ``activate`` and ``cell_update`` (same expressions as the reference).

    dh_head, dh_next, dc_next, c_prev, tanh_c (H,); gates (4H,) activated; writes dz (4H,) and
    replaces dc_next by the gradient reaching c_prev (dc * f).
    """
    H = c_prev.shape[0]
    one = dz.dtype.type(1.0)
    for k in range(H):
        i, f, g, o = gates[k], gates[H + k], gates[2 * H + k], gates[3 * H + k]
        tc = tanh_c[k]
        dh = dh_head[k] + dh_next[k]
        # backprop h = o * tanh(c)
        do = dh * tc
        dc = dc_next[k] + dh * o * (one - tc * tc)
        # backprop c = f * c_prev + i * g
        di = dc * g
        dg = dc * i
        df = dc * c_prev[k]
        dc_next[k] = dc * f
        # backprop the activations: sigma' = s(1-s), tanh' = 1-g^2
        dz[k] = di * i * (one - i)
        dz[H + k] = df * f * (one - f)
        dz[2 * H + k] = dg * (one - g * g)
        dz[3 * H + k] = do * o * (one - o)


@njit(**SERIAL)
def forward_rows(W_ihT, W_hhT, b, Xb, r0, r1, h, c, gates, tanh_c):
    """Forward pass of rows r0..r1-1 over all T steps (layouts in the module docstring).

    W_ihT (D, 4H), W_hhT (H, 4H) are the transposed weights, so that the 4H outputs are contiguous.
    """
    T = Xb.shape[0]
    h[0, r0:r1] = 0
    c[0, r0:r1] = 0
    # The input projection does not depend on h: done for all T before the recurrence.
    for t in range(T):
        for r in range(r0, r1):
            gates[t, r] = b
        accumulate(gates[t, r0:r1], Xb[t, r0:r1], W_ihT)
    for t in range(T):
        accumulate(gates[t, r0:r1], h[t, r0:r1], W_hhT)      # z += h_{t-1} W_hh^T   (R, 4H)
        for r in range(r0, r1):
            activate(gates[t, r])
            cell_update(gates[t, r], c[t, r], c[t + 1, r], tanh_c[t, r], h[t + 1, r])


@njit(**SERIAL)
def backward_rows(W_hh, dh, r0, r1, c, gates, tanh_c, dz, dh_next, dc_next):
    """BPTT of rows r0..r1-1, t from T-1 down to 0. dh_next, dc_next (B_max, H) are scratch."""
    T = dh.shape[0]
    dh_next[r0:r1] = 0
    dc_next[r0:r1] = 0
    for t in range(T - 1, -1, -1):
        for r in range(r0, r1):
            gate_backward(dh[t, r], dh_next[r], dc_next[r], c[t, r], gates[t, r], tanh_c[t, r], dz[t, r])
        if t > 0:
            # backprop z = ... + W_hh h_prev: dh_next = dz W_hh   (R, H)
            dh_next[r0:r1] = 0
            accumulate(dh_next[r0:r1], dz[t, r0:r1], W_hh)


@njit(**PARALLEL)
def lstm_forward(W_ihT, W_hhT, b, Xb, n_rows, group, h, c, gates, tanh_c):
    """Forward pass of rows 0..n_rows-1; each prange iteration runs ``group`` rows through all T."""
    n_groups = (n_rows + group - 1) // group
    for gi in prange(n_groups):
        r0 = gi * group
        forward_rows(W_ihT, W_hhT, b, Xb, r0, min(r0 + group, n_rows), h, c, gates, tanh_c)


@njit(**PARALLEL)
def lstm_backward(W_hh, dh, n_rows, group, c, gates, tanh_c, dz, dh_next, dc_next):
    """BPTT of rows 0..n_rows-1 -> dz (T, B_max, 4H); each prange iteration owns ``group`` rows."""
    n_groups = (n_rows + group - 1) // group
    for gi in prange(n_groups):
        r0 = gi * group
        backward_rows(W_hh, dh, r0, min(r0 + group, n_rows), c, gates, tanh_c, dz, dh_next, dc_next)


# (t, b) terms per chunk of the weight gradients: a chunk of dz (WG_TERMS x 4H, 256 KB in float64 at
# H = 128) stays in L2 while dW_hh^T's rows and then dW_ih^T's and db's use it, instead of being read
# from L3 once for dW_hh^T and once more for each of dW_ih^T and db.
WG_TERMS = 128


@njit(**PARALLEL)
def lstm_weight_grads(Xb, h, dz, n_rows, block, dW_ihT, dW_hhT, db):
    """Weight gradients, stored transposed so that the 4H outputs are contiguous (SIMD runs across them):
    dW_hhT (H, 4H) = sum over t, b of h[t, b]^T dz[t, b] (h[t] = h_{t-1}); dW_ihT (D, 4H) likewise with
    x[t, b]; db (4H,) = sum of dz[t, b]. The prange runs over blocks of ``block`` rows of dW_hhT (the last
    one also does the D + 1 rows of dW_ihT and db, so that ``H / threads`` rows per block balance the
    threads); every element sums its T*B terms t-major, b ascending.

    A full minibatch (n_rows = B_max) sees its T*B terms as one (T*B, .) matrix, so that ``accumulate``
    takes them four at a time across step boundaries too: the same additions in the same order as one
    call per step (the partial last minibatch), with ``out`` loaded and stored once per four terms. It is
    taken in chunks of WG_TERMS terms (see above), in ascending order: every element still adds the same
    terms in the same order, so the chunking changes no bit."""
    T = dz.shape[0]
    B_max = dz.shape[1]
    H = h.shape[2]
    G = dz.shape[2]
    D = Xb.shape[2]
    full = n_rows == B_max
    h_all = h.reshape(((T + 1) * B_max, H))[:T * B_max]        # row t*B_max + b is h[t, b]
    dz_all = dz.reshape((T * B_max, G))
    x_all = Xb.reshape((T * B_max, D))
    n_blocks = (H + block - 1) // block
    ones = np.ones((1, T * B_max), dz.dtype)               # db = sum of 1 * dz: exact products; read-only below
    for bi in prange(n_blocks):
        k0 = bi * block
        k1 = min(k0 + block, H)
        last = bi == n_blocks - 1
        dW_hhT[k0:k1] = 0
        if last:
            dW_ihT[:] = 0
            db[:] = 0
        db_row = db.reshape(1, db.shape[0])
        if full:
            for j0 in range(0, T * B_max, WG_TERMS):
                j1 = min(j0 + WG_TERMS, T * B_max)
                chunk = dz_all[j0:j1]
                accumulate(dW_hhT[k0:k1], h_all[j0:j1, k0:k1].T, chunk)
                if last:
                    accumulate(dW_ihT, x_all[j0:j1].T, chunk)
                    accumulate(db_row, ones[:, j0:j1], chunk)
        else:
            for t in range(T):
                accumulate(dW_hhT[k0:k1], h[t, :n_rows, k0:k1].T, dz[t, :n_rows])
                if last:
                    accumulate(dW_ihT, Xb[t, :n_rows].T, dz[t, :n_rows])
                    accumulate(db_row, ones[:, :n_rows], dz[t, :n_rows])


# ----------------------------------------------------------------------------- the heads

@njit(**SERIAL)
def head_outputs(W_y, b_y, h, r0, r1, t_first, out):
    """out[t, r] = W_y h[t+1, r] + b_y for rows r0..r1-1 and t >= t_first (regression: t_first = T-1).
    out (T, B_max, Y); each sum runs over k in ascending order."""
    T = out.shape[0]
    Y, H = W_y.shape
    for r in range(r0, r1):
        for t in range(t_first, T):
            for y in range(Y):
                s = out.dtype.type(0.0)
                for k in range(H):
                    s += W_y[y, k] * h[t + 1, r, k]
                out[t, r, y] = s + b_y[y]


@njit(**SERIAL)
def log_softmax(v):
    """v (Y,) logits -> log-probabilities in place, as the reference: shifted - log(sum(exp(shifted)))."""
    m = v[0]
    for y in range(1, v.shape[0]):
        m = max(m, v[y])
    total = v.dtype.type(0.0)
    for y in range(v.shape[0]):
        v[y] = v[y] - m
        total += np.exp(v[y])
    lse = np.log(total)
    for y in range(v.shape[0]):
        v[y] = v[y] - lse


@njit(**SERIAL)
def exp_in_place(v):
    """v (Y,) log-probabilities -> probabilities, as the reference's exp(log_softmax)."""
    for y in range(v.shape[0]):
        v[y] = np.exp(v[y])


@njit(**SERIAL)
def regression_loss(out, Yb, r0, r1, n_terms, row_loss):
    """MSE on out[T-1] against Yb (B_max, Y), rows r0..r1-1 of a batch whose loss is a mean over n_terms = B Y
    terms: row_loss[r] = sum over y of diff^2, and out[T-1, r] becomes d loss / d out = 2 diff / (B Y)."""
    T = out.shape[0]
    Y = out.shape[2]
    scale = out.dtype.type(2.0 / n_terms)
    for r in range(r0, r1):
        total = 0.0
        for y in range(Y):
            diff = out[T - 1, r, y] - Yb[r, y]
            total += diff * diff
            out[T - 1, r, y] = scale * diff
        row_loss[r] = total


@njit(**SERIAL)
def classification_loss(out, Yb, r0, r1, n_terms, row_loss):
    """Softmax cross-entropy of logits out (T, B_max, Y) against class ids Yb (B_max, T), rows r0..r1-1 of a
    batch whose loss is a mean over n_terms = B T terms: row_loss[r] = sum over t of -log p[target]; out
    becomes (softmax - one_hot) / (B T)."""
    T = out.shape[0]
    Y = out.shape[2]
    count = out.dtype.type(n_terms)
    one = out.dtype.type(1.0)
    for r in range(r0, r1):
        total = 0.0
        for t in range(T):
            v = out[t, r]
            log_softmax(v)
            target = np.int64(Yb[r, t])    # class ids arrive in the model's dtype (one compiled epoch for both tasks)
            total -= v[target]
            exp_in_place(v)
            v[target] = v[target] - one
            for y in range(Y):
                v[y] = v[y] / count
        row_loss[r] = total


@njit(**SERIAL)
def head_backward(W_y, out, r0, r1, t_first, dh):
    """dh[t, r] = dout[t, r] W_y for t >= t_first, 0 before (no head there); dout = out (T, B_max, Y)."""
    T = out.shape[0]
    dh[:t_first, r0:r1] = 0
    for t in range(t_first, T):
        dh[t, r0:r1] = 0
        accumulate(dh[t, r0:r1], out[t, r0:r1], W_y)


@njit(**PARALLEL)
def rows_pass(params, W_ihT, W_hhT, ws, n_rows, task, terms_per_sample, with_grads, group):
    """Everything that is separate per sample, for rows 0..n_rows-1 of the workspace ``ws``: forward,
    head outputs, per-row loss, d loss / d out and, with_grads, the head's dh and BPTT down to dz.
    One prange over groups of ``group`` rows: a group runs all of it without meeting the other threads."""
    W_ih, W_hh, b, W_y, b_y = params
    T = ws.Xb.shape[0]
    t_first = T - 1 if task == REGRESSION else 0
    n_terms = n_rows * terms_per_sample
    n_groups = (n_rows + group - 1) // group
    for gi in prange(n_groups):
        r0 = gi * group
        r1 = min(r0 + group, n_rows)
        forward_rows(W_ihT, W_hhT, b, ws.Xb, r0, r1, ws.h, ws.c, ws.gates, ws.tanh_c)
        head_outputs(W_y, b_y, ws.h, r0, r1, t_first, ws.out)
        if task == REGRESSION:
            regression_loss(ws.out, ws.Yb, r0, r1, n_terms, ws.row_loss)
        else:
            classification_loss(ws.out, ws.Yb, r0, r1, n_terms, ws.row_loss)
        if with_grads:
            head_backward(W_y, ws.out, r0, r1, t_first, ws.dh)
            backward_rows(W_hh, ws.dh, r0, r1, ws.c, ws.gates, ws.tanh_c, ws.dz, ws.dh_next, ws.dc_next)


@njit(**SERIAL)
def head_weight_grads(h, out, n_rows, t_first, dW_y, db_y):
    """dW_y (Y, H) = sum over t >= t_first, b of dout[t, b]^T h[t+1, b]; db_y (Y,) = sum of dout.
    Serial: Y H outputs are too few to share out."""
    T = out.shape[0]
    dW_y[:] = 0
    db_y[:] = 0
    for t in range(t_first, T):
        accumulate(dW_y, out[t, :n_rows].T, h[t + 1, :n_rows])
        for y in range(db_y.shape[0]):
            s = db_y[y]
            for r in range(n_rows):
                s += out[t, r, y]
            db_y[y] = s


# ----------------------------------------------------------------------------- update

@njit(**SERIAL)
def sum_of_squares(a):
    """sum of a*a over a C-contiguous array, in float64 and in index order (the reference adds
    the per-array sums as Python floats; float64 keeps float32 runs within the reference's rounding)."""
    flat = a.reshape(-1)
    s = 0.0
    for i in range(flat.size):
        s += float(flat[i]) * float(flat[i])
    return s


@njit(**SERIAL)
def sgd_update(params, grads, lr, clip_norm, W_ihT, W_hhT):
    """params -= lr * scale * grads, scale = clip_norm / global norm when that exceeds clip_norm
    (clip_norm <= 0: no clipping). params: (W_ih, W_hh, b, W_y, b_y) with W_ihT, W_hhT their exact
    transposes; grads: (dW_ihT, dW_hhT, db, dW_y, db_y), the layout ``lstm_weight_grads`` writes."""
    dW_ihT, dW_hhT, db, dW_y, db_y = grads
    scale = 1.0
    if clip_norm > 0:
        norm = np.sqrt(sum_of_squares(dW_ihT) + sum_of_squares(dW_hhT) + sum_of_squares(db)
                       + sum_of_squares(dW_y) + sum_of_squares(db_y))
        if norm > clip_norm:
            scale = clip_norm / norm
    step = params[0].dtype.type(lr * scale)
    sgd_rows(params, grads, step, W_ihT, W_hhT)


@njit(**PARALLEL)
def sgd_rows(params, grads, step, W_ihT, W_hhT):
    """p -= step * g for every parameter (step in their dtype): rows k of W_hhT in parallel, each value
    also written into W_hh; W_ihT (D rows), b and the head serially (they are small)."""
    W_ih, W_hh, b, W_y, b_y = params
    dW_ihT, dW_hhT, db, dW_y, db_y = grads
    for k in prange(W_hhT.shape[0]):
        for j in range(W_hhT.shape[1]):
            v = W_hhT[k, j] - step * dW_hhT[k, j]
            W_hhT[k, j] = v
            W_hh[j, k] = v
    for d in range(W_ihT.shape[0]):
        for j in range(W_ihT.shape[1]):
            v = W_ihT[d, j] - step * dW_ihT[d, j]
            W_ihT[d, j] = v
            W_ih[j, d] = v
    for j in range(b.shape[0]):
        b[j] = b[j] - step * db[j]
    for y in range(W_y.shape[0]):
        for k in range(W_y.shape[1]):
            W_y[y, k] = W_y[y, k] - step * dW_y[y, k]
        b_y[y] = b_y[y] - step * db_y[y]


# ----------------------------------------------------------------------------- minibatch and epoch

@njit(**SERIAL)
def gather(X, Y, rows, Xb, Yb):
    """Xb[t, r] = X[rows[r], t] (time-major), Yb[r] = Y[rows[r]]."""
    for r in range(rows.shape[0]):
        Yb[r] = Y[rows[r]]
        for t in range(X.shape[1]):
            Xb[t, r] = X[rows[r], t]


@njit(**SERIAL)
def minibatch(params, W_ihT, W_hhT, grads, ws, X, Y, rows, task, terms_per_sample, with_grads, group, block):
    """Sum (float64) of the loss terms of the samples ``rows`` of X, Y and, with_grads, every gradient
    into ``grads`` = (dW_ihT, dW_hhT, db, dW_y, db_y) (the first two transposed, see lstm_weight_grads).
    The loss is that sum / (B * terms_per_sample), terms_per_sample = lstm_numpy.loss_terms(task, 1, T, Y)."""
    dW_ihT, dW_hhT, db, dW_y, db_y = grads
    n_rows = rows.shape[0]
    T = ws.Xb.shape[0]
    gather(X, Y, rows, ws.Xb, ws.Yb)
    rows_pass(params, W_ihT, W_hhT, ws, n_rows, task, terms_per_sample, with_grads, group)
    total = 0.0
    for r in range(n_rows):        # in row order, whatever the threads
        total += ws.row_loss[r]
    if with_grads:
        t_first = T - 1 if task == REGRESSION else 0
        lstm_weight_grads(ws.Xb, ws.h, ws.dz, n_rows, block, dW_ihT, dW_hhT, db)
        head_weight_grads(ws.h, ws.out, n_rows, t_first, dW_y, db_y)
    return total


@njit(**SERIAL)
def transpose_weights(params, W_ihT, W_hhT):
    """W_ihT = W_ih^T (D, 4H), W_hhT = W_hh^T (H, 4H): the forward pass reads the 4H outputs contiguously."""
    W_ihT[:, :] = params[0].T
    W_hhT[:, :] = params[1].T


@njit(**SERIAL)
def valid_loss(params, W_ihT, W_hhT, grads, ws, X, Y, task, terms_per_sample, group, block):
    """Loss over all of X, Y (in chunks of B_max rows), with the current parameters."""
    N = X.shape[0]
    B_max = ws.h.shape[1]
    total = 0.0
    for s in range(0, N, B_max):
        n = min(B_max, N - s)
        total += minibatch(params, W_ihT, W_hhT, grads, ws, X, Y, np.arange(s, s + n), task, terms_per_sample,
                           False, group, block)
    return total / (N * terms_per_sample)


@njit(**SERIAL)
def train_epoch(params, W_ihT, W_hhT, grads, ws, X, Y, X_valid, Y_valid, order, bounds,
                task, terms_per_sample, upto, lr, clip_norm, group, block, losses):
    """One epoch (the Trainer contract in lstm_numpy/contract.py), all in compiled code.

    Minibatch k is order[bounds[k]:bounds[k+1]]; losses (n_batches,) float64 prefilled with NaN
    receives each minibatch's loss before its update. Returns the validation loss.
    """
    transpose_weights(params, W_ihT, W_hhT)
    for k in range(bounds.shape[0] - 1):
        rows = order[bounds[k]:bounds[k + 1]]
        total = minibatch(params, W_ihT, W_hhT, grads, ws, X, Y, rows, task, terms_per_sample, upto != FORWARD,
                          group, block)
        loss = total / (rows.shape[0] * terms_per_sample)
        losses[k] = loss
        if upto == FORWARD:
            continue
        if not np.isfinite(loss):
            break
        if upto == UPDATE:
            sgd_update(params, grads, lr, clip_norm, W_ihT, W_hhT)
    return valid_loss(params, W_ihT, W_hhT, grads, ws, X_valid, Y_valid, task, terms_per_sample, group, block)


@njit(**SERIAL)
def predict_outputs(params, W_ihT, W_hhT, ws, X, task, group):
    """Head outputs for all of X (B, T, D), B = B_max of ``ws``: regression out[T-1] (B, Y) predictions,
    classification out (T, B, Y) class probabilities (the reference's exp(log_softmax))."""
    W_ih, W_hh, b, W_y, b_y = params
    out = ws.out
    n_rows = X.shape[0]
    T = X.shape[1]
    for r in range(n_rows):
        for t in range(T):
            ws.Xb[t, r] = X[r, t]
    lstm_forward(W_ihT, W_hhT, b, ws.Xb, n_rows, group, ws.h, ws.c, ws.gates, ws.tanh_c)
    head_outputs(W_y, b_y, ws.h, 0, n_rows, T - 1 if task == REGRESSION else 0, out)
    if task == CLASSIFICATION:
        for t in range(T):
            for r in range(n_rows):
                log_softmax(out[t, r])
                exp_in_place(out[t, r])
    return out
