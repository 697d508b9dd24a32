"""AFT-Full: the attention-free transformer block.

Zhai et al., "An Attention Free Transformer", https://arxiv.org/abs/2105.14103

``Y_t = sigmoid(Q_t) * sum_t' exp(K_t' + w_tt') V_t' / sum_t' exp(K_t' + w_tt')`` with
learned pairwise position biases ``w`` (n x n). Same class name, keywords and
``state_dict`` keys as External-Attention-pytorch's ``AFT.py`` (with ``simple=True`` the
biases are zeros and, as there, not in the state_dict).

Differences from the reference, for speed and robustness; the result is the same up to
rounding:
- The reference materialises an (n, B, n, d) tensor. Since exp(K + w) = exp(w) * exp(K),
  numerator and denominator are one matmul ``exp(w) @ [exp(K) * V, exp(K)]``.
- Both exponentials are taken after subtracting a max (per row of w, per channel of K
  over the tokens); the shifts cancel in the ratio and keep exp from overflowing.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import init_small_linear
from ._registry import register_module


@register_module(
    "aft_full",
    kwargs=dict(d_model=512, n=49),
    shapes=[(1, 49, 512)],
    paper="An Attention Free Transformer",
    url="https://arxiv.org/abs/2105.14103",
    fixed_because="its n x n position biases fix the token count to n",
)
class AFT_FULL(nn.Module):
    def __init__(self, d_model: int, n: int = 49, simple: bool = False) -> None:
        super().__init__()
        self.fc_q = nn.Linear(d_model, d_model)
        self.fc_k = nn.Linear(d_model, d_model)
        self.fc_v = nn.Linear(d_model, d_model)
        if simple:
            # The reference keeps a plain tensor (not in the state_dict); a non-persistent
            # buffer matches that and follows .to(device).
            self.register_buffer("position_biases", torch.zeros((n, n)), persistent=False)
        else:
            self.position_biases = nn.Parameter(torch.ones((n, n)))
        self.d_model = d_model
        self.n = n
        self.sigmoid = nn.Sigmoid()
        init_small_linear(self.fc_q, self.fc_k, self.fc_v)  # as the reference

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        d = input.shape[2]
        q = self.fc_q(input)  # (B, n, d)
        k = self.fc_k(input)  # (B, n, d)
        v = self.fc_v(input)  # (B, n, d)

        w = self.position_biases
        ew = torch.exp(w - w.amax(dim=1, keepdim=True))  # (n, n), rows t, columns t'
        ek = torch.exp(k - k.amax(dim=1, keepdim=True))  # (B, n, d)
        num_den = torch.matmul(
            ew, torch.cat([ek * v, ek], dim=2)
        )  # (n, n) @ (B, n, 2d) -> (B, n, 2d)
        out = num_den[..., :d] / num_den[..., d:]  # (B, n, d)
        return self.sigmoid(q) * out
