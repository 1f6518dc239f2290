"""Turn the items a generative recommender produced into RecBole full-sort scores.

RecBole ranks all items with torch.topk over [B, n_items] scores. Items the model did not generate
must not tie at -inf inside the top-k: topk would return whichever tied ids come first, i.e. low
item ids, and count hits the model never produced. So generated items get strictly decreasing
finite scores in beam order, a deterministic fallback ranking fills any shortfall below them, and
only the rest stays -inf. Catalog scorers rank every item instead (ranked_scores).
"""

import torch


def scores_from_generated(item_ids: torch.Tensor, n_items: int, fallback_order: torch.Tensor,
                          min_finite: int) -> torch.Tensor:
    """FloatTensor[B, n_items] of full-sort scores.

    item_ids: LongTensor[B, W], generated items best first, -1 = no item; repeats keep their first
    (best) rank. fallback_order: LongTensor of distinct item ids in 0..n_items-1, best first (e.g.
    by training popularity); item 0 (padding) in it is skipped. If a user has fewer than
    `min_finite` distinct generated real items, the first not-generated fallback items fill the
    shortfall with scores below every generated item. Item 0 is never finite. Scores:
    generated rank r -> W - r (> 0), fallback rank f -> -(f + 1), everything else -inf.
    """
    if item_ids.dim() != 2:
        raise ValueError(f"item_ids must have shape [B, W], got {tuple(item_ids.shape)}")
    if item_ids.numel() and (item_ids.min() < -1 or item_ids.max() >= n_items):
        raise ValueError(f"item ids must be -1 or in 0..{n_items - 1}")
    if fallback_order.dim() != 1 or (fallback_order.numel() and (
            fallback_order.min() < 0 or fallback_order.max() >= n_items)):
        raise ValueError(f"fallback_order must be a 1-D tensor of item ids in 0..{n_items - 1}")
    if fallback_order.unique().numel() != fallback_order.numel():
        raise ValueError("fallback_order must not repeat items")
    batch_size, width = item_ids.shape
    device = item_ids.device

    # Column 0 collects the "no item" (-1) entries and is reset below, as padding is never ranked.
    rank_score = torch.arange(width, 0, -1, device=device, dtype=torch.float32).expand(
        batch_size, width)
    scores = torch.full((batch_size, n_items), float("-inf"), device=device)
    scores.scatter_reduce_(1, item_ids.clamp(min=0), rank_score, reduce="amax")
    scores[:, 0] = float("-inf")

    fallback_order = fallback_order.to(device)
    n_generated = torch.isfinite(scores).sum(dim=1)
    shortfall = (min_finite - n_generated).clamp(min=0)
    available = torch.isneginf(scores[:, fallback_order]) & (fallback_order != 0)
    fallback_rank = available.long().cumsum(dim=1) - 1
    fill = available & (fallback_rank < shortfall[:, None])
    fallback_score = torch.where(fill, -(fallback_rank + 1).float(), float("-inf"))
    # Filled columns are -inf so far and the others get -inf: amax writes exactly the fill.
    scores.scatter_reduce_(1, fallback_order.expand(batch_size, -1), fallback_score,
                           reduce="amax")
    return scores


def ranked_scores(*keys: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """FloatTensor[B, n_items] of distinct full-sort scores for a lexicographic ranking.

    keys: FloatTensors[B, n_items], the first the most significant, each ranked descending; items
    tied on every key rank by lower item id (a stable sort), so the ranking is deterministic and
    no two items share a score. The item at rank r gets n_items - r; item 0 (padding) gets -inf
    whatever its keys. Keys must not hold NaN.

    top_k (one key only; RecBole reads no further than its largest topk): only the first top_k ranks
    are resolved, by a top-k instead of a sort of the whole catalog. They come out exactly as above,
    with scores above every other item's; every other item keeps its key as its score, so the order
    below rank top_k is the key's, exact ties there left tied.
    """
    if not keys or any(key.shape != keys[0].shape or key.dim() != 2 for key in keys):
        raise ValueError("ranked_scores needs one or more keys of the same shape [B, n_items]")
    batch_size, n_items = keys[0].shape
    device = keys[0].device
    if top_k is not None and len(keys) == 1 and 0 < top_k < n_items - 1:
        return _top_k_ranked_scores(keys[0], top_k)
    # Stable sorts from the least to the most significant key give the lexicographic order.
    order = torch.arange(n_items, device=device).expand(batch_size, n_items)
    for key in reversed(keys):
        by_key = torch.sort(key.gather(1, order), dim=1, descending=True, stable=True).indices
        order = order.gather(1, by_key)
    rank_score = torch.arange(n_items, 0, -1, device=device, dtype=torch.float32)
    scores = torch.empty(batch_size, n_items, device=device).scatter_(
        1, order, rank_score.expand(batch_size, n_items))
    scores[:, 0] = float("-inf")
    return scores


def _top_k_ranked_scores(key: torch.Tensor, top_k: int) -> torch.Tensor:
    """ranked_scores(key, top_k=top_k) for 0 < top_k < n_items - 1."""
    n_items = key.shape[1]
    scores = key.float().clone()
    scores[:, 0] = float("-inf")  # padding is never ranked
    threshold = scores.topk(top_k, dim=1).values[:, -1:]  # each row's top_k-th largest key
    above = scores > threshold  # fewer than top_k items: all of them in
    tied = scores == threshold
    tied[:, 0] = False
    # The tied items fill the rest of the top_k, lowest ids first (the full sort's tie-break). Enough of them
    # exist: at least top_k real items are >= threshold, even when threshold is -inf (top_k < n_items - 1).
    needed = top_k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1) <= needed))
    item_ids = torch.arange(n_items, device=key.device).expand_as(chosen)
    items = torch.where(chosen, item_ids, n_items).topk(top_k, dim=1, largest=False).values  # ascending ids
    by_key = scores.gather(1, items).sort(dim=1, descending=True, stable=True).indices
    order = items.gather(1, by_key)
    # Scores above every key: the row's largest finite key (0 if none) + 1 .. + top_k, in steps that stay
    # distinct in float32 whatever the key's magnitude.
    largest = scores.amax(dim=1, keepdim=True)
    base = torch.where(torch.isfinite(largest), largest, torch.zeros_like(largest))
    step = (base.abs() * 2.0 ** -20).clamp(min=1.0)
    rank_score = base + step * torch.arange(top_k, 0, -1, device=key.device, dtype=torch.float32)
    return scores.scatter_(1, order, rank_score)
