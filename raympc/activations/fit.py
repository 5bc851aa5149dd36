"""Piecewise-polynomial activations fitted for SPU: the "sign-split" form and its fitter.

For an activation f with f(x) ~ relu(x) in both tails (SiLU, GeLU, Mish):

    f(x) = relu(x) + g_side(u),   u = min(|x| + shift_side, L) - origin

One comparison gives the sign (hence relu and |x|), one comparison clamps, and g_side is a
polynomial per side (and per piece, if `pieces` > 1). Each side has its own clamp point
`limit_neg` / `limit_pos`: the side with the smaller one is shifted so that a single clamp at
L = max(limits) serves both. Beyond the clamp g_side is constant, so the tails cannot blow up.

When both sides are the same function (SiLU, GeLU: f - relu is even) one polynomial serves both,
in u = min(|x|, L) (origin 0): then "x < 0" and "x^2 > L^2" are compared in one op (one
comparison's rounds, not two in a row) and the clamped x^2 is u^2 for the polynomial's even part
(blocks.mirror_clamp). Such a form may instead be relu beyond the limit (`tail="relu"`: f = relu
+ a constant there): the polynomial is fitted on [0, L] only, evaluated on the unclamped |x| and
masked by the range bit, one select fewer (blocks.mirror_range). Its error beyond L is then
f - relu less the constant (`tail_offset`, the middle of f - relu's range there, added outside
for free: the polynomial's constant term gives it back inside), half that range. A sided form
(Mish) may be relu beyond its limits too: then each
side's polynomial is in the shared u = x - c, c the centre of [-limit_neg, limit_pos], fitted on
that side's interval; the sign and "outside the window" (u^2 > r^2) are one comparison op, where
clamping needs the sign before the clamp's comparison (blocks.sign_and_window). Otherwise u is
centred (origin L / 2), every side's (and piece's)
polynomial comes from shared powers of u, their public dot products are kept wide (no truncation,
fixed_point.py), selects on the sign (and piece) bits pick, and relu joins before one truncation.

The fitter is a weighted minimax (Lawson's iteration) on a dense grid covering the tails, so
the reported error already includes the clamped tails. `weights` (from recorded inputs) make the
error smaller where real inputs fall.

SPU encodes public coefficients in fixed point (18 fraction bits under FM64). From degree 6 on,
the top coefficients are ~1e-5 and multiply u^k in the thousands, so plain rounding costs more
than the fit's own error (Mish, degree 6: 5.9e-3 against 2.6e-3). With `fraction_bits`, each
coefficient is rounded to that grid from the highest power down and the lower ones are refitted
around it, so the rounding of one is absorbed by the next (2.6e-3 kept, at no cost under SPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import jax.numpy as jnp
import numpy as np

from raympc.activations import blocks
from raympc.activations.exact import exact
from raympc.runtime import fixed_point
from raympc.runtime.fixed_point import FRACTION_BITS as SPU_FRACTION_BITS  # noqa: F401 - SPU's under FM64; re-exported

FITTABLE = ("silu", "mish", "gelu_tanh", "gelu_erf")
TAILS = ("clamp", "relu")
GRID_HALF_WIDTH = 16.0
GRID_POINTS = 4001
LAWSON_ITERS = 400


@dataclass(frozen=True)
class SignSplitFit:
    activation: str
    degree: int
    pieces: int
    limit_neg: float
    limit_pos: float
    # coefficients per piece, lowest power first, for x < 0 and x >= 0
    coeffs_neg: tuple[tuple[float, ...], ...]
    coeffs_pos: tuple[tuple[float, ...], ...]
    fit_max_error: float = float("nan")  # float64 model of the form on [-16, 16]
    weighted_by: str | None = None
    fraction_bits: int | None = None  # coefficients are exact multiples of 2**-fraction_bits
    origin: float | None = None  # u = clamped v - origin; None: limit / 2, as in fits made before origin 0
    tail: str = "clamp"  # beyond the limit: "clamp" (g constant) or "relu" (f = relu + tail_offset)
    tail_offset: float = 0.0  # "relu" tails: the middle of f - relu's range beyond the limits

    @property
    def windowed(self) -> bool:
        """The sided relu-tail form: u = x - origin on both sides, masked outside the window."""
        return self.tail == "relu" and not (self.symmetric and self.u_origin == 0)

    @property
    def u_origin(self) -> float:
        return self.limit / 2 if self.origin is None else self.origin

    @property
    def u_max(self) -> float:
        """The largest |u| the polynomial sees (u lies in [-origin, limit - origin]; a windowed
        form's in [-r, r], r half the window)."""
        if self.windowed:
            return (self.limit_neg + self.limit_pos) / 2
        return max(self.u_origin, self.limit - self.u_origin)

    @property
    def limit(self) -> float:
        return max(self.limit_neg, self.limit_pos)

    @property
    def symmetric(self) -> bool:
        return self.pieces == 1 and self.limit_neg == self.limit_pos and self.coeffs_neg == self.coeffs_pos

    @property
    def breakpoints(self) -> list[float]:
        return [self.limit * j / self.pieces for j in range(1, self.pieces)]

    def __call__(self, x):
        """The secure form: trace it under SPU (or run it in plain JAX; the maths is the same)."""
        if self.symmetric and self.u_origin == 0:
            # both comparisons in one op; relu = (x + |x|) / 2 joins E's dot product
            if self.tail == "relu":
                t, s_powers, keep = blocks.mirror_range(x, self.limit, fourth=self.degree >= 5)
                return blocks.even_odd(t, s_powers, self.coeffs_pos[0], extra=(x + t, 0.5), keep=keep,
                                       outside=self.tail_offset)
            t, u, s = blocks.mirror_clamp(x, self.limit)
            return blocks.even_odd(u, s, self.coeffs_pos[0], extra=(x + t, 0.5))
        if self.windowed:
            return self._windowed(x)
        neg, v, relu = blocks.sign_split(x, self._shift("neg"), self._shift("pos"))
        u = blocks.clamp_above(v, self.limit) - self.u_origin
        if self.symmetric:
            return relu + blocks.polynomial(u, self.coeffs_pos[0])
        # Both sides (and every piece) from shared powers of u (ceil(log2 degree) multiply rounds);
        # their public dots are local and wide (fixed_point.py), so the sides are picked and relu
        # added before the one truncation, where a truncated dot per side cost one each.
        powers = blocks.powers(u, self.degree)
        same = self.coeffs_neg == self.coeffs_pos and self.limit_neg == self.limit_pos
        polys = self.coeffs_pos if same else (*self.coeffs_neg, *self.coeffs_pos)
        values = [blocks.wide_dot(powers, c[1:], c[0]) for c in polys]
        piece_bits = [v > b for b in self.breakpoints]

        def side(offset: int):
            out = values[offset]
            for j, b in enumerate(piece_bits, start=1):
                out = jnp.where(b, values[offset + j], out)
            return out

        picked = side(0) if same else jnp.where(neg, side(0), side(self.pieces))
        return fixed_point.narrow(fixed_point.scaled(relu, 1.0) + picked)

    def _windowed(self, x):
        # both sides from shared powers of u = x - c (u^2 from the window's comparison); their dots
        # wide; one op picks the side (neg * (P_neg - P_pos)) and makes relu ((1 - neg) x); the
        # window's mask, relu's join and one truncation end it
        u, s, neg, keep = blocks.sign_and_window(x, self.limit_neg, self.limit_pos)
        powers = blocks.powers(u, self.degree, square=s)
        pos, negative = (blocks.wide_dot(powers, c[1:], c[0]) for c in (self.coeffs_pos[0], self.coeffs_neg[0]))
        side, relu = fixed_point.products([(negative - pos, neg), (x, 1 - neg)])
        poly = fixed_point.masked(keep, pos + side - fixed_point.constant(self.tail_offset))
        return fixed_point.narrow(poly + fixed_point.constant(self.tail_offset) + fixed_point.scaled(relu, 1.0))

    def _shift(self, side: str) -> float:
        return self.limit - (self.limit_neg if side == "neg" else self.limit_pos)

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """The same form in float64 NumPy (no fixed point): the fit's own error, before SPU."""
        x = np.asarray(x, np.float64)
        t = np.abs(x)
        out = np.maximum(x, 0.0)
        if self.windowed:
            u = x - self.u_origin
            for side, mask in (("neg", x < 0), ("pos", x >= 0)):
                coeffs = np.asarray((self.coeffs_neg if side == "neg" else self.coeffs_pos)[0])
                poly = np.sum(coeffs * u[mask, None] ** np.arange(self.degree + 1), axis=1)
                inside = (x[mask] >= -self.limit_neg) & (x[mask] <= self.limit_pos)
                out[mask] += np.where(inside, poly, self.tail_offset)
            return out
        for side, mask in (("neg", x < 0), ("pos", x >= 0)):
            v = t[mask] + self._shift(side)
            vc = np.minimum(v, self.limit)
            u = vc - self.u_origin
            piece = np.searchsorted(self.breakpoints, v, side="left") if self.pieces > 1 else np.zeros(v.shape, int)
            coeffs = np.asarray(self.coeffs_neg if side == "neg" else self.coeffs_pos)
            poly = np.sum(coeffs[piece] * u[:, None] ** np.arange(self.degree + 1), axis=1)
            out[mask] += np.where(v <= self.limit, poly, self.tail_offset) if self.tail == "relu" else poly
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SignSplitFit":
        d = dict(d)
        d["coeffs_neg"] = tuple(tuple(c) for c in d["coeffs_neg"])
        d["coeffs_pos"] = tuple(tuple(c) for c in d["coeffs_pos"])
        return cls(**d)


def minimax_fit(design: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted minimax fit: minimise max_i weights_i * |design_i . c - target_i|."""
    n = len(target)
    lam = np.full(n, 1.0 / n)
    best, best_err = None, np.inf
    for _ in range(LAWSON_ITERS):
        sw = np.sqrt(lam) * weights
        c, *_ = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)
        err = weights * np.abs(design @ c - target)
        if err.max() < best_err:
            best, best_err = c, err.max()
        lam = lam * (err + 1e-300)
        lam /= lam.sum()
    return best


def _lawson_on_grid(design: np.ndarray, target: np.ndarray, weights: np.ndarray, step: float) -> np.ndarray:
    """Weighted minimax with every coefficient a multiple of `step`: round the highest power's
    coefficient, refit the lower ones given it, and so on down to the constant."""
    fixed = np.zeros(design.shape[1])
    for k in range(design.shape[1] - 1, -1, -1):
        c = minimax_fit(design[:, : k + 1], target - design[:, k + 1:] @ fixed[k + 1:], weights)
        fixed[k] = np.round(c[k] / step) * step
    return fixed


def _side_residual(activation: str, side: str, t: np.ndarray) -> np.ndarray:
    x = -t if side == "neg" else t
    return exact(activation, x) - np.maximum(x, 0.0)


def input_weights(samples: np.ndarray | None, grid: np.ndarray, emphasis: float = 4.0) -> np.ndarray:
    """Per-grid-point weights from recorded inputs: 1 everywhere, up to 1 + emphasis where inputs are densest.

    Every point keeps weight >= 1, so the max error over the whole range (tails included) can grow
    by at most a factor 1 + emphasis while the error where real inputs fall shrinks.
    """
    if samples is None:
        return np.ones_like(grid)
    samples = np.asarray(samples, np.float64).ravel()
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        raise ValueError("the inputs hold no finite values")
    hist, edges = np.histogram(samples, bins=256, range=(grid.min(), grid.max()), density=True)
    idx = np.clip(np.searchsorted(edges, grid, side="right") - 1, 0, len(hist) - 1)
    peak = hist.max()
    return 1.0 + emphasis * (hist[idx] / peak if peak > 0 else 0.0)


def fit_sign_split(activation: str, degree: int, pieces: int = 1, limit_neg: float | None = None,
                   limit_pos: float | None = None, samples: np.ndarray | None = None,
                   weighted_by: str | None = None, fraction_bits: int | None = None,
                   tail: str = "clamp") -> SignSplitFit:
    """Fit the sign-split form; missing limits are chosen by a scan (smallest fitted error).

    `fraction_bits`: make every coefficient exactly representable in that fixed point (see above).
    `tail`: "clamp" (the polynomial's value at the limit continues beyond it) or "relu" (f = relu
    + `tail_offset` beyond the limits; single-piece forms).
    """
    if activation not in FITTABLE:
        raise ValueError(f"cannot fit {activation!r}: the sign-split form covers {FITTABLE}")
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
    if tail == "relu" and pieces != 1:
        raise ValueError(f'tail="relu" forms have one piece per side, got {pieces} pieces')
    if degree < 1 or pieces < 1:
        raise ValueError("degree and pieces must be at least 1")
    if fraction_bits is not None and not 8 <= fraction_bits <= 40:
        raise ValueError(f"fraction_bits must be in [8, 40], got {fraction_bits}")
    even = _residuals_equal(activation)
    limits = {}
    for side, given in (("neg", limit_neg), ("pos", limit_pos)):
        if given is not None:
            if not 0 < given <= GRID_HALF_WIDTH:
                raise ValueError(f"limit for x {'<' if side == 'neg' else '>='} 0 must be in (0, {GRID_HALF_WIDTH}]")
            limits[side] = float(given)
        else:
            candidates = np.arange(2.0, 10.01, 0.25)
            if tail == "relu" and not even:  # windowed: the side's own centre (the fit's error does not depend on it)
                errs = [_fit_window_side(activation, side, degree, L, -L / 2 if side == "neg" else L / 2, samples)[1]
                        for L in candidates]
            else:
                errs = [_fit_side(activation, side, degree, pieces, L, L, 0.0 if tail == "relu" else L / 2, samples,
                                  tail=tail)[1] for L in candidates]
            limits[side] = float(candidates[int(np.argmin(errs))])
    big = max(limits.values())
    # Where f - relu is even (SiLU, GeLU) and both clamps agree, the positive side's fit serves both.
    mirrored = even and limits["neg"] == limits["pos"]
    # A mirrored single polynomial is evaluated in min(|x|, L) (see the module docstring).
    origin = 0.0 if mirrored and pieces == 1 else big / 2
    if tail == "relu" and not mirrored:  # the windowed form: u = x - the window's centre
        origin = (limits["pos"] - limits["neg"]) / 2
        coeffs = {side: _fit_window_side(activation, side, degree, limits[side], origin, samples,
                                         fraction_bits)[0][None] for side in limits}
    else:
        coeffs = {side: _fit_side(activation, side, degree, pieces, limits[side], big, origin, samples,
                                  fraction_bits, tail)[0]
                  for side in (("pos",) if mirrored else limits)}
    if mirrored:
        coeffs["neg"] = coeffs["pos"]
    offset = 0.0
    if tail == "relu":  # the middle of f - relu's range beyond the limits, on SPU's grid
        lo, hi = np.array([_tail_range(activation, side, limits[side]) for side in limits]).T
        offset = (lo.min() + hi.max()) / 2
        if fraction_bits is not None:
            offset = float(np.round(offset * 2.0 ** fraction_bits) / 2.0 ** fraction_bits)
    fit = SignSplitFit(activation, degree, pieces, limits["neg"], limits["pos"],
                       tuple(tuple(map(float, c)) for c in coeffs["neg"]),
                       tuple(tuple(map(float, c)) for c in coeffs["pos"]), weighted_by=weighted_by,
                       fraction_bits=fraction_bits, origin=origin, tail=tail, tail_offset=float(offset))
    grid = np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
    err = float(np.abs(fit.numpy(grid) - exact(activation, grid)).max())
    return replace(fit, fit_max_error=err)


def _residuals_equal(activation: str) -> bool:
    t = np.linspace(0, GRID_HALF_WIDTH, 257)
    return bool(np.allclose(_side_residual(activation, "neg", t), _side_residual(activation, "pos", t),
                            rtol=0, atol=1e-12))


def _tail_range(activation: str, side: str, limit: float) -> tuple[float, float]:
    """(min, max) of f - relu beyond `limit` on that side, 0 included (its value far out)."""
    beyond = (-1.0 if side == "neg" else 1.0) * np.linspace(limit, GRID_HALF_WIDTH, GRID_POINTS)
    r = exact(activation, beyond) - np.maximum(beyond, 0.0)
    return min(float(r.min()), 0.0), max(float(r.max()), 0.0)


def _fit_window_side(activation: str, side: str, degree: int, limit: float, centre: float,
                     samples: np.ndarray | None, fraction_bits: int | None = None) -> tuple[np.ndarray, float]:
    """One side of the windowed form: f - relu on [-limit, 0] or [0, limit] as a polynomial in
    u = x - centre, and the max error, the tail's beyond the limit (half f - relu's range there,
    given the offset) included."""
    sign = -1.0 if side == "neg" else 1.0
    lo, hi = _tail_range(activation, side, limit)
    tail_error = (hi - lo) / 2
    x = sign * np.linspace(0.0, limit, GRID_POINTS)
    target = exact(activation, x) - np.maximum(x, 0.0)
    design = np.vander(x - centre, degree + 1, increasing=True)
    w = input_weights(samples, x)
    coeffs = (minimax_fit(design, target, w) if fraction_bits is None
              else _lawson_on_grid(design, target, w, 2.0 ** -fraction_bits))
    return coeffs, max(float(np.abs(design @ coeffs - target).max()), tail_error)


def _fit_side(activation: str, side: str, degree: int, pieces: int, own_limit: float, big_limit: float,
              origin: float, samples: np.ndarray | None, fraction_bits: int | None = None,
              tail: str = "clamp") -> tuple[np.ndarray, float]:
    """Coefficients (pieces x degree+1) for one side, in the shared variable u, and the max error."""
    tail_error = 0.0
    if tail == "relu":  # f = relu + offset beyond the limit: fit inside it; outside, half f - relu's range
        lo, hi = _tail_range(activation, side, own_limit)
        tail_error = (hi - lo) / 2
    t = np.linspace(0.0, own_limit if tail == "relu" else GRID_HALF_WIDTH, GRID_POINTS)
    target = _side_residual(activation, side, t)
    x_side = -t if side == "neg" else t
    w = input_weights(samples, x_side)
    v = t + (big_limit - own_limit)
    vc = np.minimum(v, big_limit)
    u = vc - origin
    bounds = [big_limit * j / pieces for j in range(1, pieces)]
    piece = np.searchsorted(bounds, v, side="left")
    coeffs = np.zeros((pieces, degree + 1))
    worst = 0.0
    for p in range(pieces):
        sel = piece == p
        if not sel.any():  # a piece this side never reaches: keep it equal to its neighbour
            coeffs[p] = coeffs[p - 1] if p else 0.0
            continue
        design = np.vander(u[sel], degree + 1, increasing=True)
        coeffs[p] = (minimax_fit(design, target[sel], w[sel]) if fraction_bits is None
                     else _lawson_on_grid(design, target[sel], w[sel], 2.0 ** -fraction_bits))
        worst = max(worst, float(np.abs(design @ coeffs[p] - target[sel]).max()))
    return coeffs, max(worst, tail_error)


# ---------------------------------------------------------------------------- exp by squaring

@dataclass(frozen=True)
class SquaringExp:
    """exp(z) for z <= 0 as q(u) ** (2 ** squarings), u = max(z, -clamp) / 2 ** squarings and q a
    polynomial fitted to exp(u).

    Squaring makes the result non-negative for every input (no negative lobe), and the clamp keeps
    the squarings inside q's fitted range, so inputs far below -clamp give exp(-clamp), not garbage.
    q is a polynomial in u, not in z: its coefficients are then about 1/k!, which SPU's 2^-18 grid
    holds to 1e-5 or better, where z's (c3 ~ 2.8e-4, c4 ~ 4.9e-6: 73 and 1.3 ulps) were rounded by
    up to 2% and, raised to the 8th power, biased every exponential upwards by ~1e-3 of itself.
    That bias is invisible on one value and adds up in a row's sum: softmax's error on rows of
    4,096 std-3 logits was 1.9e-3 with z's coefficients and is 1.1e-4 with u's, at 4 B per element
    and rank fewer (the scaling by 2^-k costs less than the scalar multiplies it replaces).
    """

    squarings: int
    degree: int
    clamp: float
    coeffs: tuple[float, ...]  # q's, in u
    fit_max_error: float = float("nan")

    def __call__(self, z):
        u = blocks.clamp_below(z, -self.clamp) * (2.0 ** -self.squarings)
        if self.degree in (3, 4):
            # c0 + c1 u + c2 s + s (c3 u + c4 s), s = u^2 (blocks.even_odd): 26 B per element and
            # rank where Horner takes 60
            q = blocks.even_odd(u, fixed_point.narrow(fixed_point.product(u, u)), self.coeffs)
        else:
            q = blocks.horner(u, self.coeffs)
        for _ in range(self.squarings):
            q = q * q
        return q


def fit_squaring_exp(squarings: int = 3, degree: int = 4, clamp: float = 16.0, relative_to: float = 10.0) -> SquaringExp:
    """Fit q, with q(0) = 1, so that q(z / n) ** n (n = 2 ** squarings) tracks exp(z) on [-clamp, 0].

    Softmax needs relative accuracy wherever terms still add up (many logits 6-10 below the max
    matter in rows of 196), so the error is weighted relative down to -relative_to and absolute
    below. A change dq in q moves q ** n by about n * exp(z (n - 1) / n) * dq, hence the weight.
    """
    n = 2 ** squarings
    z = np.linspace(-clamp, 0.0, GRID_POINTS)
    design = np.vander(z / n, degree + 1, increasing=True)
    weight = n * np.exp(z * (n - 1) / n) / np.maximum(np.exp(z), np.exp(-relative_to))
    # q(0) = 1 exactly: every softmax row's max sits at z = 0 and carries its largest probability,
    # so that point gets no error at all (halves softmax's error at no cost).
    c = np.r_[1.0, minimax_fit(design[:, 1:], np.exp(z / n) - 1.0, weight)]
    err = float(np.abs((design @ c) ** n - np.exp(z)).max())
    return SquaringExp(squarings, degree, clamp, tuple(map(float, c)), err)
