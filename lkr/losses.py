"""The loss L = L_cross + lambda * L_triplet (paper Sec. 3.1, Eq. 5-9) and triplet sampling.

A triplet step feeds one batch of M = 3B images laid out as [anchors (B); positives (B);
negatives (B)]; without the triplet term (lambda = 0) a step is just B plain images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lkr.config import Config


def triplet_loss(a: Tensor, p: Tensor, n: Tensor, margin: float, normalize: bool) -> Tensor:
    """Eq. 9 averaged over the batch: mean_i [ ||a_i - p_i||^2 - ||a_i - n_i||^2 + margin ]_+.

    Written out because ``torch.nn.functional.triplet_margin_loss`` uses plain (not squared)
    Euclidean distances; Eq. 8-9 use squared ones.

    Args:
        a, p, n: (B,D) embeddings of anchors, positives, negatives (any float dtype; computed in
            float32).
        margin: alpha of Eq. 8-9 (>= 0), on squared distances.
        normalize: L2-normalise each embedding first (squared distances then lie in [0, 4]).

    Returns:
        Scalar tensor >= 0.
    """
    a, p, n = a.float(), p.float(), n.float()
    if normalize:
        a, p, n = (F.normalize(t, dim=1) for t in (a, p, n))
    d_ap = (a - p).pow(2).sum(dim=1)  # (B,)
    d_an = (a - n).pow(2).sum(dim=1)  # (B,)
    return F.relu(d_ap - d_an + margin).mean()


def _cross_entropy(out: dict[str, Tensor], labels: Tensor) -> Tensor:
    """Mean CE over the batch; for the dual model the mean of the two branches' CEs."""
    if "logits_local" in out:
        return (F.cross_entropy(out["logits_global"].float(), labels)
                + F.cross_entropy(out["logits_local"].float(), labels)) / 2
    return F.cross_entropy(out["logits"].float(), labels)


def lkr_loss(out: dict[str, Tensor], labels: Tensor, cfg: Config) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 5: L = L_cross + lambda * L_triplet.

    Args:
        out: the model's output dict (see :meth:`lkr.model.LKRNet.forward`) for M images.
        labels: (M,) int64 class indices. With ``cfg.triplet_lambda > 0`` the batch is
            [anchors; positives; negatives], M = 3B; otherwise M = B plain images.
        cfg: uses ``triplet_lambda``, ``triplet_margin``, ``normalize_embeddings``.

    Returns:
        (total scalar with graph, {"ce", "triplet", "total"} detached scalar tensors).
        L_cross is the cross-entropy averaged over all M images, i.e. the mean of
        CE(a), CE(p), CE(n) (Eq. 6 up to a factor 3); with the local branch, the mean of the
        global and local branch CEs. L_triplet is Eq. 9 on ``out["embedding"]``.
        Without the triplet term, "triplet" is 0 and total = ce.
    """
    logits = out["logits"]
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must be (M,) with M={logits.shape[0]}, got {tuple(labels.shape)}")
    ce = _cross_entropy(out, labels)
    if cfg.triplet_lambda > 0:
        emb = out["embedding"]
        if emb.shape[0] % 3:
            raise ValueError(f"a triplet batch holds 3B images, got {emb.shape[0]}")
        a, p, n = emb.chunk(3, dim=0)  # (B, D) each
        trip = triplet_loss(a, p, n, cfg.triplet_margin, cfg.normalize_embeddings)
        total = ce + cfg.triplet_lambda * trip
    else:
        trip = torch.zeros((), device=ce.device)
        total = ce
    return total, {"ce": ce.detach(), "triplet": trip.detach(), "total": total.detach()}


def _randint(high: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform integers in [0, high) elementwise (high >= 1), drawn on the generator's device
    and moved to ``high``'s device."""
    u = torch.rand(high.shape, generator=generator, device=generator.device).to(high.device)
    return torch.minimum((u * high).long(), high - 1)


def sample_triplets(labels: Tensor, anchors: Tensor, generator: torch.Generator,
                    num_classes: int) -> tuple[Tensor, Tensor]:
    """Random positives and negatives for a batch of anchors, vectorised.

    Positive: uniform over the other images of the anchor's class (the anchor itself when it is
    its class's only member). Negative: uniform over all images of the other classes (so
    classes are drawn in proportion to their size).

    Args:
        labels: (N,) int64 class of every image of the training set, values in [0, num_classes).
        anchors: (B,) int64 indices into ``labels``.
        generator: seeded generator; a generator on the labels' device avoids a host copy.
        num_classes: K.

    Returns:
        (positives (B,), negatives (B,)) int64 indices into ``labels``, on the labels' device.

    Raises:
        ValueError: for CPU labels when all images share one class (no negative exists). On a
            GPU this is not checked, to avoid a host sync every step; the caller guarantees it.
    """
    labels = labels.long()
    anchors = anchors.to(labels.device).long()
    n = labels.shape[0]
    order = torch.argsort(labels, stable=True)  # (N,) indices sorted by class
    # (K,) class sizes; index_add_ rather than bincount, which syncs with the host on CUDA.
    counts = torch.zeros(num_classes, dtype=torch.long, device=labels.device)
    counts.index_add_(0, labels, torch.ones_like(labels))
    offsets = torch.cumsum(counts, 0) - counts  # (K,) start of each class in `order`
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=labels.device)  # position of each image in `order`

    c = labels[anchors]  # (B,)
    cnt, off = counts[c], offsets[c]
    if labels.device.type == "cpu" and bool((counts == n).any()):  # no host sync on GPUs
        raise ValueError("triplets need at least two classes in the sampled set")

    # Positive: one of the other cnt-1 members, skipping the anchor's own slot.
    r = _randint((cnt - 1).clamp_min(1), generator)
    own = rank[anchors] - off
    r = r + (r >= own).long()
    pos = torch.where(cnt > 1, order[off + r.clamp_max(cnt - 1)], anchors)

    # Negative: one of the n-cnt images outside the class's block [off, off+cnt) of `order`.
    r = _randint(n - cnt, generator)
    neg = order[torch.where(r < off, r, r + cnt)]
    return pos, neg
