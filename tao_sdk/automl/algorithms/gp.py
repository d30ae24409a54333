"""Gaussian-process regression with an ARD Matern 5/2 kernel (numpy / scipy only).

Inputs live in the unit cube of :meth:`SearchSpace.to_unit`. Coordinates flagged categorical use
a Hamming distance (0 when equal, 1 otherwise) scaled by their length scale, which is the
Euclidean distance of a scaled one-hot embedding, so the kernel stays positive definite.

Hyperparameters (length scales, signal variance, noise variance) are fitted by maximising the
log marginal likelihood plus log-normal priors (MAP), with analytic gradients and L-BFGS-B from
fixed starting points, so a fit is a deterministic function of the data. The length-scale prior
is scaled with the dimension (median ``sqrt(2 d) e^{sqrt 2} / sqrt 2``-ish, after Hvarfner et
al. 2024), which keeps the model sensible with few observations in 10-20 dimensions.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.stats import norm

_SQRT5 = math.sqrt(5.0)
_LOG_LS_BOUNDS = (math.log(1e-2), math.log(1e3))
_LOG_SF_BOUNDS = (math.log(5e-2), math.log(20.0))
_LOG_NOISE_BOUNDS = (math.log(1e-6), math.log(0.5))


def blas_single_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread while fitting (``threadpoolctl`` when installed, else a no-op).

    GP matrices are tiny; on shared CPUs extra BLAS threads make fits 3-10x slower. Without
    ``threadpoolctl`` set ``OPENBLAS_NUM_THREADS=1`` in the controller's environment instead.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _sq_dists(A: np.ndarray, B: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per-dimension squared distances, shape (len(A), len(B), d)."""
    diff = A[:, None, :] - B[None, :, :]
    D = diff * diff
    if cat.any():
        D[:, :, cat] = (np.abs(diff[:, :, cat]) > 1e-9).astype(float)
    return D


