"""DAT: Vision Transformer with Deformable Attention.

Xia et al., CVPR 2022, https://arxiv.org/abs/2201.00520

Deformable multi-head attention: an offset network (depth-wise conv, LayerNorm, GELU,
1x1 conv) predicts, per channel group, a 2-D offset for every point of a uniform reference
grid; the input is sampled bilinearly at the shifted points, and keys and values are
projected from those samples. Every query pixel attends to all sampled points, with a
relative position bias read bilinearly from a ``(2H-1) x (2W-1)`` table at the query-to-
sample displacement (or a depth-wise conv on q, ``dwc_pe``, or a fixed table, ``fixed_pe``).
Same class names, keywords and ``state_dict`` keys as External-Attention-pytorch's
``DAT.py`` (``LayerNormProxy``, ``DAttentionBaseline``).

Differences from the reference:
- ``forward`` returns the output ``y`` only; the reference also returns the sampling points
  and the reference grid (for visualisation): ``sampling_points`` gives the points.
- ``no_off=True`` samples at the reference points (the reference calls the non-existent
  ``offset.fill``); ``fixed_pe=True`` adds its (heads, H*W, samples) table (the reference
  reads a missing ``self.n_sample``). The bias table is read at its own size
  (2kv - 1); the reference reshapes it to the input's 2H - 1, so needs H, W = kv_size.
Numerically neutral (bilinear sampling with zero padding and align_corners=True, as
``grid_sample``; float64 runs agree with the reference to 1e-14), for export and speed:
- No GridSample: ONNX Runtime's CPU kernel took most of the module's time (README, "Rewrites
  for speed"), and the reference's traced grid is float64, which that kernel cannot run.
  Instead:
  - the input is sampled by a matmul with each point's bilinear ("hat") weights over the
    pixels, built separably from its y and x coordinates ((B*g, Cg, H*W) @ (H*W, Ns));
  - the bias is interpolated along x by a batched matmul of the table with each sample's x
    weights, then along y by gathering the two table rows around each y coordinate (zero
    rows padded around the table, coordinates clamped: grid_sample's zero padding).
  These add 77 MFLOP of small matmuls at the defaults (the bench counts them).
- Coordinates stay in two planes (y, x), so no op broadcasts over a trailing axis of 2.
- The offset network's LayerNorm runs channels-last and its last 1x1 conv is a matmul on
  that layout (the reference permutes to channels-last and back around the norm).
- The attention scale is folded into proj_k's weight and bias (constants in the graph).
- einsum/einops are MatMul/Reshape/Transpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ._layers import module_as
from ._registry import register_module


class LayerNormProxy(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def pixel_centres(n: int, like: torch.Tensor) -> torch.Tensor:
    """(n,) centres of n pixels in grid_sample's [-1, 1] coordinates."""
    return (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) / n * 2 - 1


def to_pixels(coord: torch.Tensor, size: int) -> torch.Tensor:
    """[-1, 1] -> pixel coordinate, as grid_sample with align_corners=True."""
    return (coord + 1) / 2 * (size - 1)


def hat_weights(pix: torch.Tensor, size: int, dim: int = -1) -> torch.Tensor:
    """Bilinear weights of pixels 0..size-1 at coordinates ``pix``, along its size-1 axis
    ``dim`` (< 0); pixels outside the map have no weight (grid_sample's zero padding)."""
    taps = torch.arange(size, dtype=pix.dtype, device=pix.device).reshape(
        (size,) + (1,) * (-dim - 1)
    )
    return torch.relu(1 - (pix - taps).abs())


_OFFSET_KERNELS = [9, 7, 5, 3]  # depth-wise offset conv size per stage


