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
* :class:`BoostedKernelRegressor`, the kernel level of the CLIs: those linear costs corrected
  per kernel by boosted regression trees on the kernel's descriptors.
* :class:`MeasuredKernelRegressor`, the measured level: a model whose operators were all
  measured alone (or in pairs) is their sum less the per-invoke floor, times what the training
  networks of its size cost beyond their sums; the rest the kernel level's.
All predict in the target's own unit (ms or mJ) and take ``sample_weight`` in ``fit`` (the
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
        k = self.context_index(X[:, self.ctx_idx_])
        return np.maximum((basis * self.coefs_[k]).sum(axis=1) + self.overheads_[k], 1e-9)

    def context_index(self, ctx) -> np.ndarray:
        """Which fitted context's costs each row uses: its own, or for a context never measured
        the nearest one that was."""
        check_is_fitted(self, "coefs_")
        return np.abs(np.asarray(ctx, float)[:, None, :] - self.contexts_[None]).sum(axis=2).argmin(axis=1)

    def unit_costs(self, ctx) -> tuple[np.ndarray, np.ndarray]:
        """(cost per unit of each basis column, overhead) for rows of context ``ctx``."""
        k = self.context_index(ctx)
        return self.coefs_[k] / self.scale_, self.overheads_[k]

    def overhead(self) -> dict:
        """Learned per-model overhead (target unit) per context."""
        check_is_fitted(self, "coefs_")
        return {tuple(float(v) for v in k): float(o) for k, o in zip(self.contexts_, self.overheads_)}


# what the kernel level's trees see of a kernel, in order (the context columns come between the
# log bytes and the kernel count); card.json records it, and a model fitted on other descriptors
# is refused when loaded (predictors.store)
TREE_DESCRIPTORS = ("kind", "dtype", "log_h", "log_w", "log_cin", "log_cout", "kernel", "stride", "log1p_macs",
                    "log1p_bytes", "context", "log_kernels_in_model")


