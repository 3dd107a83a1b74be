"""The loss L = L_cross + lambda * L_triplet (paper Sec. 3.1, Eq. 5-9) and triplet sampling.

Triplets are formed in one of two ways (``Config.triplet_mining``):

- "random": a step feeds M = 3B images laid out as [anchors (B); positives (B); negatives (B)],
  positives and negatives drawn at random from the training set (:func:`sample_triplets`);
- "batch_hard" / "semi_hard": a step feeds an ordinary batch of B images, every image is an
  anchor, and positives and negatives are mined among the other images of the batch
  (:func:`batch_hard_triplet_loss`, :func:`semi_hard_triplet_loss`). A step then costs what a
  lambda = 0 step costs.

Without the triplet term (lambda = 0) a step is just B plain images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lkr.config import TRIPLET_IMAGES_PER_ANCHOR

if TYPE_CHECKING:
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


def pairwise_sq_distances(emb: Tensor, normalize: bool) -> Tensor:
    """Squared Euclidean distances between all rows.

    Args:
        emb: (B, D) embeddings (computed in float32).
        normalize: L2-normalise each row first (distances then lie in [0, 4]).

    Returns:
        (B, B) float32, >= 0, exactly 0 on the diagonal.
    """
    e = emb.float()
    if normalize:
        e = F.normalize(e, dim=1)
    sq = e.pow(2).sum(1)  # (B,)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp_min(0)  # (B, B)
    return d * (1 - torch.eye(len(e), device=e.device, dtype=d.dtype))


def _pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive (B,B), negative (B,B)) bool: same class and not itself; other class."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard_triplet_loss(emb: Tensor, labels: Tensor, margin: float, normalize: bool
                            ) -> tuple[Tensor, Tensor]:
    """Eq. 9 with batch-hard mining (Hermans, Beyer and Leibe 2017, "In defense of the triplet loss").

    Every image of the batch is an anchor; its positive is the farthest image of its class in
    the batch and its negative the nearest image of another class. Anchors without a positive
    or without a negative in the batch form no triplet.

    Args:
        emb: (B, D) embeddings; labels: (B,) int64; margin: alpha of Eq. 8-9 on squared
            distances; normalize: L2-normalise first.

    Returns:
        (loss: mean over the anchors that have a triplet, 0 when none has; active: the share of
        those triplets with a positive loss), scalar tensors.
    """
    d = pairwise_sq_distances(emb, normalize)
    pos, neg = _pair_masks(labels)
    d_ap = torch.where(pos, d, torch.zeros_like(d)).amax(1)  # (B,) farthest positive
    d_an = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)  # (B,) nearest negative
    valid = pos.any(1) & neg.any(1)
    per = F.relu(d_ap - torch.where(valid, d_an, d_ap) + margin) * valid
    n = valid.sum().clamp_min(1)
    return per.sum() / n, ((per > 0) & valid).sum() / n


def semi_hard_triplet_loss(emb: Tensor, labels: Tensor, margin: float, normalize: bool
                           ) -> tuple[Tensor, Tensor]:
    """Eq. 9 with FaceNet's semi-hard mining (Schroff et al. 2015), as TensorFlow Addons'
    ``triplet_semihard_loss`` does it.

    Every (anchor, positive) pair of the batch is a triplet. Its negative is the nearest
    image of another class that is farther from the anchor than the positive (d_an > d_ap,
    "semi-hard"); when no negative is that far, the farthest negative. The loss is averaged
    over each anchor's pairs and then over the anchors (TF-Addons averages over all pairs, which
    weighs a class by the square of its count in the batch).

    Args:
        emb: (B, D) embeddings; labels: (B,) int64; margin: alpha of Eq. 8-9 on squared
            distances; normalize: L2-normalise first.

    Returns:
        (loss: mean over the anchors that have a positive and a negative of the mean over their
        pairs, 0 when there is none; active: the share of the triplets with a positive loss),
        scalar tensors.
    """
    d = pairwise_sq_distances(emb, normalize)
    pos, neg = _pair_masks(labels)
    inf = torch.full_like(d, float("inf"))
    # cand[a, p, n]: n is a negative of a farther from a than p is
    cand = neg[:, None, :] & (d[:, None, :] > d[:, :, None])  # (B, B, B)
    semi = torch.where(cand, d[:, None, :].expand_as(cand), inf[:, None, :].expand_as(cand)).amin(2)  # (B, B)
    far = torch.where(neg, d, torch.zeros_like(d)).amax(1)  # (B,) farthest negative
    d_an = torch.where(cand.any(2), semi, far[:, None].expand_as(d))  # (B, B)
    valid = pos & neg.any(1)[:, None]  # (B, B) pairs that form a triplet
    per = F.relu(d - torch.where(valid, d_an, d) + margin) * valid
    # mean over each anchor's positives, then over the anchors that have a triplet: every anchor
    # weighs the same (a mean over all pairs would weigh a class by the square of its count)
    n_pos = valid.sum(1)  # (B,)
    has = n_pos > 0
    per_anchor = per.sum(1) / n_pos.clamp_min(1)
    n = has.sum().clamp_min(1)
    return per_anchor.sum() / n, ((per > 0) & valid).sum() / valid.sum().clamp_min(1)


def _random_triplet_term(emb: Tensor, labels: Tensor, cfg: Config) -> tuple[Tensor, Tensor]:
    """Eq. 9 on a [anchors; positives; negatives] batch of 3B embeddings; its active share."""
    if emb.shape[0] % 3:
        raise ValueError(f"a triplet batch holds 3B images, got {emb.shape[0]}")
    a, p, n = emb.chunk(3, dim=0)  # (B, D) each
    trip = triplet_loss(a, p, n, cfg.triplet_margin, cfg.normalize_embeddings)
    with torch.no_grad():
        active = _active_share(a, p, n, cfg)
    return trip, active


def _mined(fn):
    """An in-batch mining loss as a triplet term: distances in float32, never bf16."""
    def term(emb: Tensor, labels: Tensor, cfg: Config) -> tuple[Tensor, Tensor]:
        with torch.autocast(emb.device.type, enabled=False):
            return fn(emb.float(), labels, cfg.triplet_margin, cfg.normalize_embeddings)
    term.__doc__ = f"In-batch mining by :func:`{fn.__name__}`."
    return term


@dataclass(frozen=True)
class TripletMode:
    """How one ``Config.triplet_mining`` mode forms its triplets.

    Attributes:
        images_per_anchor: images a step feeds per anchor (3: [anchors; positives; negatives];
            1: an ordinary batch, triplets mined inside it).
        term: (embeddings, labels, cfg) -> (L_triplet, share of active triplets).
    """

    images_per_anchor: int
    term: Callable[[Tensor, Tensor, Config], tuple[Tensor, Tensor]]


TRIPLET_MODES: dict[str, TripletMode] = {
    "random": TripletMode(TRIPLET_IMAGES_PER_ANCHOR["random"], _random_triplet_term),
    "batch_hard": TripletMode(TRIPLET_IMAGES_PER_ANCHOR["batch_hard"], _mined(batch_hard_triplet_loss)),
    "semi_hard": TripletMode(TRIPLET_IMAGES_PER_ANCHOR["semi_hard"], _mined(semi_hard_triplet_loss)),
}
"""Every triplet mode, by ``Config.triplet_mining`` name: the one place that says what a mode
feeds and how its loss is computed (:attr:`Config.images_per_anchor` and :func:`lkr_loss` read it)."""


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
        labels: (M,) int64 class indices. With random triplets (``cfg.triplet_lambda > 0`` and
            ``cfg.triplet_mining == "random"``) the batch is [anchors; positives; negatives],
            M = 3B; otherwise M = B plain images (triplets, if any, mined among them).
        cfg: uses ``triplet_lambda``, ``triplet_mining``, ``triplet_margin``,
            ``normalize_embeddings``.

    Returns:
        (total scalar with graph, {"ce", "triplet", "active", "total"} detached scalar tensors).
        L_cross is the cross-entropy averaged over all M images (with random triplets the mean
        of CE(a), CE(p), CE(n), i.e. Eq. 6 up to a factor 3); with the local branch, the mean of
        the global and local branch CEs. L_triplet is Eq. 9 on ``out["embedding"]``, averaged
        over the triplets; "active" is the share of triplets with a positive loss. Without the
        triplet term, "triplet" and "active" are 0 and total = ce.
    """
    logits = out["logits"]
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must be (M,) with M={logits.shape[0]}, got {tuple(labels.shape)}")
    ce = _cross_entropy(out, labels)
    if cfg.triplet_lambda > 0:
        trip, active = TRIPLET_MODES[cfg.triplet_mining].term(out["embedding"], labels, cfg)
        total = ce + cfg.triplet_lambda * trip
    else:
        zero = torch.zeros((), device=ce.device)
        trip, active, total = zero, zero, ce
    return total, {"ce": ce.detach(), "triplet": trip.detach(), "active": active.detach().float(),
                   "total": total.detach()}