class GaussianProcess:
    """GP on [0, 1]^d with ARD Matern 5/2; ``fit(X, y)`` then ``predict(Xs) -> (mean, std)``."""

    def __init__(self, categorical: np.ndarray | list[bool]):
        self.cat = np.asarray(categorical, dtype=bool)
        self.d = int(self.cat.size)
        # dimension-scaled log-normal prior on length scales
        self.ls_prior_mu = math.sqrt(2.0) + 0.5 * math.log(max(self.d, 1))
        self.ls_prior_sigma = math.sqrt(3.0)
        self.tau = 0.75          # spread of the per-dimension log length scales around their shared level
        self.theta: np.ndarray | None = None

    # ---- kernel
    def _k(self, D: np.ndarray, ls: np.ndarray, sf2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Ds = D / (ls * ls)
        r = np.sqrt(np.maximum(Ds.sum(-1), 0.0))
        e = np.exp(-_SQRT5 * r)
        K = sf2 * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r * r) * e
        return K, Ds, (5.0 / 3.0) * sf2 * (1.0 + _SQRT5 * r) * e

    def _nll(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = self.d
        ls = np.exp(theta[:d])
        sf2 = math.exp(theta[d])
        sn2 = math.exp(theta[d + 1])
        K, Ds, dKfac = self._k(self._D, ls, sf2)
        n = K.shape[0]
        Kn = K + (sn2 + 1e-8) * np.eye(n)
        try:
            c, low = cho_factor(Kn, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = cho_solve((c, low), self._y, check_finite=False)
        nll = 0.5 * float(self._y @ alpha) + float(np.log(np.diag(c)).sum()) + 0.5 * n * math.log(2 * math.pi)
        Kinv = cho_solve((c, low), np.eye(n), check_finite=False)
        W = Kinv - np.outer(alpha, alpha)
        grad = np.empty_like(theta)
        grad[:d] = 0.5 * np.einsum("ij,ij,ijk->k", W, dKfac, Ds)
        grad[d] = 0.5 * float((W * K).sum())
        grad[d + 1] = 0.5 * sn2 * float(np.trace(W))
        # priors (negative log densities): hierarchical length scales, log l_j ~ N(m, tau^2),
        # shared level m ~ N(mu0, sigma0^2) - ARD only where the data insists
        m = theta[d + 2]
        z = (theta[:d] - m) / self.tau
        nll += 0.5 * float(z @ z)
        grad[:d] += z / self.tau
        grad[d + 2] = -float(z.sum()) / self.tau
        zm = (m - self.ls_prior_mu) / self.ls_prior_sigma
        nll += 0.5 * zm * zm
        grad[d + 2] += zm / self.ls_prior_sigma
        nll += 0.5 * theta[d] ** 2                      # log sf2 ~ N(0, 1)
        grad[d] += theta[d]
        zn = (theta[d + 1] - math.log(1e-3)) / 3.0      # log noise ~ N(log 1e-3, 3^2)
        nll += 0.5 * zn * zn
        grad[d + 1] += zn / 3.0
        return nll, grad

    # ---- public
    def fit(self, X: np.ndarray, y: np.ndarray) -> "GaussianProcess":
        """Fit hyperparameters and the posterior to ``X`` (n, d) in [0, 1] and targets ``y`` (n,)."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        self.X = X
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if y.size > 1 and y.std() > 1e-12 else 1.0
        self._y = (y - self.y_mean) / self.y_std
        self._D = _sq_dists(X, X, self.cat)
        d = self.d
        bounds = [_LOG_LS_BOUNDS] * d + [_LOG_SF_BOUNDS, _LOG_NOISE_BOUNDS, _LOG_LS_BOUNDS]
        starts = [
            np.r_[np.full(d, self.ls_prior_mu), 0.0, math.log(1e-2), self.ls_prior_mu],
            np.r_[np.full(d, self.ls_prior_mu - 1.5), 0.0, math.log(1e-3), self.ls_prior_mu - 1.5],
        ]
        best = None
        with blas_single_thread():
            for t0 in starts:
                t0 = np.clip(t0, [b[0] for b in bounds], [b[1] for b in bounds])
                res = minimize(self._nll, t0, jac=True, method="L-BFGS-B", bounds=bounds,
                               options={"maxiter": 200})
                if best is None or res.fun < best.fun:
                    best = res
        self.theta = best.x
        self._posterior(X, self._y)
        return self

    def _posterior(self, X: np.ndarray, ystd: np.ndarray) -> None:
        d = self.d
        self.ls = np.exp(self.theta[:d])
        self.sf2 = math.exp(self.theta[d])
        self.sn2 = math.exp(self.theta[d + 1])
        K, _, _ = self._k(_sq_dists(X, X, self.cat), self.ls, self.sf2)
        self._Xp = X
        self._ys = ystd
        self._L = np.linalg.cholesky(K + (self.sn2 + 1e-8) * np.eye(len(X)))
        self._alpha = cho_solve((self._L, True), ystd, check_finite=False)

    def condition_on(self, Xp: np.ndarray) -> None:
        """Kriging believer: add points ``Xp`` with the current mean as their value (same hyperparameters).

        Used for trials in flight so that parallel suggestions spread out.
        """
        Xp = np.asarray(Xp, dtype=float).reshape(-1, self.d)
        if not len(Xp):
            return
        mu, _ = self._predict_std(Xp)
        self._posterior(np.vstack([self._Xp, Xp]), np.r_[self._ys, mu])

    def _predict_std(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Ks, _, _ = self._k(_sq_dists(np.asarray(Xs, float), self._Xp, self.cat), self.ls, self.sf2)
        mu = Ks @ self._alpha
        v = solve_triangular(self._L, Ks.T, lower=True, check_finite=False)
        var = np.maximum(self.sf2 - (v * v).sum(0), 1e-12)
        return mu, np.sqrt(var)

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``Xs`` (m, d), in the units of ``y``."""
        mu, sd = self._predict_std(Xs)
        return mu * self.y_std + self.y_mean, sd * self.y_std

    def expected_improvement(self, Xs: np.ndarray, y_best: float, xi: float = 0.01) -> np.ndarray:
        """EI for MINIMISATION at ``Xs`` given the best (lowest) observed ``y_best``.

        ``xi`` is an exploration margin in units of the standard deviation of the observations.
        """
        mu, sd = self._predict_std(Xs)
        best = (y_best - self.y_mean) / self.y_std
        imp = best - mu - xi
        z = imp / sd
        return imp * norm.cdf(z) + sd * norm.pdf(z)
