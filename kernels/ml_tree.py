"""ai.onnx.ml tree ensembles: TreeEnsembleRegressor, TreeEnsembleClassifier (opsets 1, 3, 5)
and TreeEnsemble (opset 5).

Prepare (the kernel constructor) flattens every tree of the ensemble into node
arrays: feature id, threshold, comparison mode, the two children, the
missing-value flag. Leaves point to themselves, so a run walks all
(sample, tree) pairs together for max-depth steps with numpy gathers:

    next = child[2 * node + went_true]

Node ids are kept doubled (``2 * node``) so the step needs no multiply. The
leaves reached are then turned into scores with one gather and a sum (one
target), a matmul against a tree->target matrix (one target per tree, as in
gradient boosting), or a gather of dense per-leaf weight rows (general case).

The final scores follow onnxruntime's aggregators: base values, AVERAGE/MIN/MAX,
the single-target case where only PROBIT is applied, and the classifier's
binary special cases (one scored class, weights all positive or mixed).
"""
from __future__ import annotations

import numpy as np

from ortlite.registry import kernel

from ._ml_util import (F32, POST_TRANSFORM_CODES, Features, binary_scores, check_choice, check_lengths,
                       check_post_transform, labels_array, model_error, plural, probit, transform)

ML = "ai.onnx.ml"
CPU = ("cpu",)  # numpy-specific code (np.take with out=, object labels)
LEQ, LT, GTE, GT, EQ, NEQ, MEMBER, LEAF = range(8)
MODE_NAMES = {"BRANCH_LEQ": LEQ, "BRANCH_LT": LT, "BRANCH_GTE": GTE, "BRANCH_GT": GT,
              "BRANCH_EQ": EQ, "BRANCH_NEQ": NEQ, "BRANCH_MEMBER": MEMBER, "LEAF": LEAF}
AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
AGGREGATE_CODES = {0: "AVERAGE", 1: "SUM", 2: "MIN", 3: "MAX"}
_CMP = {LEQ: np.less_equal, LT: np.less, GTE: np.greater_equal, GT: np.greater, EQ: np.equal, NEQ: np.not_equal}
_MAX_DEPTH = 10000
_BLOCK = 1 << 14  # (rows x trees) pairs walked together: the work arrays fit in L2
_COMPACT_DEPTH = 8  # deeper trees drop finished (row, tree) pairs while walking
_CHUNK = 1 << 22  # elements of (rows x trees x targets) gathered at once in the general case


