"""scikit-learn estimators (they follow the estimator contract: parameters in __init__, learned
state in attributes ending with ``_``, ``fit`` returns self, ``get_params``/``clone`` work).

* :class:`ModelLevelRegressor`: log latency from model-level + context features. A ridge in log
  space carries the trend (it extrapolates to bigger or smaller models than seen, up to 10x
  beyond the training targets), a random forest learns what the trend misses.
* :class:`KernelLevelRegressor`: latency = learned per-model overhead + sum over kernels of a
  per-(kind, dtype) cost linear in the kernel's count, MACs, bytes and MACs padded to SIMD tile
  widths, with non-negative costs, fitted separately per context (threads, background load)
  and weighted for relative error. Per-kernel costs are learned from whole-model
  measurements, and best with the ``kernels`` zoo family (single operators at sampled sizes)
  among them.
Both predict in the target's own unit (ms or mJ); both take ``sample_weight`` in ``fit`` (the
CLIs pass :func:`predictors.dataset.family_weights`).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data


class ModelLevelRegressor(RegressorMixin, BaseEstimator):
    def __init__(self, alpha: float = 1.0, n_estimators: int = 200, min_samples_leaf: int = 2, random_state: int = 0):
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, y_numeric=True)
        if np.any(y <= 0):
            raise ValueError("targets must be positive (latency or energy)")
        ly = np.log(y)
        self.scaler_ = StandardScaler().fit(X)
        Xs = self.scaler_.transform(X)
        self.trend_ = Ridge(alpha=self.alpha).fit(Xs, ly, sample_weight=sample_weight)
        self.forest_ = RandomForestRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                             random_state=self.random_state, n_jobs=1)
        self.forest_.fit(X, ly - self.trend_.predict(Xs), sample_weight=sample_weight)
        self.log_range_ = (float(ly.min()) - np.log(10), float(ly.max()) + np.log(10))
        return self

    def predict(self, X):
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False)
        ly = self.trend_.predict(self.scaler_.transform(X)) + self.forest_.predict(X)
        # a linear trend far outside the features it was fitted on can run to absurd values (1e60 ms
        # for a family of single kernels when fitted on whole networks): stay within 10x of the
        # targets it was trained on
        return np.exp(np.clip(ly, *self.log_range_))


class KernelLevelRegressor(RegressorMixin, BaseEstimator):
    """``context_columns``: indices (or names, with a DataFrame) of the context columns; the rest
    are kernel sums from :func:`predictors.features.kernel_basis`."""

    def __init__(self, context_columns=("threads", "background_load")):
        self.context_columns = context_columns

    def _split(self, X):
        ctx_idx = [list(self.feature_names_in_).index(c) if isinstance(c, str) else int(c)
                   for c in self.context_columns] if hasattr(self, "feature_names_in_") else \
                  [int(c) for c in self.context_columns]
        return ctx_idx

    def fit(self, X, y, sample_weight=None):
        """Rows are weighted for relative error (1 / y^2), times ``sample_weight`` if given."""
        X, y = validate_data(self, X, y, y_numeric=True)
        if np.any(y <= 0):
            raise ValueError("targets must be positive (latency or energy)")
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        self.ctx_idx_ = self._split(X)
        basis = np.delete(X, self.ctx_idx_, axis=1)
        self.scale_ = np.maximum(basis.max(axis=0), 1e-12)
        ctx = X[:, self.ctx_idx_]
        self.contexts_ = np.unique(ctx, axis=0)
        self.coefs_ = np.zeros((len(self.contexts_), basis.shape[1]))
        self.overheads_ = np.zeros(len(self.contexts_))
        for i, k in enumerate(self.contexts_):
            m = (ctx == k).all(axis=1)
            # the overhead is a non-negative unknown of the same least squares, not a free
            # intercept clipped afterwards: when every row has one kernel (the kernels family),
            # the kernel counts sum to the intercept's column, and a free intercept can trade
            # -1e11 against +1e11 on every count
            a = np.hstack([basis[m] / self.scale_, np.ones((int(m.sum()), 1))])
            lr = LinearRegression(positive=True, fit_intercept=False).fit(a, y[m], sample_weight=sw[m] / y[m] ** 2)
            self.coefs_[i], self.overheads_[i] = lr.coef_[:-1], float(lr.coef_[-1])
        return self

    def predict(self, X):
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, reset=False)
        basis = np.delete(X, self.ctx_idx_, axis=1) / self.scale_
        # each row uses its own context's costs; an unseen context uses the nearest one measured
        k = np.abs(X[:, self.ctx_idx_][:, None, :] - self.contexts_[None]).sum(axis=2).argmin(axis=1)
        return np.maximum((basis * self.coefs_[k]).sum(axis=1) + self.overheads_[k], 1e-9)

    def overhead(self) -> dict:
        """Learned per-model overhead (target unit) per context."""
        check_is_fitted(self, "coefs_")
        return {tuple(float(v) for v in k): float(o) for k, o in zip(self.contexts_, self.overheads_)}
