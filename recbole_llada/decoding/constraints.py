"""Index of the valid semantic IDs, for constrained decoding in any fill order.

Diffusion decoding commits SID positions in an arbitrary order, so a prefix trie is not enough: a
partial SID (some positions committed, the others -1) is valid iff some item agrees with it on every
committed position. For each non-empty subset S of the M positions we store the projections of all
items' SIDs onto S as int64 keys `S * K**M + sum_{m in S} code_m * K**m` in one sorted tensor;
a query is then a `torch.searchsorted`, vectorised over rows and codes, on any device.
Memory: (2**M - 1) * n_items keys.
"""

import torch

MAX_SID_LENGTH = 8
_INT64_LIMIT = 2**63


def _contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    slot = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[slot] == keys


class SIDIndex:
    """Which partial SIDs can still become an item, and which item a full SID is.

    item_sid: LongTensor[n_items, M] of per-head codes in 0..K-1; row 0 is the padding item and is
    ignored. SIDs of the real items must be unique.
    """

    def __init__(self, item_sid: torch.Tensor, codebook_size: int):
        if item_sid.dim() != 2 or item_sid.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"item_sid must be an integer tensor [n_items, M], got "
                             f"{item_sid.dtype} {tuple(item_sid.shape)}")
        n_items, sid_length = item_sid.shape
        if n_items < 2:
            raise ValueError("item_sid needs the padding row 0 and at least one item")
        if not 1 <= sid_length <= MAX_SID_LENGTH:
            raise ValueError(f"sid_length must be in 1..{MAX_SID_LENGTH}, got {sid_length}")
        if codebook_size < 1 or (2 * codebook_size) ** sid_length >= _INT64_LIMIT:
            raise ValueError(f"codebook_size={codebook_size} with {sid_length} digits does not fit "
                             f"the int64 subset keys ((2K)^M must be < 2^63)")
        real_sid = item_sid[1:].long()
        if real_sid.min() < 0 or real_sid.max() >= codebook_size:
            raise ValueError(f"item codes must be in 0..{codebook_size - 1}, got range "
                             f"{int(real_sid.min())}..{int(real_sid.max())}")
        self.n_items = n_items
        self.sid_length = sid_length
        self.codebook_size = codebook_size
        device = item_sid.device
        self._place_value = codebook_size ** torch.arange(sid_length, device=device)
        self._subset_stride = codebook_size ** sid_length
        self._digit_bit = 2 ** torch.arange(sid_length, device=device)

        full_keys = (real_sid * self._place_value).sum(1)
        self._full_keys, order = full_keys.sort()
        if (self._full_keys[1:] == self._full_keys[:-1]).any():
            raise ValueError("SIDs must be unique: several items share a semantic ID")
        self._full_items = order + 1

        subsets = torch.arange(1, 2**sid_length, device=device)
        in_subset = (subsets[:, None] & self._digit_bit) > 0  # [S, M]
        projected = (real_sid[None, :, :] * (self._place_value * in_subset)[:, None, :]).sum(-1)
        subset_keys = projected + subsets[:, None] * self._subset_stride  # [S, n_real]
        self._subset_keys = subset_keys.flatten().unique()  # sorted

    def to(self, device: torch.device | str) -> "SIDIndex":
        """Move the index to `device` in place; returns self."""
        for name in ("_place_value", "_digit_bit", "_full_keys", "_full_items", "_subset_keys"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    @property
    def device(self) -> torch.device:
        return self._subset_keys.device

    def _check_partial(self, partial: torch.Tensor) -> None:
        if partial.dim() != 2 or partial.shape[1] != self.sid_length:
            raise ValueError(f"partial must have shape [N, {self.sid_length}], "
                             f"got {tuple(partial.shape)}")
        if partial.numel() and (partial.min() < -1 or partial.max() >= self.codebook_size):
            raise ValueError(f"partial codes must be -1 (uncommitted) or in "
                             f"0..{self.codebook_size - 1}")

    def allowed_codes(self, partial: torch.Tensor, position: torch.Tensor,
                      validate: bool = True) -> torch.Tensor:
        """BoolTensor[N, K]: codes c such that writing c at `position` keeps the partial SID
        consistent with some item. partial: LongTensor[N, M] (-1 = uncommitted);
        position: LongTensor[N]. A code already committed at `position` is ignored (replaced).
        validate=False skips the range checks, each a host sync on a GPU: for callers whose
        inputs are valid by construction (the beam search)."""
        if validate:
            self._check_partial(partial)
            if position.shape != partial.shape[:1]:
                raise ValueError(f"position must have shape [{partial.shape[0]}], "
                                 f"got {tuple(position.shape)}")
            if position.numel() and (position.min() < 0 or position.max() >= self.sid_length):
                raise ValueError(f"position must be in 0..{self.sid_length - 1}")
        digits = torch.arange(self.sid_length, device=partial.device)
        committed = (partial >= 0) & (digits != position[:, None])
        subset = (committed.long() * self._digit_bit).sum(1) + self._digit_bit[position]
        base_key = (partial.clamp(min=0) * self._place_value * committed).sum(1) \
            + subset * self._subset_stride
        codes = torch.arange(self.codebook_size, device=partial.device)
        keys = base_key[:, None] + codes[None, :] * self._place_value[position][:, None]
        return _contains(self._subset_keys, keys)

    def allowed_codes_all_positions(self, partial: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """BoolTensor[N, M, K]: allowed_codes at every position at once."""
        if validate:
            self._check_partial(partial)
        n_rows = partial.shape[0]
        positions = torch.arange(self.sid_length, device=partial.device).repeat(n_rows)
        allowed = self.allowed_codes(partial.repeat_interleave(self.sid_length, dim=0), positions,
                                     validate=False)
        return allowed.view(n_rows, self.sid_length, self.codebook_size)

    def is_consistent(self, partial: torch.Tensor) -> torch.Tensor:
        """BoolTensor[N]: whether some item agrees with the partial SID on all committed
        positions (always True when nothing is committed)."""
        self._check_partial(partial)
        committed = partial >= 0
        subset = (committed.long() * self._digit_bit).sum(1)
        keys = (partial.clamp(min=0) * self._place_value * committed).sum(1) \
            + subset * self._subset_stride
        return _contains(self._subset_keys, keys) | (subset == 0)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor[N]: the item whose SID is `codes` ([N, M]), or -1 if there is none
        (including rows with uncommitted or out-of-range codes)."""
        if codes.dim() != 2 or codes.shape[1] != self.sid_length:
            raise ValueError(f"codes must have shape [N, {self.sid_length}], "
                             f"got {tuple(codes.shape)}")
        in_range = ((codes >= 0) & (codes < self.codebook_size)).all(dim=1)
        keys = (codes.clamp(0, self.codebook_size - 1).long() * self._place_value).sum(1)
        slot = torch.searchsorted(self._full_keys, keys).clamp(max=self._full_keys.numel() - 1)
        found = in_range & (self._full_keys[slot] == keys)
        return torch.where(found, self._full_items[slot], torch.full_like(keys, -1))
