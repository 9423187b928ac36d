"""Object detection: NonMaxSuppression (https://onnx.ai/onnx/operators/onnx__NonMaxSuppression.html)."""
from __future__ import annotations

import numpy as np

from ortlite.errors import NotImplemented as OrtNotImplemented
from ortlite.registry import kernel


def _host_scalar(v, default, kind):
    if v is None or np.asarray(v).size == 0:
        return default
    return kind(np.asarray(v).reshape(-1)[0])


def _corners(xp, boxes, center_point_box):
    """[..., 4] boxes -> (x_min, y_min, x_max, y_max, area), corners ordered whatever the input order."""
    if center_point_box:
        # [x_center, y_center, width, height]
        xc, yc, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        x0, x1 = xc - w / 2, xc + w / 2
        y0, y1 = yc - h / 2, yc + h / 2
    else:
        # [y1, x1, y2, x2], any diagonal pair of corners
        x0 = xp.minimum(boxes[..., 1], boxes[..., 3])
        x1 = xp.maximum(boxes[..., 1], boxes[..., 3])
        y0 = xp.minimum(boxes[..., 0], boxes[..., 2])
        y1 = xp.maximum(boxes[..., 0], boxes[..., 2])
    return x0, y0, x1, y1, (x1 - x0) * (y1 - y0)


# v10 -> v11: the spec clarified the box formats and the output order; no change in the computation.
@kernel("NonMaxSuppression", since=10, host_inputs=(2, 3, 4))
class NonMaxSuppression:
    def __init__(self, ctx, *, center_point_box=0):
        if center_point_box not in (0, 1):
            raise OrtNotImplemented(f"NonMaxSuppression: center_point_box={center_point_box} not supported (0, 1)")
        self.xp = ctx.xp
        self.center = center_point_box

    def __call__(self, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None):
        xp = self.xp
        max_out = _host_scalar(max_output_boxes_per_class, 0, int)
        iou_thr = np.float32(_host_scalar(iou_threshold, 0.0, float))
        score_thr = _host_scalar(score_threshold, None, float)
        n_batch, n_class, _ = scores.shape
        if max_out <= 0 or boxes.shape[1] == 0:
            return xp.zeros((0, 3), dtype=np.int64)
        x0, y0, x1, y1, area = _corners(xp, boxes, self.center)
        if xp is not np:
            return self._on_device(xp, scores, (x0, y0, x1, y1, area), max_out, iou_thr, score_thr)
        selected = []
        for b in range(n_batch):
            for c in range(n_class):
                s = scores[b, c]
                cand = xp.arange(s.shape[0]) if score_thr is None else xp.nonzero(s > score_thr)[0]
                # Highest score first; ties keep the lower box index first (stable sort).
                cand = cand[xp.argsort(-s[cand], kind="stable")]
                keep = []
                while cand.size and len(keep) < max_out:
                    top, rest = cand[0], cand[1:]
                    keep.append(int(top))
                    # IoU of the chosen box against all remaining candidates at once.
                    iw = xp.minimum(x1[b, rest], x1[b, top]) - xp.maximum(x0[b, rest], x0[b, top])
                    ih = xp.minimum(y1[b, rest], y1[b, top]) - xp.maximum(y0[b, rest], y0[b, top])
                    inter = iw * ih
                    union = area[b, rest] + area[b, top] - inter
                    overlaps = (iw > 0) & (ih > 0) & (area[b, rest] > 0) & (area[b, top] > 0) & (union > 0)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        suppress = overlaps & (inter / union > iou_thr)
                    cand = rest[~suppress]
                selected.extend((b, c, k) for k in keep)
        return xp.asarray(np.array(selected, dtype=np.int64).reshape(-1, 3))

    @staticmethod
    def _on_device(xp, scores, corners, max_out, iou_thr, score_thr):
        """The same selection with three reads from the device per class, not one per kept box: the
        sorted candidates above the score threshold, then their pairwise suppression matrix; the
        greedy pass runs on the host over that matrix."""
        x0, y0, x1, y1, area = corners
        n_batch, n_class, _ = scores.shape
        selected = []
        for b in range(n_batch):
            for c in range(n_class):
                s = scores[b, c]
                order = xp.argsort(-s, kind="stable")
                keep_mask = xp.ones(order.shape, dtype=bool) if score_thr is None else s[order] > score_thr
                cand = xp.asnumpy(order)[xp.asnumpy(keep_mask)]  # read 1
                if cand.size == 0:
                    continue
                idx = xp.asarray(cand)
                bx0, by0, bx1, by1, ba = x0[b, idx], y0[b, idx], x1[b, idx], y1[b, idx], area[b, idx]
                iw = xp.minimum(bx1[:, None], bx1[None, :]) - xp.maximum(bx0[:, None], bx0[None, :])
                ih = xp.minimum(by1[:, None], by1[None, :]) - xp.maximum(by0[:, None], by0[None, :])
                inter = iw * ih
                union = ba[:, None] + ba[None, :] - inter
                overlaps = (iw > 0) & (ih > 0) & (ba[:, None] > 0) & (ba[None, :] > 0) & (union > 0)
                suppress = xp.asnumpy(overlaps & (inter / xp.where(union > 0, union, 1) > iou_thr))  # read 2
                alive = np.ones(cand.size, dtype=bool)
                kept = 0
                for i in range(cand.size):
                    if not alive[i]:
                        continue
                    selected.append((b, c, int(cand[i])))
                    kept += 1
                    if kept >= max_out:
                        break
                    alive[i + 1:] &= ~suppress[i, i + 1:]
        return xp.asarray(np.array(selected, dtype=np.int64).reshape(-1, 3))
