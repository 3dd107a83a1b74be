"""Eq. 5-9 by hand, the lambda = 0 switch, and triplet sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lkr.config import Config
from lkr.losses import lkr_loss, sample_triplets, triplet_loss


def test_triplet_loss_by_hand():
    # 2-D points. Triplet 1: ||a-p||^2 = 1, ||a-n||^2 = 4 -> [1 - 4 + 0.5]_+ = 0.
    # Triplet 2: ||a-p||^2 = 9, ||a-n||^2 = 1 -> [9 - 1 + 0.5]_+ = 8.5. Mean = 4.25.
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 4.0]])
    n = torch.tensor([[0.0, 2.0], [2.0, 1.0]])
    assert triplet_loss(a, p, n, 0.5, normalize=False).item() == pytest.approx(4.25)
    # Triplet 1 alone has slack 3: zero up to margin 3, then linear.
    assert triplet_loss(a[:1], p[:1], n[:1], 2.9, False).item() == 0.0
    assert triplet_loss(a[:1], p[:1], n[:1], 3.5, False).item() == pytest.approx(0.5)


def test_triplet_loss_normalisation():
    # After L2 normalisation only directions count: a = (2,0) ~ (1,0), p = (0,5) ~ (0,1),
    # n = (-3,0) ~ (-1,0): ||a-p||^2 = 2, ||a-n||^2 = 4 -> [2 - 4 + 0.2]_+ = 0, and at margin 3: 1.
    a, p, n = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 5.0]]), torch.tensor([[-3.0, 0.0]])
    assert triplet_loss(a, p, n, 0.2, normalize=True).item() == 0.0
    assert triplet_loss(a, p, n, 3.0, normalize=True).item() == pytest.approx(1.0)
    # Without normalisation: 29 - 25 + 0.2 = 4.2. Scaling all embeddings changes only that one.
    assert triplet_loss(a, p, n, 0.2, normalize=False).item() == pytest.approx(4.2)
    assert triplet_loss(10 * a, 10 * p, 10 * n, 3.0, True).item() == pytest.approx(1.0)


def _out(m: int, dual: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"logits_global": torch.randn(m, 7, generator=g, requires_grad=True),
           "embedding_global": torch.randn(m, 16, generator=g, requires_grad=True)}
    if dual:
        out["logits_local"] = torch.randn(m, 7, generator=g, requires_grad=True)
        out["embedding_local"] = torch.randn(m, 16, generator=g, requires_grad=True)
        out["logits"] = (out["logits_global"] + out["logits_local"]) / 2
        out["embedding"] = (out["embedding_global"] + out["embedding_local"]) / 2
    else:
        out["logits"], out["embedding"] = out["logits_global"], out["embedding_global"]
    return out


@pytest.mark.parametrize("dual", [False, True])
def test_lkr_loss_with_triplets(dual):
    cfg = Config(triplet_lambda=0.4, triplet_margin=0.3, local_branch=dual, triplet_mining="random")
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 5])  # anchors; positives; negatives (B = 3)
    out = _out(9, dual)
    total, parts = lkr_loss(out, labels, cfg)
    if dual:  # each branch's CE over all 3B images, averaged over the branches
        ce = (F.cross_entropy(out["logits_global"], labels) + F.cross_entropy(out["logits_local"], labels)) / 2
    else:  # mean of CE(a), CE(p), CE(n)
        ce = sum(F.cross_entropy(out["logits"][i * 3:(i + 1) * 3], labels[i * 3:(i + 1) * 3]) for i in range(3)) / 3
    e = out["embedding"]
    trip = triplet_loss(e[:3], e[3:6], e[6:], 0.3, normalize=True)
    torch.testing.assert_close(parts["ce"], ce.detach())
    torch.testing.assert_close(parts["triplet"], trip.detach())
    torch.testing.assert_close(total, ce + 0.4 * trip)
    assert all(not v.requires_grad for v in parts.values()) and total.requires_grad
    assert trip.item() > 0


@pytest.mark.parametrize("variant", ["vgg19", "baseline1"])
def test_lambda_zero_is_cross_entropy_only(variant):
    cfg = Config.for_variant(variant)
    labels = torch.tensor([0, 1, 2, 3])  # plain batch of B images, no triplet layout needed
    out = _out(4, cfg.local_branch)
    total, parts = lkr_loss(out, labels, cfg)
    torch.testing.assert_close(total, parts["ce"])
    assert parts["triplet"].item() == 0.0
    total.backward()
    assert out["embedding_global"].grad is None  # the embeddings get no gradient at all
    assert out["logits_global"].grad is not None


def test_triplet_part_changes_gradients_only_when_lambda_positive():
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    grads = {}
    for lam in (0.0, 1e-9, 0.5):
        out = _out(6, dual=False)
        # A fixed head: logits = embedding @ W, so both terms reach the embedding.
        w = torch.randn(16, 7, generator=torch.Generator().manual_seed(3))
        out["logits"] = out["logits_global"] = out["embedding"] @ w
        cfg = Config.for_variant("baseline2", triplet_lambda=lam)
        total, _ = lkr_loss(out, labels, cfg)
        total.backward()
        grads[lam] = out["embedding_global"].grad.clone()
    torch.testing.assert_close(grads[0.0], grads[1e-9])
    assert not torch.allclose(grads[0.0], grads[0.5])


def test_lkr_loss_bad_shapes():
    cfg = Config(triplet_mining="random")
    with pytest.raises(ValueError, match="3B"):
        lkr_loss(_out(4, True), torch.zeros(4, dtype=torch.long), cfg)
    with pytest.raises(ValueError, match="labels"):
        lkr_loss(_out(6, True), torch.zeros(5, dtype=torch.long), cfg)


def test_sample_triplets_classes_and_determinism():
    labels = torch.tensor([3, 0, 1, 0, 2, 1, 0, 3, 2, 2, 0, 1, 5])  # class 5 has one member, 4 none
    anchors = torch.arange(len(labels)).repeat(20)
    pos, neg = sample_triplets(labels, anchors, torch.Generator().manual_seed(7), num_classes=7)
    assert pos.shape == neg.shape == anchors.shape and pos.dtype == neg.dtype == torch.long
    assert torch.equal(labels[pos], labels[anchors])
    assert (labels[neg] != labels[anchors]).all()
    single = anchors == 12
    assert torch.equal(pos[single], anchors[single])  # lone member: positive = itself
    assert (pos[~single] != anchors[~single]).all()  # otherwise another image of the class
    # Every candidate gets drawn: anchor 1 (class 0) has positives {3, 6, 10}.
    assert set(pos[anchors == 1].tolist()) == {3, 6, 10}
    assert set(neg.tolist()) == set(range(len(labels)))
    pos2, neg2 = sample_triplets(labels, anchors, torch.Generator().manual_seed(7), num_classes=7)
    assert torch.equal(pos, pos2) and torch.equal(neg, neg2)
    pos3, _ = sample_triplets(labels, anchors, torch.Generator().manual_seed(8), num_classes=7)
    assert not torch.equal(pos, pos3)


def test_sample_triplets_uniform_negatives():
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 60)
    anchors = torch.zeros(20000, dtype=torch.long)  # class 0: negatives from 90 images
    _, neg = sample_triplets(labels, anchors, torch.Generator().manual_seed(0), num_classes=3)
    share = torch.bincount(labels[neg], minlength=3).float() / len(neg)
    assert share[0] == 0 and abs(share[1] - 1 / 3) < 0.02 and abs(share[2] - 2 / 3) < 0.02


def test_sample_triplets_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        sample_triplets(torch.zeros(5, dtype=torch.long), torch.arange(5), torch.Generator(), 7)


# --- in-batch mining (Config.triplet_mining) -------------------------------------------------
# 1-D embeddings, not normalised, so squared distances are easy to read off:
# points 0, 2, 3, 4 (classes 0, 0, 1, 1) and 10 (class 2, alone in the batch).
# d(0,2)=4 d(0,3)=9 d(0,4)=16 d(2,3)=1 d(2,4)=4 d(3,4)=1; to 10: 100, 64, 49, 36.
MINE_EMB = torch.tensor([[0.0], [2.0], [3.0], [4.0], [10.0]])
MINE_LAB = torch.tensor([0, 0, 1, 1, 2])


def test_batch_hard_by_hand():
    from lkr.losses import batch_hard_triplet_loss

    # anchor 0: farthest positive 4 (at 2), nearest negative 9 (at 3): [4 - 9 + .5]_+ = 0
    # anchor 2: positive 4, nearest negative 1 (at 3):                  [4 - 1 + .5]_+ = 3.5
    # anchor 3: positive 1 (at 4), nearest negative 1 (at 2):           [1 - 1 + .5]_+ = 0.5
    # anchor 4: positive 1, nearest negative 4 (at 2):                  [1 - 4 + .5]_+ = 0
    # anchor 10: no positive in the batch, no triplet. Mean over 4 anchors: 1.0; 2 of 4 active.
    loss, active = batch_hard_triplet_loss(MINE_EMB, MINE_LAB, 0.5, normalize=False)
    assert loss.item() == pytest.approx(1.0)
    assert active.item() == pytest.approx(0.5)


def test_semi_hard_by_hand():
    from lkr.losses import semi_hard_triplet_loss

    # pairs (anchor, positive) and the nearest negative farther than the positive (margin 4):
    # (0,2): d_ap 4, negatives 9, 16, 100 -> 9:   [4 - 9 + 4]_+  = 0
    # (2,0): d_ap 4, negatives 1, 4, 64 -> 64:    [4 - 64 + 4]_+ = 0  (4 is not farther than 4)
    # (3,4): d_ap 1, negatives 9, 1, 49 -> 9:     [1 - 9 + 4]_+  = 0
    # (4,3): d_ap 1, negatives 16, 4, 36 -> 4:    [1 - 4 + 4]_+  = 1
    loss, active = semi_hard_triplet_loss(MINE_EMB, MINE_LAB, 4.0, normalize=False)
    assert loss.item() == pytest.approx(0.25)
    assert active.item() == pytest.approx(0.25)
    # Without the point at 10, the pair (2,0) has no negative farther than 4: FaceNet's rule
    # falls back to the farthest negative, 4 (at 4): [4 - 4 + .5]_+ = .5; the others are 0
    # at margin .5 ((4,3): nearest farther negative 4 -> [1 - 4 + .5]_+ = 0). Mean .5 / 4.
    loss, active = semi_hard_triplet_loss(MINE_EMB[:4], MINE_LAB[:4], 0.5, normalize=False)
    assert loss.item() == pytest.approx(0.125)
    assert active.item() == pytest.approx(0.25)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mined_loss_in_lkr_loss_covers_every_image(mining):
    torch.manual_seed(0)
    cfg = Config(triplet_lambda=0.2, triplet_mining=mining, local_branch=False)
    emb = torch.randn(12, 16, requires_grad=True)
    logits = torch.randn(12, 7, requires_grad=True)
    y = torch.randint(0, 3, (12,))
    total, parts = lkr_loss({"logits": logits, "embedding": emb}, y, cfg)
    ce = F.cross_entropy(logits, y)  # every image of the batch, not a third of it
    from lkr.losses import batch_hard_triplet_loss, semi_hard_triplet_loss

    mined = {"batch_hard": batch_hard_triplet_loss, "semi_hard": semi_hard_triplet_loss}[mining]
    trip, _ = mined(emb, y, 0.2, True)
    assert parts["ce"].item() == pytest.approx(ce.item())
    assert total.item() == pytest.approx(ce.item() + 0.2 * trip.item())
    total.backward()
    assert emb.grad.abs().sum() > 0  # the triplet term reaches the embeddings
    assert cfg.images_per_anchor == 1 and Config(triplet_lambda=0.2, triplet_mining="random").images_per_anchor == 3


def test_mined_loss_without_any_triplet_is_zero():
    from lkr.losses import batch_hard_triplet_loss, semi_hard_triplet_loss

    emb = torch.randn(3, 4)
    for f in (batch_hard_triplet_loss, semi_hard_triplet_loss):
        loss, active = f(emb, torch.tensor([0, 1, 2]), 0.2, True)  # nobody has a positive
        assert loss.item() == 0.0 and active.item() == 0.0
        loss, _ = f(emb, torch.tensor([1, 1, 1]), 0.2, True)  # nobody has a negative
        assert loss.item() == 0.0


def test_class_balanced_batch():
    from lkr.losses import class_balanced_batch

    y = torch.tensor([0] * 50 + [1] * 4 + [2] * 30 + [4] * 10)  # class 3 absent
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        b = class_balanced_batch(y, 20, 3, g, 7)
        lab = y[b]
        assert len(b) == 18 and len(torch.unique(lab)) == 3 and 3 not in lab.tolist()
        for c in torch.unique(lab):
            members = b[lab == c]
            assert (lab == c).sum() == 6
            if c != 1:  # enough images: six distinct ones
                assert len(torch.unique(members)) == 6
            else:  # class 1 has 4: all of them, then repeats
                assert set(members.tolist()) == {50, 51, 52, 53}
        seen |= set(torch.unique(lab).tolist())
    assert seen == {0, 1, 2, 4}
    with pytest.raises(ValueError, match="batch_classes"):
        class_balanced_batch(y, 20, 5, g, 7)


def _brute_force(emb, lab, margin, mining):
    """The mined losses written as plain loops over anchors, positives and negatives."""
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    per_anchor = []
    for a in range(len(lab)):
        pos = [p for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        neg = [n for n in range(len(lab)) if lab[n] != lab[a]]
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            per_anchor.append(max(0.0, max(d[a, p] for p in pos) - min(d[a, n] for n in neg) + margin))
            continue
        losses = []
        for p in pos:
            farther = [d[a, n] for n in neg if d[a, n] > d[a, p]]
            dn = min(farther) if farther else max(d[a, n] for n in neg)
            losses.append(max(0.0, d[a, p] - dn + margin))
        per_anchor.append(sum(losses) / len(losses))
    return sum(per_anchor) / max(len(per_anchor), 1)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mined_losses_equal_plain_loops(mining):
    from lkr.losses import batch_hard_triplet_loss, semi_hard_triplet_loss

    mined = {"batch_hard": batch_hard_triplet_loss, "semi_hard": semi_hard_triplet_loss}[mining]
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        emb = torch.randn(14, 3, generator=g, dtype=torch.float64)
        lab = torch.randint(0, 4, (14,), generator=g)
        want = _brute_force(emb, lab.tolist(), 1.0, mining)
        got, _ = mined(emb, lab, 1.0, normalize=False)
        assert got.item() == pytest.approx(float(want), rel=1e-5, abs=1e-6)


def test_mined_distances_stay_float32_under_bf16_autocast():
    cfg = Config(triplet_lambda=0.2, triplet_mining="semi_hard", local_branch=False)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(32, 256, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    out = {"logits": torch.randn(32, 7, generator=g), "embedding": emb}
    _, plain = lkr_loss(out, y, cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, auto = lkr_loss(out, y, cfg)
    assert auto["triplet"].item() == pytest.approx(plain["triplet"].item(), rel=1e-6)


def test_one_table_of_triplet_modes():
    """Every mode the config accepts has one entry that says what a step feeds and what the loss
    is; a mode added to the table is what the config, the batches and the loss all see."""
    from lkr.config import TRIPLET_MININGS
    from lkr.losses import TRIPLET_MODES

    assert tuple(TRIPLET_MODES) == TRIPLET_MININGS
    for mode, spec in TRIPLET_MODES.items():
        cfg = Config(triplet_lambda=0.2, triplet_mining=mode, local_branch=False)
        assert cfg.images_per_anchor == spec.images_per_anchor
        assert Config(triplet_lambda=0.0, triplet_mining=mode).images_per_anchor == 1
        torch.manual_seed(0)
        emb = torch.randn(3 * 8, 16, requires_grad=True)
        y = torch.arange(3 * 8) % 4
        total, parts = lkr_loss({"logits": torch.randn(3 * 8, 7), "embedding": emb}, y, cfg)
        trip, active = spec.term(emb, y, cfg)
        assert parts["triplet"].item() == pytest.approx(trip.item()) and 0 <= active.item() <= 1
    assert (TRIPLET_MODES["random"].images_per_anchor, TRIPLET_MODES["semi_hard"].images_per_anchor) == (3, 1)
