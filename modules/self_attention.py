"""Multi-head scaled dot-product attention.

Vaswani et al., "Attention Is All You Need", https://arxiv.org/abs/1706.03762

Same class name, keywords, forward signature (``queries, keys, values, attention_mask=None,
attention_weights=None``) and ``state_dict`` keys as External-Attention-pytorch's
``SelfAttention.py``. Differences, all for export: head split/merge by ``reshape`` +
``transpose`` instead of ``view`` on non-contiguous tensors, and the 1/sqrt(d_k) scale is a
Python float multiply (the reference divides by a NumPy scalar, which the tracer records as
a constant of its own).
"""

from __future__ import annotations

from ._attention import MultiHeadAttention
from ._registry import register_module


@register_module(
    "self_attention",
    kwargs=dict(d_model=512, d_k=512, d_v=512, h=8),
    shapes=[(1, 49, 512), (1, 49, 512), (1, 49, 512)],
    paper="Attention Is All You Need",
    url="https://arxiv.org/abs/1706.03762",
    dynamic=("batch", "tokens"),
)
class ScaledDotProductAttention(MultiHeadAttention):
    """``ScaledDotProductAttention(d_model, d_k, d_v, h, dropout=0.1)``; the forward is
    ``SequenceAttention``'s (``_attention.py``)."""