@register_module(
    "dat",
    kwargs=dict(
        q_size=[14, 14],
        kv_size=[14, 14],
        n_heads=12,
        n_head_channels=32,
        n_groups=3,
        attn_drop=0.0,
        proj_drop=0.0,
        stride=1,
        offset_range_factor=2,
        use_pe=True,
        dwc_pe=False,
        no_off=False,
        fixed_pe=False,
        stage_idx=2,
    ),
    shapes=[(1, 384, 14, 14)],
    paper="Vision Transformer with Deformable Attention",
    url="https://arxiv.org/abs/2201.00520",
    fixed_because="the relative position table is sized by q_size/kv_size",
)
class DAttentionBaseline(nn.Module):
    def __init__(
        self,
        q_size: Sequence[int],
        kv_size: Sequence[int],
        n_heads: int,
        n_head_channels: int,
        n_groups: int,
        attn_drop: float,
        proj_drop: float,
        stride: int,
        offset_range_factor: float,
        use_pe: bool,
        dwc_pe: bool,
        no_off: bool,
        fixed_pe: bool,
        stage_idx: int,
    ) -> None:
        super().__init__()
        if n_heads % n_groups:
            raise UsageError(f"dat: n_heads {n_heads} is not divisible by n_groups {n_groups}")
        if not 0 <= stage_idx < len(_OFFSET_KERNELS):
            raise UsageError(f"dat: stage_idx must be 0-3, not {stage_idx}")
        self.dwc_pe = dwc_pe
        self.n_head_channels = n_head_channels
        self.scale = self.n_head_channels**-0.5
        self.n_heads = n_heads
        self.q_h, self.q_w = q_size
        self.kv_h, self.kv_w = kv_size
        self.nc = n_head_channels * n_heads
        self.n_groups = n_groups
        self.n_group_channels = self.nc // self.n_groups
        self.n_group_heads = self.n_heads // self.n_groups
        self.use_pe = use_pe
        self.fixed_pe = fixed_pe
        self.no_off = no_off
        self.offset_range_factor = offset_range_factor

        kk = _OFFSET_KERNELS[stage_idx]
        cg = self.n_group_channels
        self.conv_offset = nn.Sequential(
            nn.Conv2d(cg, cg, kk, stride, kk // 2, groups=cg),
            LayerNormProxy(cg),
            nn.GELU(),
            nn.Conv2d(cg, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_k = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_v = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_out = nn.Conv2d(self.nc, self.nc, kernel_size=1, stride=1, padding=0)
        self.proj_drop = nn.Dropout(proj_drop)
        self.attn_drop = nn.Dropout(attn_drop)

        # position encoding: none, a depth-wise conv (LePE), or a table (fixed or relative)
        self.rpe_table: nn.Conv2d | nn.Parameter | None
        if not self.use_pe:
            self.rpe_table = None
        elif self.dwc_pe:
            self.rpe_table = nn.Conv2d(
                self.nc, self.nc, kernel_size=3, stride=1, padding=1, groups=self.nc
            )
        else:
            if self.fixed_pe:
                size = (self.n_heads, self.q_h * self.q_w, self.kv_h * self.kv_w)
            else:
                size = (self.n_heads, self.kv_h * 2 - 1, self.kv_w * 2 - 1)
            table = nn.Parameter(torch.zeros(*size))
            nn.init.trunc_normal_(table, std=0.01)
            self.rpe_table = table

    def _pe_table(self) -> torch.Tensor:
        assert isinstance(self.rpe_table, nn.Parameter), "use_pe without dwc_pe has a table"
        return self.rpe_table

    def _pe_conv(self) -> nn.Conv2d:
        assert isinstance(self.rpe_table, nn.Conv2d), "use_pe with dwc_pe has a conv"
        return self.rpe_table

    def sampling_points(self, q: torch.Tensor) -> torch.Tensor:
        """Projected queries (B, C, H, W) -> sampling points (B*g, 2, Hk, Wk) in [-1, 1],
        (y, x) order (the reference's ``pos``, channels first)."""
        B, C, H, W = q.shape
        conv, norm, act, to_offset = (
            self.conv_offset[0],
            module_as(self.conv_offset[1], LayerNormProxy).norm,
            self.conv_offset[2],
            module_as(self.conv_offset[3], nn.Conv2d),
        )
        feat = conv(q.reshape(B * self.n_groups, self.n_group_channels, H, W)).permute(
            0, 2, 3, 1
        )  # (B*g, Hk, Wk, Cg)
        Hk, Wk = feat.shape[1], feat.shape[2]
        ref_y, ref_x = pixel_centres(Hk, q), pixel_centres(Wk, q)
        reference = torch.stack(
            (ref_y.reshape(Hk, 1).expand(Hk, Wk), ref_x.reshape(1, Wk).expand(Hk, Wk))
        )  # (2, Hk, Wk)
        if self.no_off:
            pos = reference.expand(B * self.n_groups, 2, Hk, Wk)
        else:
            offset = (act(norm(feat)) @ to_offset.weight.flatten(1).t()).permute(
                0, 3, 1, 2
            )  # (B*g, 2, Hk, Wk)
            if self.offset_range_factor > 0:
                one = offset.new_ones(())
                offset_range = torch.stack((one / Hk, one / Wk)).reshape(1, 2, 1, 1)
                offset = offset.tanh().mul(offset_range).mul(self.offset_range_factor)
            pos = offset + reference
        return pos.tanh() if self.offset_range_factor < 0 else pos

    def sample(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Bilinear samples of x (B, C, H, W) at pos (B*g, 2, Hk, Wk): (B, C, Hk*Wk), as a matmul
        with the (separable) bilinear weights of every pixel."""
        B, C, H, W = x.shape
        bg, n = pos.shape[0], pos.shape[2] * pos.shape[3]
        pix_y = to_pixels(pos[:, 0].reshape(bg, n, 1), H)
        pix_x = to_pixels(pos[:, 1].reshape(bg, n, 1), W)
        weights = hat_weights(pix_y, H).unsqueeze(-1) * hat_weights(pix_x, W).unsqueeze(
            -2
        )  # (B*g, Ns, H, W)
        samples = x.reshape(bg, self.n_group_channels, H * W) @ weights.reshape(
            bg, n, H * W
        ).transpose(1, 2)
        return samples.reshape(B, C, n)

    def position_bias(self, H: int, W: int, pos: torch.Tensor) -> torch.Tensor:
        """Bias read bilinearly from the (2kv_h-1, 2kv_w-1) table at every query-to-sample
        displacement, as grid_sample would: (B*g, h_g, H*W, Ns).

        Separable: the x interpolation is a batched matmul of the table with each sample's
        x weights; the y interpolation gathers the two rows around each y coordinate (the
        table is zero-padded and coordinates clamped, for grid_sample's zero padding)."""
        bg, n = pos.shape[0], pos.shape[2] * pos.shape[3]
        g, hg = self.n_groups, self.n_group_heads
        s_h, s_w = 2 * self.kv_h - 1, 2 * self.kv_w - 1
        # table rows ordered (y, head), one zero row above and two below: (g, s_h+3, hg, s_w)
        table = F.pad(self._pe_table().reshape(g, hg, s_h, s_w).transpose(1, 2), (0, 0, 0, 0, 1, 2))
        rows = table.shape[1]

        disp_x = (pixel_centres(W, pos).reshape(1, 1, W) - pos[:, 1].reshape(bg, n, 1)).mul(
            0.5
        )  # (B*g, Ns, W)
        hx = hat_weights(to_pixels(disp_x, s_w).unsqueeze(-2), s_w, dim=-2)  # (B*g, Ns, s_w, W)
        along_x = table.reshape(1, g, 1, rows * hg, s_w) @ hx.reshape(
            -1, g, n, s_w, W
        )  # (B, g, Ns, rows*hg, W)

        disp_y = (pixel_centres(H, pos).reshape(1, 1, H) - pos[:, 0].reshape(bg, n, 1)).mul(
            0.5
        )  # (B*g, Ns, H)
        pix_y = to_pixels(disp_y, s_h).clamp(-1, s_h)  # outside the table -> zero rows only
        top = pix_y.floor()
        frac = (pix_y - top).unsqueeze(-1)
        row = torch.arange(bg * n, device=pos.device).reshape(bg, n, 1) * rows + (top.long() + 1)
        flat = along_x.reshape(-1, hg * W)  # (B*g*Ns*rows, hg*W)
        upper, lower = flat[row], flat[row + 1]  # (B*g, Ns, H, hg*W)
        bias = (upper + (lower - upper) * frac).reshape(bg, n, H, hg, W)
        bias = bias.permute(0, 3, 1, 2, 4).reshape(
            bg, hg, n, H * W
        )  # heads out: (B*g, hg, Ns, H*W)
        return bias.transpose(2, 3)  # (B*g, hg, H*W, Ns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h, hc = self.n_heads, self.n_head_channels
        q = self.proj_q(x)  # (B, C, H, W)
        pos = self.sampling_points(q)  # (B*g, 2, Hk, Wk)
        n_sample = pos.shape[2] * pos.shape[3]
        x_sampled = self.sample(x, pos).reshape(B, C, 1, n_sample)
        k = F.conv2d(
            x_sampled, self.proj_k.weight * self.scale, self.proj_k.bias * self.scale
        )  # scale folded
        k = k.reshape(B * h, hc, n_sample)
        v = self.proj_v(x_sampled).reshape(B * h, hc, n_sample)

        q = q.reshape(B * h, hc, H * W)
        attn = q.transpose(1, 2) @ k  # (B*h, H*W, Ns)
        if self.use_pe and self.dwc_pe:
            residual_lepe = self._pe_conv()(q.reshape(B, C, H, W)).reshape(B * h, hc, H * W)
        elif self.use_pe and self.fixed_pe:
            attn = (attn.reshape(B, h, H * W, n_sample) + self._pe_table()).reshape(
                B * h, H * W, n_sample
            )
        elif self.use_pe:
            attn = attn + self.position_bias(H, W, pos).reshape(B * h, H * W, n_sample)
        attn = self.attn_drop(attn.softmax(dim=2))

        out = v @ attn.transpose(1, 2)  # (B*h, hc, H*W)
        if self.use_pe and self.dwc_pe:
            out = out + residual_lepe
        return self.proj_drop(self.proj_out(out.reshape(B, C, H, W)))  # (B, C, H, W)