def _active_share(a: Tensor, p: Tensor, n: Tensor, cfg: Config) -> Tensor:
    """Share of the random triplets (a, p, n) whose Eq. 9 loss is positive."""
    a, p, n = a.float(), p.float(), n.float()
    if cfg.normalize_embeddings:
        a, p, n = (F.normalize(t, dim=1) for t in (a, p, n))
    return ((a - p).pow(2).sum(1) - (a - n).pow(2).sum(1) + cfg.triplet_margin > 0).float().mean()


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


def class_balanced_batch(labels: Tensor, batch_size: int, classes: int, generator: torch.Generator,
                         num_classes: int) -> Tensor:
    """One batch of P classes x K images for in-batch mining (``Config.batch_classes``).

    P = ``classes`` distinct classes drawn uniformly among those present, then K =
    ``batch_size // classes`` distinct images of each, uniformly within the class (a class with
    fewer than K images gives all of them, then repeats them in the same shuffled order).

    Args:
        labels: (N,) int64 class of every training image, values in [0, num_classes).
        batch_size: B; the batch holds P * (B // P) images.
        classes: P >= 1 (at most the number of classes present).
        generator: seeded generator.
        num_classes: K classes in all.

    Returns:
        (P * (B // P),) int64 indices into ``labels``, grouped by class, on the labels' device.
    """
    labels = labels.long()
    keys = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device)
    order = torch.argsort(labels.double() + keys.double())  # grouped by class, shuffled within each
    counts = torch.zeros(num_classes, dtype=torch.long, device=labels.device)
    counts.index_add_(0, labels, torch.ones_like(labels))
    offsets = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts).flatten()  # (C,) classes with images (a host sync: CPU path)
    if classes > len(present):
        raise ValueError(f"batch_classes={classes} but the training part has {len(present)} classes")
    k = max(batch_size // classes, 1)
    pick = torch.rand(len(present), generator=generator, device=generator.device).argsort()[:classes]
    c = present[pick.to(labels.device)].repeat_interleave(k)  # (P*K,)
    j = torch.arange(k, device=labels.device).repeat(classes)  # (P*K,) slot within its class
    return order[offsets[c] + j % counts[c]]