class BoostedKernelRegressor(RegressorMixin, BaseEstimator):
    """The kernel level: latency = learned per-model overhead + sum over the model's kernels of
    ``linear cost x exp(g(kernel))``. The linear cost is :class:`KernelLevelRegressor`'s (per
    (kind, dtype), in count, MACs, bytes and tile-padded MACs); g is a sum of regression trees
    on the kernel's descriptors (kind, dtype, log H, W, Cin, Cout, kernel size, stride, log
    MACs, log bytes, the context, and the log of how many kernels its model has: one for a
    kernel measured alone), boosted on the squared log error of whole models (each
    tree's partition from per-kernel Newton targets, its leaf values Gauss-Newton steps on the
    models): per-kernel costs nonlinear in the descriptors (as nn-Meter's per-kernel forests
    are), learned from whole-model measurements. ``n_estimators=0`` is the linear model.
    The defaults are scikit-learn's GradientBoosting defaults (100 trees of depth 3, learning
    rate 0.1), not tuned on the evaluation. ``g`` stays within ±``max_log_correction`` (a
    factor e^3 by default): a kernel the linear stage prices at zero has no share of any model's
    latency, and the trees would raise its g without end (a held-out MobileNetV1 once came out
    at 1e39 times its latency); the bound leaves every figure of the evaluation unchanged.

    ``X``: a DataFrame with ``kernels_column`` (per row, the kernels as
    :data:`predictors.features.KERNEL_FIELDS` tuples, as :func:`predictors.dataset.load` gives
    them) and the ``context_columns``."""

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 min_samples_leaf: int = 20, max_log_correction: float = 3.0,
                 context_columns=("threads", "background_load"), kernels_column="kernels"):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.max_log_correction = max_log_correction
        self.context_columns = context_columns
        self.kernels_column = kernels_column

    def _parse(self, X):
        from predictors import features as F
        need = [self.kernels_column, *self.context_columns]
        if not hasattr(X, "columns") or not set(need) <= set(X.columns):
            raise ValueError(f"X must be a DataFrame with the columns {', '.join(need)}")
        ctx = X[list(self.context_columns)].to_numpy(float)
        cols = F.kernel_basis_columns()
        at = {c: i for i, c in enumerate(cols)}
        kinds = {k: i for i, k in enumerate(F.KIND_LIST)}
        dts = {d: i for i, d in enumerate(F.DTYPE_CLASSES)}
        rows, contrib, phi = [], [], []
        for i, ks in enumerate(X[self.kernels_column]):
            for k in ks:
                r = dict(zip(F.KERNEL_FIELDS, k))
                c = np.zeros(len(cols))
                for name, v in F.kernel_contribution(r).items():
                    c[at[name]] = v
                onehot = np.zeros(len(kinds) + len(dts))
                onehot[kinds.get(F.cost_kind(r), kinds["other"])] = 1
                onehot[len(kinds) + dts[r["dtype"]]] = 1
                rows.append(i)
                contrib.append(c)
                phi.append(np.r_[onehot, np.log([max(r[f], 1) for f in ("h", "w", "cin", "cout")]), r["kernel"],
                                 r["stride"], np.log1p(r["macs"]), np.log1p(r["bytes"]), ctx[i]])
        width = len(cols), len(kinds) + len(dts) + 8 + ctx.shape[1]
        rows = np.asarray(rows, int)
        # how many kernels the kernel's model has: a kernel alone (the kernels family) pays the
        # model's per-invoke cost by itself, and inside a network runs among others
        n = np.bincount(rows, minlength=len(ctx))
        return (ctx, rows, np.asarray(contrib).reshape(-1, width[0]),
                np.c_[np.asarray(phi).reshape(-1, width[1]), np.log(n[rows])])

    def _parts(self, ctx, rows, contrib):
        unit, overhead = self.linear_.unit_costs(ctx)
        return np.maximum((contrib * unit[rows]).sum(axis=1), 1e-12), overhead

    def _step(self, g, leaf_values):
        """One tree's move of the kernels' log corrections, the same in fit and predict."""
        return np.clip(g + self.learning_rate * leaf_values, -self.max_log_correction, self.max_log_correction)

    def fit(self, X, y, sample_weight=None):
        from sklearn.tree import DecisionTreeRegressor
        y = np.asarray(y, float)
        if np.any(y <= 0):
            raise ValueError("targets must be positive (latency or energy)")
        ctx, rows, contrib, phi = self._parse(X)
        n = len(y)
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        sums = np.zeros((n, contrib.shape[1]))
        np.add.at(sums, rows, contrib)
        nb = sums.shape[1]
        self.linear_ = KernelLevelRegressor(context_columns=tuple(range(nb, nb + ctx.shape[1])))
        self.linear_.fit(np.hstack([sums, ctx]), y, sample_weight=sw)
        cost, overhead = self._parts(ctx, rows, contrib)
        g = np.zeros(len(cost))
        self.trees_, self.leaf_values_ = [], []
        for _ in range(self.n_estimators):
            part = cost * np.exp(g)
            pred = overhead + np.bincount(rows, weights=part, minlength=n)
            resid = sw * (np.log(pred) - np.log(y))
            share = part / pred[rows]
            grad = resid[rows] * share
            hess = sw[rows] * share ** 2 + 1e-12
            # the tree's partition from per-kernel Newton targets (clipped: a kernel whose share
            # of its model is tiny gets a huge target of tiny weight) ...
            t = DecisionTreeRegressor(max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                      random_state=len(self.trees_))
            t.fit(phi, np.clip(-grad / hess, -2.0, 2.0), sample_weight=hess)
            # ... and each leaf's value a Gauss-Newton step on whole models: moving every kernel
            # of a leaf by v moves a model's log latency by v x the leaf's share of that model,
            # not by v x one kernel's share (which would overshoot m times for m such kernels)
            leaf = t.apply(phi)
            values = np.zeros(t.tree_.node_count)
            for node in np.unique(leaf):
                s_n = np.bincount(rows, weights=share * (leaf == node), minlength=n)
                values[node] = -np.sum(resid * s_n) / (np.sum(sw * s_n ** 2) + 1e-12)
            g = self._step(g, values[leaf])
            self.trees_.append(t)
            self.leaf_values_.append(values)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict(self, X):
        check_is_fitted(self, "trees_")
        ctx, rows, contrib, phi = self._parse(X)
        cost, overhead = self._parts(ctx, rows, contrib)
        g = np.zeros(len(cost))
        for t, values in zip(self.trees_, self.leaf_values_):
            g = self._step(g, values[t.apply(phi)])
        return np.maximum(overhead + np.bincount(rows, weights=cost * np.exp(g), minlength=len(ctx)), 1e-9)


NETWORK_CORRECTIONS = ("bytes", "sum", "ops")   # what MeasuredKernelRegressor's network correction reads