class Forest:
    """All trees of an ensemble as flat arrays, evaluated for a batch at once.

    Nodes are numbered 0..n-1; ``leaf_node, leaf_target, leaf_weight`` list the leaf
    weights (a leaf may carry several; one with none scores nothing, as in onnxruntime).
    ``members`` maps a BRANCH_MEMBER node to its set. ``error(message)`` makes the
    exception for a structure the attributes cannot mean (a child or feature out of
    range, a cycle); ``names`` maps "feature", "child", "target" to the attribute named.
    """

    def __init__(self, feat, thr, mode, true_child, false_child, missing_true, roots,
                 leaf_node, leaf_target, leaf_weight, n_targets, thr_dtype, error, names, members=None,
                 first_weight_only=False):
        n = len(mode)
        mode = np.asarray(mode, dtype=np.int8)
        is_leaf = mode == LEAF
        idx = np.arange(n, dtype=np.intp)
        tc = np.where(is_leaf, idx, np.asarray(true_child, dtype=np.intp))
        fc = np.where(is_leaf, idx, np.asarray(false_child, dtype=np.intp))
        for side, c in (("true", tc), ("false", fc)):
            bad = np.nonzero((c < 0) | (c >= n))[0]
            if bad.size:
                raise error(f"{names['child'] % side}: node {int(bad[0])} points to node {int(c[bad[0]])}, "
                            f"outside [0, {n})")
        self.n_targets = int(n_targets)
        roots = np.asarray(roots, dtype=np.intp)
        self.n_trees = len(roots)
        self.thr_dtype = np.dtype(thr_dtype)
        feat = np.where(is_leaf, 0, np.asarray(feat, dtype=np.int64))
        bad = np.nonzero((feat < 0) | (feat > np.iinfo(np.int32).max))[0]
        if bad.size:
            raise error(f"{names['feature']}[{int(bad[0])}] = {int(feat[bad[0]])}: a feature id must be in "
                        "[0, 2147483647]")
        feat = feat.astype(np.intp)
        thr = np.where(is_leaf, 0, np.asarray(thr, dtype=np.float64)).astype(self.thr_dtype)
        mt = np.zeros(n, dtype=bool)
        if missing_true is not None and len(missing_true):
            k = min(n, len(missing_true))
            mt[:k] = np.asarray(missing_true[:k]) == 1
        mt &= ~is_leaf
        self.roots = roots
        tree_of, level, self.depth = self._walk_structure(tc, fc, is_leaf, n, error)
        # renumber the nodes level by level (all roots, then all depth-1 nodes, ...): each step of
        # the walk then reads one contiguous stretch of the node tables, which stays in cache
        order = np.lexsort((idx, tree_of, np.where(level < 0, n + 1, level)))
        new = np.empty(n, dtype=np.intp)
        new[order] = idx
        mode, is_leaf, feat, thr, mt, tree_of = (a[order] for a in (mode, is_leaf, feat, thr, mt, tree_of))
        tc, fc = new[tc[order]], new[fc[order]]
        self.roots = new[roots]
        leaf_node = new[np.asarray(leaf_node, dtype=np.intp)] if len(leaf_node) else np.zeros(0, np.intp)
        members = {int(new[k]): v for k, v in (members or {}).items()}
        # arrays indexed by doubled node ids: slot 2i+1 is the true child, 2i the false one
        self.child2 = np.empty(2 * n, dtype=np.intp)
        self.child2[0::2] = 2 * fc
        self.child2[1::2] = 2 * tc
        self.feat2 = np.zeros(2 * n, dtype=np.intp)
        self.feat2[0::2] = feat
        self.max_feature = int(self.feat2.max()) if n else -1
        self.thr2 = np.zeros(2 * n, dtype=self.thr_dtype)
        self.thr2[0::2] = thr
        internal_modes = sorted(set(mode[~is_leaf].tolist()))
        self.single_mode = internal_modes[0] if len(internal_modes) == 1 and internal_modes[0] != MEMBER else None
        self.modes = [m for m in internal_modes if m != MEMBER]
        self.leaf2 = np.zeros(2 * n, dtype=bool)
        self.leaf2[0::2] = is_leaf
        self.mode2 = np.zeros(2 * n, dtype=np.int8)
        self.mode2[0::2] = mode
        self.has_missing = bool(mt.any())
        self.mt2 = np.zeros(2 * n, dtype=bool)
        self.mt2[0::2] = mt
        self._prepare_members(members, n)
        self._prepare_leaves(leaf_node, np.asarray(leaf_target, dtype=np.intp),
                             np.asarray(leaf_weight, dtype=np.float64), is_leaf, tree_of, n, first_weight_only,
                             error, names)

    # ---- prepare -------------------------------------------------------------------------
    def features(self, ctx):
        """The input width the nodes need: more than the largest feature id an interior node reads."""
        m = self.max_feature
        return Features(ctx, m + 1, f"nodes_featureids reads feature {m}, so the input needs at least "
                        f"{m + 1} features", at_least=True)

    def _prepare_members(self, members, n):
        self.has_member = bool(members)
        if not members:
            return
        values = np.sort(np.concatenate([np.asarray(sorted(v), dtype=np.float64) for v in members.values()]))
        values = values[np.concatenate([[True], values[1:] != values[:-1]])]
        self.member_values = values.astype(self.thr_dtype)
        nodes = sorted(members)
        self.member_rank2 = np.zeros(2 * n, dtype=np.intp)
        table = np.zeros((len(nodes), max(len(values), 1)), dtype=bool)
        # onnxruntime tests sets of small integers (0..30) exactly, but other integer sets against
        # the feature cast to int32 (truncated): -1.5 is then a member of {-1}
        trunc = np.zeros(len(nodes), dtype=bool)
        for r, node in enumerate(nodes):
            self.member_rank2[2 * node] = r
            vals = np.asarray(sorted(members[node]), dtype=np.float64)
            table[r, np.searchsorted(values, vals)] = True
            integral = bool((vals == np.trunc(vals)).all())
            trunc[r] = integral and not bool(((vals >= 0) & (vals <= 30)).all())
        self.member_table = table
        self.member_trunc = trunc

    def _walk_structure(self, tc, fc, is_leaf, n, error):
        """Tree index and depth of every reachable node (-1 elsewhere), and the maximum depth.

        A path longer than the node count goes round a cycle. Nodes reached twice from one
        tree (two parents, as onnxruntime accepts) are walked once per level."""
        tree_of = np.full(n, -1, dtype=np.intp)
        level = np.full(n, -1, dtype=np.intp)
        front = self.roots
        owner = np.arange(self.n_trees, dtype=np.intp)
        depth = 0
        while front.size:
            tree_of[front] = owner
            level[front] = depth
            inner = ~is_leaf[front]
            front, owner = front[inner], owner[inner]
            if not front.size:
                break
            depth += 1
            if depth > min(n, _MAX_DEPTH):
                what = "a cycle" if depth > n else f"more than {_MAX_DEPTH} levels"
                raise error(f"tree {int(owner[0])} has {what} (nodes_truenodeids / nodes_falsenodeids)")
            pairs = np.unique(np.concatenate([owner, owner]) * n + np.concatenate([tc[front], fc[front]]))
            owner, front = pairs // n, pairs % n
        return tree_of, level, depth

    def _prepare_leaves(self, leaf_node, leaf_target, leaf_weight, is_leaf, tree_of, n, first_only, error, names):
        k = self.n_targets
        bad = np.nonzero((leaf_target < 0) | (leaf_target >= k))[0]
        if bad.size:
            raise error(f"{names['target']}[{int(bad[0])}] = {int(leaf_target[bad[0]])} is outside [0, {k})")
        on_leaf = is_leaf[leaf_node] if leaf_node.size else np.zeros(0, bool)
        leaf_node, leaf_target, leaf_weight = leaf_node[on_leaf], leaf_target[on_leaf], leaf_weight[on_leaf]
        count = np.bincount(leaf_node, minlength=n)
        reached = tree_of >= 0
        weightless = bool((is_leaf & reached & (count == 0)).any())
        if first_only and leaf_node.size:
            # onnxruntime's single-target path keeps the first weight of each leaf
            order = np.argsort(leaf_node, kind="stable")
            first = order[np.concatenate([[True], leaf_node[order][1:] != leaf_node[order][:-1]])]
            leaf_node, leaf_target, leaf_weight = leaf_node[first], leaf_target[first], leaf_weight[first]
            count = np.bincount(leaf_node, minlength=n)
        acc = np.float64 if self.thr_dtype == np.float64 else F32
        self.acc_dtype = acc
        one_per_leaf = bool((count[is_leaf & reached] == 1).all())
        tree_target = np.full(self.n_trees, -1, dtype=np.intp)
        if one_per_leaf and leaf_node.size:
            trees = tree_of[leaf_node]
            ok = trees >= 0
            tree_target[trees[ok]] = leaf_target[ok]
            consistent = bool((tree_target[trees[ok]] == leaf_target[ok]).all())
        else:
            consistent = False
        if (k == 1 and not weightless) or (one_per_leaf and consistent):
            # one value per leaf; each tree feeds one target
            self.strategy = "tree"
            self.val2 = np.zeros(2 * n, dtype=acc)
            self.val2[2 * leaf_node] = leaf_weight
            self.tree_target = np.where(tree_target < 0, 0, tree_target)
            onehot = np.zeros((self.n_trees, k), dtype=acc)
            onehot[np.arange(self.n_trees), self.tree_target] = 1
            self.onehot = onehot
            self.always_scored = np.zeros(k, bool)
            self.always_scored[self.tree_target[tree_target >= 0]] = True
            self.tree_targets_used = np.nonzero(np.bincount(self.tree_target, minlength=k))[0]
        else:
            # general: a dense row of weights per leaf (0 where the leaf has none for a target) and
            # a mask of the targets it scores; a NaN weight is a score (onnxruntime adds it in)
            self.strategy = "dense"
            w = np.zeros((2 * n, k), dtype=np.float64)
            np.add.at(w, (2 * leaf_node, leaf_target), leaf_weight)  # a repeated target on a leaf adds up
            h = np.zeros((2 * n, k), dtype=bool)
            h[2 * leaf_node, leaf_target] = True
            self.w2 = w.astype(acc)
            # which targets a row has a score for: every one where each reachable leaf scores every
            # target (random forests); else an OR of per-leaf bit masks (up to 63 targets) or the mask
            if h[2 * np.nonzero(is_leaf & reached)[0]].all():
                self.has_mode = "all"
            elif k <= 63:
                self.has_mode = "bits"
                self.bits2 = (h.astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1)
                self.bit_values = np.int64(1) << np.arange(k, dtype=np.int64)
            else:
                self.has_mode = "mask"
            self.h2 = h
        # A NaN or infinite weight takes the slower paths: the tree->target matmul would spread it to
        # every target (NaN * 0, inf * 0), and onnxruntime's MIN / MAX keep a NaN only where it is the
        # first score of a target in tree order (a comparison with NaN is false both ways).
        self.nonfinite = not bool(np.isfinite(leaf_weight).all())

    # ---- run -----------------------------------------------------------------------------
    def leaves(self, X):
        """(N, C) input -> (N, T) doubled ids of the leaf each tree reaches; C > max_feature
        (the kernels check it with ``features``)."""
        n_rows, c = X.shape
        x = np.ascontiguousarray(X, dtype=self.thr_dtype).reshape(-1)
        t = self.n_trees
        out = np.empty((n_rows, t), dtype=np.intp)
        if self.depth == 0 or n_rows == 0 or t == 0:
            out[:] = 2 * self.roots
            return out
        # rows in blocks so that the work arrays stay in cache; buffers are reused across blocks
        rows = max(1, min(n_rows, _BLOCK // t))
        m = rows * t
        node = np.empty(m, dtype=np.intp)
        f = np.empty(m, dtype=np.intp)
        xv = np.empty(m, dtype=self.thr_dtype)
        th = np.empty(m, dtype=self.thr_dtype)
        went = np.empty(m, dtype=bool)
        roots2 = 2 * self.roots
        base_all = np.repeat(np.arange(rows, dtype=np.intp) * c, t)
        # deep trees (random forests): pairs that reached a leaf are dropped every other step
        compact = self.depth > _COMPACT_DEPTH
        for r0 in range(0, n_rows, rows):
            r = min(rows, n_rows - r0)
            k = r * t
            nd = node[:k]
            nd.reshape(r, t)[:] = roots2
            base = base_all[:k] + r0 * c
            block = out[r0:r0 + r].reshape(-1)
            pos = None
            for step in range(self.depth):
                n = nd.size
                fb, xb, tb, wb = f[:n], xv[:n], th[:n], went[:n]
                np.take(self.feat2, nd, out=fb, mode="clip")
                np.add(fb, base, out=fb)
                np.take(x, fb, out=xb, mode="clip")
                np.take(self.thr2, nd, out=tb, mode="clip")
                if self.single_mode is not None:
                    _CMP[self.single_mode](xb, tb, out=wb)
                else:
                    wb[:] = self._mixed(xb, tb, nd)
                if self.has_missing:
                    wb |= self.mt2[nd] & np.isnan(xb)
                np.add(nd, wb, out=nd)
                np.take(self.child2, nd, out=nd, mode="clip")
                if compact and step % 2 == 1 and step + 1 < self.depth:
                    live = ~self.leaf2[nd]
                    if not live.all():
                        if pos is None:
                            pos = np.arange(k, dtype=np.intp)
                        done = ~live
                        block[pos[done]] = nd[done]
                        nd, pos, base = nd[live], pos[live], base[live]
                        if not nd.size:
                            break
            if pos is None:
                block[:] = nd
            elif nd.size:
                block[pos] = nd
        return out

    def _mixed(self, xv, th, node):
        modes = self.mode2[node]
        went = np.zeros(node.shape, dtype=bool)
        for m in self.modes:
            went |= (modes == m) & _CMP[m](xv, th)
        if self.has_member:
            sel = np.nonzero(modes == MEMBER)[0]
            if sel.size:
                rank = self.member_rank2[node[sel]]
                v = xv[sel]
                v = np.where(self.member_trunc[rank], np.trunc(v), v)
                vals = self.member_values
                j = np.minimum(np.searchsorted(vals, v), vals.size - 1)
                found = vals[j] == v
                went[sel] = found & self.member_table[rank, j]
        return went

    def scores(self, leaf2, aggregate):
        """Leaves reached -> (N, K) aggregated scores and an (N, K) 'has a score' mask (or a (K,) one)."""
        n_rows = leaf2.shape[0]
        k = self.n_targets
        if self.strategy == "tree":
            v = self.val2[leaf2]
            if aggregate in ("SUM", "AVERAGE"):
                if k == 1:
                    s = v.sum(axis=1, keepdims=True)
                elif not self.nonfinite:
                    s = v @ self.onehot
                else:
                    s = np.zeros((n_rows, k), dtype=v.dtype)
                    for target in self.tree_targets_used:
                        s[:, target] = v[:, self.tree_target == target].sum(axis=1)
            else:
                s = np.zeros((n_rows, k), dtype=v.dtype)
                red = np.fmin if aggregate == "MIN" else np.fmax
                for target in self.tree_targets_used:
                    cols = np.nonzero(self.tree_target == target)[0]
                    s[:, target] = red.reduce(v[:, cols], axis=1)
                    if self.nonfinite:  # the first tree of the target gives NaN: it stays
                        first = v[:, cols[0]]
                        s[:, target] = np.where(np.isnan(first), first, s[:, target])
            return s, self.always_scored
        s = np.empty((n_rows, k), dtype=self.w2.dtype)
        mode = self.has_mode
        has = np.ones(k, dtype=bool) if mode == "all" else np.empty((n_rows, k), dtype=bool)
        step = max(1, _CHUNK // max(1, self.n_trees * k))
        for r0 in range(0, n_rows, step):
            lv = leaf2[r0:r0 + step]
            g = self.w2[lv]  # (rows, T, K)
            if aggregate in ("SUM", "AVERAGE"):
                s[r0:r0 + step] = g.sum(axis=1)
                if mode == "bits":
                    bits = np.bitwise_or.reduce(self.bits2[lv], axis=1)
                    has[r0:r0 + step] = (bits[:, None] & self.bit_values) != 0
                elif mode == "mask":
                    has[r0:r0 + step] = self.h2[lv].any(axis=1)
            else:
                hg = self.h2[lv]
                hc = hg.any(axis=1)
                if mode != "all":
                    has[r0:r0 + step] = hc
                red = np.fmin if aggregate == "MIN" else np.fmax
                g = np.where(hg, g, np.nan)
                r = red.reduce(g, axis=1)
                if self.nonfinite:  # the first score of a target is NaN: it stays
                    first = np.take_along_axis(g, hg.argmax(axis=1)[:, None, :], axis=1)[:, 0, :]
                    r = np.where(np.isnan(first), first, r)
                s[r0:r0 + step] = np.where(hc, r, 0)
        return s, has


def _rows(X):
    if X.ndim == 0:
        raise ValueError("tree ensemble: input needs at least one dimension")
    if X.ndim == 1:
        return X.reshape(1, -1)
    if X.ndim > 2:
        raise ValueError(f"tree ensemble: input must be 1-D or 2-D, got shape {X.shape}")
    return X


def _has_matrix(has, n_rows):
    return np.broadcast_to(has, (n_rows, has.shape[-1])) if has.ndim == 1 else has


def finalize_regression(s, has, n_trees, aggregate, base, post):
    """onnxruntime's TreeAggregator{Sum,Average,Min,Max} final step -> (N, K) float scores."""
    n_rows, k = s.shape
    has = _has_matrix(has, n_rows)
    base = np.asarray(base, dtype=s.dtype)
    if k == 1:
        origin = base[0] if base.size == 1 else s.dtype.type(0)
        if aggregate == "AVERAGE":
            s = s / s.dtype.type(n_trees)
        if aggregate in ("MIN", "MAX"):
            s = np.where(has, s, 0)
        s = s + origin
        # one target: only PROBIT is applied
        return probit(s) if post == "PROBIT" else s
    if aggregate == "AVERAGE":
        s = s / s.dtype.type(n_trees)
    if base.size == k:
        s = s + base
    # a target no leaf scored is written as 0, base value or not (onnxruntime's ScoreValue)
    if not has.all():
        s = np.where(has, s, 0)
    return transform(s.astype(F32), post) if post != "NONE" else s


def _tree_common_prepare(ctx, nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, nodes_values,
                         nodes_values_as_tensor, nodes_hitrates, nodes_hitrates_as_tensor, nodes_truenodeids,
                         nodes_falsenodeids, nodes_missing_value_tracks_true, w_treeids, w_nodeids, w_ids, w_weights,
                         w_weights_as_tensor, n_targets, thr_dtype, first_weight_only):
    """Opset 1/3 attributes (node ids are per tree) -> a Forest. The ``w_*`` lists are the leaf
    weights: ``target_*`` for the regressor, ``class_*`` for the classifier."""
    w = "class" if ctx.node.op_type.endswith("Classifier") else "target"
    tree = np.asarray(nodes_treeids or [], dtype=np.int64)
    nid = np.asarray(nodes_nodeids or [], dtype=np.int64)
    n = tree.size
    if not n:
        raise model_error(ctx, "the ensemble has no nodes (nodes_treeids is empty)")
    # nodes_hitrates and a short nodes_missing_value_tracks_true are read as onnxruntime reads them
    # (the former not at all, the latter as False past its end), so their lengths are free
    check_lengths(ctx, "nodes_treeids", n, {
        "nodes_nodeids": nodes_nodeids or [], "nodes_featureids": nodes_featureids or [],
        "nodes_modes": nodes_modes or [], "nodes_truenodeids": nodes_truenodeids or [],
        "nodes_falsenodeids": nodes_falsenodeids or [], "nodes_values": nodes_values,
        "nodes_values_as_tensor": nodes_values_as_tensor})
    if n_targets < 1:
        raise model_error(ctx, f"{'the class labels count' if w == 'class' else 'n_targets'} is {n_targets}, "
                          "expected at least 1")
    check_lengths(ctx, f"{w}_ids", len(w_ids or []), {
        f"{w}_nodeids": w_nodeids or [], f"{w}_treeids": w_treeids or [],
        f"{w}_weights": (w_weights or []) if w_weights_as_tensor is None else None,
        f"{w}_weights_as_tensor": w_weights_as_tensor})
    modes = [m for m in MODE_NAMES if m != "BRANCH_MEMBER"]  # BRANCH_MEMBER: TreeEnsemble (opset 5) only
    mode = np.asarray([MODE_NAMES[check_choice(ctx, "nodes_modes entry", m, modes)] for m in nodes_modes],
                      dtype=np.int8)
    thr = nodes_values_as_tensor.reshape(-1) if nodes_values_as_tensor is not None else np.asarray(
        nodes_values or [0.0] * n, dtype=F32)
    # (tree, node id) -> position, by binary search on a combined key
    span = int(max(nid.max(), np.asarray(nodes_truenodeids).max(), np.asarray(nodes_falsenodeids).max(), 0)) + 1
    key = (tree - tree.min()) * span + nid
    order = np.argsort(key, kind="stable")
    skey = key[order]
    if (skey[1:] == skey[:-1]).any():
        raise model_error(ctx, "a node id appears twice in a tree")

    def find(trees, ids, what):
        q = (np.asarray(trees, dtype=np.int64) - tree.min()) * span + np.asarray(ids, dtype=np.int64)
        j = np.minimum(np.searchsorted(skey, q), n - 1)
        bad = np.nonzero(skey[j] != q)[0]
        if bad.size:
            i = int(bad[0])
            raise model_error(ctx, f"{what} {int(np.asarray(ids)[i])} (entry {i}, tree "
                              f"{int(np.asarray(trees)[i])}) is not a node id of that tree")
        return order[j]

    is_leaf = mode == LEAF
    tc = np.zeros(n, dtype=np.intp)
    fc = np.zeros(n, dtype=np.intp)
    inner = ~is_leaf
    tc[inner] = find(tree[inner], np.asarray(nodes_truenodeids)[inner], "nodes_truenodeids")
    fc[inner] = find(tree[inner], np.asarray(nodes_falsenodeids)[inner], "nodes_falsenodeids")
    # a tree's root is its first node in attribute order (onnxruntime)
    roots = np.nonzero(np.concatenate([[True], tree[1:] != tree[:-1]]))[0]
    weights = w_weights_as_tensor.reshape(-1) if w_weights_as_tensor is not None else np.asarray(
        w_weights or [], dtype=F32)
    leaf_node = find(w_treeids, w_nodeids, f"{w}_nodeids") if w_nodeids else np.zeros(0, np.intp)
    return Forest(np.asarray(nodes_featureids, dtype=np.int64), thr, mode, tc, fc, nodes_missing_value_tracks_true,
                  roots, leaf_node, np.asarray(w_ids or [], dtype=np.int64), weights, n_targets, thr_dtype,
                  lambda m: model_error(ctx, m),
                  {"feature": "nodes_featureids", "child": "nodes_%snodeids", "target": f"{w}_ids"},
                  first_weight_only=first_weight_only)


def _thr_dtype(ctx, *tensors):
    if any(t is not None and t.dtype == np.float64 for t in tensors):
        return np.float64
    return np.float64 if ctx.input_dtype(0) == np.float64 else F32


def _base(ctx, base_values, base_values_as_tensor, k, sizes):
    """The base values as float64; their count must be one of ``sizes``."""
    if base_values_as_tensor is not None:
        base, name = base_values_as_tensor.reshape(-1).astype(np.float64), "base_values_as_tensor"
    else:
        base, name = np.asarray(base_values or [], dtype=np.float64), "base_values"
    if base.size not in sizes:
        what = plural(k, "class" if ctx.node.op_type.endswith("Classifier") else "target")
        raise model_error(ctx, f"{name} has {base.size} values for {what} "
                          f"(expected {' or '.join(map(str, sorted(set(sizes))))})")
    return base


@kernel("TreeEnsembleRegressor", since=1, domain=ML, families=CPU)
class TreeEnsembleRegressor:
    # opset 3 adds the *_as_tensor (double) attributes; opset 5 only deprecates the op.
    def __init__(self, ctx, *, aggregate_function="SUM", base_values=None, base_values_as_tensor=None,
                 n_targets=None, nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                 nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None, nodes_modes=None,
                 nodes_nodeids=None, nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                 nodes_values_as_tensor=None, post_transform="NONE", target_ids=None, target_nodeids=None,
                 target_treeids=None, target_weights=None, target_weights_as_tensor=None):
        self.post = check_post_transform(ctx, post_transform)
        self.agg = check_choice(ctx, "aggregate_function", aggregate_function, AGGREGATES)
        k = 1 if n_targets is None else int(n_targets)
        thr_dtype = _thr_dtype(ctx, nodes_values_as_tensor, target_weights_as_tensor, base_values_as_tensor)
        self.forest = _tree_common_prepare(
            ctx, nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, nodes_values, nodes_values_as_tensor,
            nodes_hitrates, nodes_hitrates_as_tensor, nodes_truenodeids, nodes_falsenodeids,
            nodes_missing_value_tracks_true, target_treeids, target_nodeids, target_ids, target_weights,
            target_weights_as_tensor, k, thr_dtype, first_weight_only=(k == 1))
        self.base = _base(ctx, base_values, base_values_as_tensor, k, (0, k))
        self.features = self.forest.features(ctx)

    def __call__(self, X):
        self.features(X)
        f = self.forest
        s, has = f.scores(f.leaves(_rows(X)), self.agg)
        return finalize_regression(s, has, f.n_trees, self.agg, self.base, self.post).astype(F32, copy=False)


@kernel("TreeEnsembleClassifier", since=1, domain=ML, families=CPU)
class TreeEnsembleClassifier:
    # opset 3 adds the *_as_tensor (double) attributes; opset 5 only deprecates the op.
    def __init__(self, ctx, *, base_values=None, base_values_as_tensor=None, class_ids=None, class_nodeids=None,
                 class_treeids=None, class_weights=None, class_weights_as_tensor=None, classlabels_int64s=None,
                 classlabels_strings=None, nodes_falsenodeids=None, nodes_featureids=None, nodes_hitrates=None,
                 nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=None, nodes_modes=None,
                 nodes_nodeids=None, nodes_treeids=None, nodes_truenodeids=None, nodes_values=None,
                 nodes_values_as_tensor=None, post_transform="NONE"):
        self.post = check_post_transform(ctx, post_transform)
        self.strings = bool(classlabels_strings)
        self.labels = list(classlabels_strings) if self.strings else [int(v) for v in (classlabels_int64s or [])]
        k = len(self.labels)
        if k == 0:
            raise model_error(ctx, "classlabels_int64s or classlabels_strings is required")
        self.k = k
        thr_dtype = _thr_dtype(ctx, nodes_values_as_tensor, class_weights_as_tensor, base_values_as_tensor)
        self.forest = _tree_common_prepare(
            ctx, nodes_treeids, nodes_nodeids, nodes_featureids, nodes_modes, nodes_values, nodes_values_as_tensor,
            nodes_hitrates, nodes_hitrates_as_tensor, nodes_truenodeids, nodes_falsenodeids,
            nodes_missing_value_tracks_true, class_treeids, class_nodeids, class_ids, class_weights,
            class_weights_as_tensor, k, thr_dtype, first_weight_only=(k == 1))
        # one or two classes: a base value per class or one for the scored class (binary cases)
        self.base = _base(ctx, base_values, base_values_as_tensor, k, (0, k) if k > 2 else (0, 1, 2))
        self.features = self.forest.features(ctx)
        w = class_weights_as_tensor.reshape(-1) if class_weights_as_tensor is not None else np.asarray(
            class_weights or [], dtype=np.float64)
        self.all_positive = not bool((w < 0).any())  # onnxruntime: no weight < 0 (a NaN is not)
        self.binary_case = k == 2 and len(set(class_ids or [])) == 1
        self.label_arr = labels_array(self.labels, self.strings)

    def __call__(self, X):
        self.features(X)
        f = self.forest
        x = _rows(X)
        s, has = f.scores(f.leaves(x), "SUM")
        n = s.shape[0]
        has = np.array(_has_matrix(has, n))
        s = s.astype(np.float64)
        if self.k > 2:
            lab, z = self._multiclass(s, has)
        elif self.k == 2:
            lab, z = self._binary(s, has)
        else:
            lab, z = self._one_class(s[:, 0])
        if self.strings:
            lab = self.label_arr[np.clip(lab, 0, self.k - 1)]
        return lab, z.astype(F32, copy=False)

    def _multiclass(self, s, has):
        nb = min(self.base.size, self.k)
        s[:, :nb] += self.base[:nb]
        has[:, :nb] = True
        # onnxruntime's scan: the first scored class, then any scored class strictly greater (a NaN
        # never wins over a number, and a NaN in the lead keeps it)
        best = np.full(s.shape[0], -1, dtype=np.intp)
        top = np.zeros(s.shape[0])
        for j in range(self.k):
            take = has[:, j] & ((best < 0) | (s[:, j] > top))
            best[take], top[take] = j, s[take, j]
        best = np.maximum(best, 0)
        lab = best if self.strings else np.asarray(self.labels, dtype=np.int64)[best]
        return lab, transform(s.astype(F32), self.post)

    def _binary(self, s, has):
        # onnxruntime's ScoreValue semantics: a class nobody scored reads as 0 when written,
        # even after a base value was added to its raw score.
        p0, p1, h0, h1 = s[:, 0].copy(), s[:, 1].copy(), has[:, 0], has[:, 1].copy()
        b = self.base
        second = -1
        if b.size == 2:
            # with a score for class 1, class 1 becomes base[1] + the raw class-0 score, class 0 its opposite
            p1 = np.where(h1, b[1] + p0, p1 + b[1])
            p0 = np.where(h1, -p1, p0 + b[0])
            two = np.ones_like(h1)
        else:
            if b.size == 1:
                p0 = p0 + b[0]
            elif b.size == 0:
                second = 3
            two = h1.copy()  # class 1 without a score: one column
        pos = np.where(two & h1, p1, np.where(h0, p0, 0.0))
        if self.binary_case:
            win = pos > 0.5 if self.all_positive else pos > 0
            second = 0 if self.all_positive else 2
            lab = win.astype(np.intp)
            if not self.strings:
                lab = np.asarray(self.labels, dtype=np.int64)[lab]
        else:
            lab = (pos > 0).astype(np.int64)  # onnxruntime's raw 1/0, not the class labels
        v0 = np.where(h0, p0, 0.0).astype(F32)
        v1 = np.where(h1, p1, 0.0).astype(F32)
        z = np.zeros((s.shape[0], 2), dtype=F32)
        if two.any():
            z[two] = transform(np.stack([v0[two], v1[two]], axis=1), self.post)
        one = ~two
        if one.any():
            z[one] = binary_scores(v0[one], self.post, second) if second >= 0 or self.post == "PROBIT" \
                else np.stack([v0[one], np.zeros(int(one.sum()), F32)], axis=1)
        return lab, z

    def _one_class(self, s):
        b = self.base
        p = s + b[1] if b.size == 2 else (s + b[0] if b.size == 1 else s)
        lab = np.where(p > 0, 1, 0).astype(np.int64)
        if b.size == 2:
            # onnxruntime scores (-p, p), transforms both and writes the first
            z = transform(np.stack([-p, p], axis=1).astype(F32), self.post)[:, 0] if self.post != "NONE" else -p
        else:
            z = probit(p) if self.post == "PROBIT" else p
        return lab, np.asarray(z, dtype=F32).reshape(-1, 1)


@kernel("TreeEnsemble", since=5, domain=ML, families=CPU)
class TreeEnsemble:
    """The opset-5 single op: interior nodes and leaves in separate arrays, set membership splits."""

    def __init__(self, ctx, *, aggregate_function=1, leaf_targetids=None, leaf_weights=None, membership_values=None,
                 n_targets=None, nodes_falseleafs=None, nodes_falsenodeids=None, nodes_featureids=None,
                 nodes_hitrates=None, nodes_missing_value_tracks_true=None, nodes_modes=None, nodes_splits=None,
                 nodes_trueleafs=None, nodes_truenodeids=None, post_transform=0, tree_roots=None):
        self.agg = AGGREGATE_CODES[check_choice(ctx, "aggregate_function", aggregate_function, tuple(AGGREGATE_CODES))]
        self.post = POST_TRANSFORM_CODES[check_choice(ctx, "post_transform", post_transform,
                                                      tuple(POST_TRANSFORM_CODES))]
        modes = np.asarray(nodes_modes if nodes_modes is not None else [], dtype=np.int64).reshape(-1)
        ni = modes.size
        bad = np.nonzero((modes < 0) | (modes > MEMBER))[0]
        if bad.size:
            raise model_error(ctx, f"nodes_modes[{int(bad[0])}] = {int(modes[bad[0]])} is not a mode (0..{MEMBER})")
        if n_targets is not None and int(n_targets) < 1:
            raise model_error(ctx, f"n_targets is {n_targets}, expected at least 1")
        check_lengths(ctx, "nodes_modes", ni, {
            "nodes_featureids": nodes_featureids or [], "nodes_splits": nodes_splits,
            "nodes_truenodeids": nodes_truenodeids or [], "nodes_falsenodeids": nodes_falsenodeids or [],
            "nodes_trueleafs": nodes_trueleafs, "nodes_falseleafs": nodes_falseleafs,
            "nodes_missing_value_tracks_true": nodes_missing_value_tracks_true, "nodes_hitrates": nodes_hitrates})
        splits = np.zeros(ni) if nodes_splits is None else nodes_splits.reshape(-1)
        self.out_dtype = ctx.output_dtype(0) or (splits.dtype if splits.dtype != np.float16 else F32)
        thr_dtype = np.float64 if (splits.dtype == np.float64 or ctx.input_dtype(0) == np.float64) else F32
        weights = np.asarray(leaf_weights if leaf_weights is not None else [], dtype=np.float64).reshape(-1)
        nl = weights.size
        check_lengths(ctx, "leaf_weights", nl, {"leaf_targetids": leaf_targetids or []})
        tl = np.asarray(nodes_trueleafs or [0] * ni, dtype=bool)
        fl = np.asarray(nodes_falseleafs or [0] * ni, dtype=bool)
        tids = np.asarray(nodes_truenodeids or [], dtype=np.intp)
        fids = np.asarray(nodes_falsenodeids or [], dtype=np.intp)
        for side, ids, leaf in (("true", tids, tl), ("false", fids, fl)):
            # a child is a leaf (index into leaf_weights) or an interior node (index into nodes_*)
            bad = np.nonzero((ids < 0) | (ids >= np.where(leaf, nl, ni)))[0]
            if bad.size:
                j = int(bad[0])
                what = f"leaf {ids[j]} of {nl}" if leaf[j] else f"interior node {ids[j]} of {ni}"
                raise model_error(ctx, f"nodes_{side}nodeids[{j}] points to {what}")
        roots = np.asarray(tree_roots or [], dtype=np.intp)
        if roots.size and (roots.min() < 0 or roots.max() >= ni):
            raise model_error(ctx, f"tree_roots {roots.tolist()} points outside the {ni} interior nodes")
        # one numbering: interior nodes first, then leaves
        tc = np.where(tl, ni + tids, tids)
        fc = np.where(fl, ni + fids, fids)
        mode = np.concatenate([modes, np.full(nl, LEAF)]).astype(np.int8)
        feat = np.concatenate([np.asarray(nodes_featureids or [0] * ni, dtype=np.intp), np.zeros(nl, np.intp)])
        thr = np.concatenate([splits.astype(np.float64), np.zeros(nl)])
        idx = np.arange(ni + nl)
        tc = np.concatenate([tc, idx[ni:]])
        fc = np.concatenate([fc, idx[ni:]])
        mt = list(nodes_missing_value_tracks_true or [])
        members = {}
        if (modes == MEMBER).any():
            if membership_values is None:
                raise model_error(ctx, "BRANCH_MEMBER nodes need membership_values")
            vals = membership_values.reshape(-1).astype(np.float64)
            cuts = np.nonzero(np.isnan(vals))[0]
            sets = np.split(vals, cuts)
            sets = [s[~np.isnan(s)] for s in sets]
            member_nodes = np.nonzero(modes == MEMBER)[0]
            if len(sets) < member_nodes.size:
                raise model_error(ctx, f"membership_values has {len(sets)} sets for {member_nodes.size} "
                                  "BRANCH_MEMBER nodes")
            members = {int(nd): set(sets[r].tolist()) for r, nd in enumerate(member_nodes)}
        self.forest = Forest(feat, thr, mode, tc, fc, mt, roots,
                             ni + np.arange(nl), np.asarray(leaf_targetids or [], dtype=np.int64), weights,
                             int(n_targets or 1), thr_dtype, lambda m: model_error(ctx, m),
                             {"feature": "nodes_featureids", "child": "nodes_%snodeids", "target": "leaf_targetids"},
                             members=members, first_weight_only=False)
        self.features = self.forest.features(ctx)

    def __call__(self, X):
        self.features(X)
        f = self.forest
        s, has = f.scores(f.leaves(_rows(X)), self.agg)
        out = finalize_regression(s, has, f.n_trees, self.agg, np.zeros(0), self.post)
        return np.asarray(out).astype(self.out_dtype if X.dtype != np.float16 else np.float16, copy=False)