class MeasuredKernelRegressor(RegressorMixin, BaseEstimator):
    """A model whose every operator was measured alone: the sum of those measurements, less the
    per-invoke floor that each single-operator model paid once more than the network does (the
    floor: the cheapest operator measured alone in the same context). No parameter is fitted to
    networks: on this project's VM that sum is within 10% for 0.77-0.98 of a family's networks
    that XNNPACK runs in one piece (``bench/alone_vs_network.py``). Any other model (an operator never
    measured alone, a context never measured, or a network XNNPACK runs in several pieces, each
    boundary a cost no single operator shows) is predicted by ``fallback`` (default: the
    kernel level, :class:`BoostedKernelRegressor`), fitted on all the rows.

    Single-operator rows (one kernel that is not of kind ``other``) make the table, the median
    of their targets per operator (:func:`predictors.dataset.kernel_signature`) and context;
    build them with ``python -m harness.zoo build --family kernels --like ZOO``. Rows of two
    operators (``... --like ZOO --pairs``) make a second table: an operator that runs after one
    with which it was measured together costs that pair less the first alone (what it costs
    after that one, with no floor to guess), and a network XNNPACK runs in several pieces is
    summed too when every consecutive pair of it was measured (the boundaries are in the pairs).

    A network can still cost more than its parts measured so (on this project's VM, NAS-Bench-201
    networks 1.01-1.03 at 0.4 ms to 1.07-1.13 at 3 ms, depending on the session; ResNets 1.01-1.03
    at every size). With ``network_correction`` (default ``"bytes"``)
    the networks among the training rows that it sums (more than two operators; at least
    ``min_networks`` of them) teach that factor: an isotonic regression of log(measured / sum) on
    the log of the bytes its operators read and write (``"sum"``: of the sum in ms; ``"ops"``:
    of how many operators it has), flat beyond the networks it saw, applied to every network it
    sums. Train with networks that span the sizes it will be asked about (``harness.zoo build
    --family resnet --max-macs N``); ``None``: the sums as they are.
    ``X``: a DataFrame with ``kernels_column``, the ``context_columns`` and ``pieces_column``."""

    def __init__(self, fallback=None, context_columns=("threads", "background_load"), kernels_column="kernels",
                 pieces_column="xnnpack_pieces", network_correction: str | None = "bytes", min_networks: int = 10):
        self.fallback = fallback
        self.network_correction = network_correction
        self.min_networks = min_networks
        self.context_columns = context_columns
        self.kernels_column = kernels_column
        self.pieces_column = pieces_column

    def _context(self, X) -> np.ndarray:
        need = [self.kernels_column, *self.context_columns, self.pieces_column]
        if not hasattr(X, "columns") or not set(need) <= set(X.columns):
            raise ValueError(f"X must be a DataFrame with the columns {', '.join(need)}")
        return X[list(self.context_columns)].to_numpy(float)

    @staticmethod
    def _encode(sig: tuple) -> tuple:
        """A :func:`predictors.dataset.kernel_signature` as floats (kind and dtype by their index)."""
        from predictors import features as F
        return (float(F.KIND_LIST.index(sig[0])), float(F.DTYPE_CLASSES.index(sig[1])), *map(float, sig[2:]))

    def _keys(self, X):
        """Per row: (context, its operators but those of kind ``other``, encoded as floats)."""
        from predictors.dataset import kernel_signature, operators
        return [(tuple(c), [self._encode(kernel_signature(k)) for k in operators(ks)])
                for c, ks in zip(self._context(X), X[self.kernels_column])]

    def _fallback_columns(self):
        return [self.kernels_column, *self.context_columns]

    def fit(self, X, y, sample_weight=None):
        """``sample_weight`` is the fallback's: the table takes each operator's median."""
        from sklearn.base import clone

        from predictors import features as F
        y = np.asarray(y, float)
        if np.any(y <= 0):
            raise ValueError("targets must be positive (latency or energy)")
        if self.network_correction not in (None, *NETWORK_CORRECTIONS):
            raise ValueError(f"network_correction must be one of {', '.join(NETWORK_CORRECTIONS)} or None, "
                             f"not {self.network_correction!r}")
        from predictors.dataset import alone_costs
        kernels, ctx, width = X[self.kernels_column], self._context(X), len(self.context_columns)

        def table(n_ops):   # (keys: context + n_ops encoded signatures, costs), sorted by key
            rows = sorted((c + sum(map(self._encode, sigs), ()), v)
                          for (c, *sigs), v in alone_costs(kernels, ctx, y, n_ops=n_ops).items())
            keys = np.array([k for k, _ in rows], float).reshape(len(rows), width + n_ops * (len(F.KERNEL_FIELDS) - 1))
            return keys, np.array([v for _, v in rows], float)
        self.keys_, self.costs_ = table(1)
        self.pair_keys_, self.pair_costs_ = table(2)
        self.floor_contexts_ = np.unique(self.keys_[:, :width], axis=0) if len(self.costs_) else np.zeros((0, width))
        self.floors_ = np.array([self.costs_[(self.keys_[:, :width] == c).all(axis=1)].min()
                                 for c in self.floor_contexts_], float)
        # (x, log factor) knots of the network correction; none: every network as summed
        self.correction_x_, self.correction_y_ = np.zeros(0), np.zeros(0)
        if self.network_correction is not None:
            from sklearn.isotonic import IsotonicRegression
            keys = self._keys(X)
            raw = self._sums(X, keys)
            nets = self._networks(raw, keys)
            if nets.sum() >= self.min_networks:
                from scipy.stats import spearmanr
                sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
                x, r = self._size(X, raw, keys)[nets], np.log(y[nets] / raw[nets])
                # the direction as increasing="auto" finds it, without its warning on weak trends
                rho = spearmanr(x, r).statistic if np.ptp(x) > 0 and np.ptp(r) > 0 else 0.0
                iso = IsotonicRegression(increasing=bool(rho >= 0)).fit(x, r, sample_weight=sw[nets])
                self.correction_x_, self.correction_y_ = iso.X_thresholds_, iso.y_thresholds_
        fb = self.fallback if self.fallback is not None else BoostedKernelRegressor(
            context_columns=self.context_columns, kernels_column=self.kernels_column)
        self.fallback_ = clone(fb).fit(X[self._fallback_columns()], y, sample_weight=sample_weight)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def _size(self, X, raw, keys) -> np.ndarray:
        """What the network correction reads, per row (``raw``: its sum; ``keys``: its :meth:`_keys`)."""
        if self.network_correction == "sum":
            return np.log(np.where(raw > 0, raw, np.nan))
        if self.network_correction == "bytes":
            from predictors.dataset import operators
            return np.log([sum(k[-1] for k in operators(ks)) + 1.0 for ks in X[self.kernels_column]])
        if self.network_correction == "ops":
            return np.log([len(ops) + 1.0 for _, ops in keys])
        raise AssertionError(self.network_correction)   # fit checked it

    def measured(self, X) -> np.ndarray:
        """Per row, its prediction from the operators measured alone or in pairs, times the network
        correction (NaN where the fallback's)."""
        check_is_fitted(self, "keys_")
        keys = self._keys(X)
        raw = self._sums(X, keys)
        if len(getattr(self, "correction_x_", ())):   # an artifact saved before the correction has none
            nets = self._networks(raw, keys)
            if nets.any():
                raw[nets] *= np.exp(np.interp(self._size(X, raw, keys)[nets], self.correction_x_, self.correction_y_))
        return raw

    @staticmethod
    def _networks(raw, keys) -> np.ndarray:
        """Rows summed from their parts (to a positive sum) that are networks: more than two operators."""
        return (np.nan_to_num(raw, nan=0.0) > 0) & np.array([len(ops) > 2 for _, ops in keys], bool)

    def _sums(self, X, keys) -> np.ndarray:
        """Per row, the sum of its operators measured alone or in pairs (NaN where not summed);
        ``keys``: the rows' :meth:`_keys`."""
        table = {tuple(k): v for k, v in zip(self.keys_.tolist(), self.costs_)}
        # an artifact saved before pairs were measured has none: it sums as it did
        pairs = {tuple(k): v for k, v in zip(getattr(self, "pair_keys_", np.zeros((0, 0))).tolist(),
                                              getattr(self, "pair_costs_", ()))}
        floors = {tuple(c): f for c, f in zip(self.floor_contexts_.tolist(), self.floors_)}
        pieces = X[self.pieces_column].to_numpy()
        out = np.full(len(X), np.nan)
        for i, (c, ops) in enumerate(keys):
            costs = [table.get(c + op) for op in ops]
            if not ops or None in costs:
                continue
            # each operator after the first: what it costs after the one before, where that pair
            # was measured; else alone, less the per-invoke floor it paid once more
            total, paired = costs[0], True
            for j in range(1, len(ops)):
                p = pairs.get(c + ops[j - 1] + ops[j])
                paired &= p is not None
                total += costs[j] - floors[c] if p is None else p - costs[j - 1]
            if pieces[i] == 1 or paired:
                out[i] = total
        return out

    def predict(self, X):
        check_is_fitted(self, "keys_")
        m = self.measured(X)
        miss = np.isnan(m)
        if miss.any():
            m[miss] = self.fallback_.predict(X.loc[miss, self._fallback_columns()])
        return np.maximum(m, 1e-9)
