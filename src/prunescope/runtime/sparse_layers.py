"""Layers whose weights are sparse matrices: the ``sparse`` inference format.

A Linear layer computes ``W x`` with ``W`` in torch's CSR (or BSR) format; a convolution
is unfold (im2col) × sparse matmul: the input's k×k patches become the columns of a
[C_in·k·k, N·H'·W'] matrix that the [C_out, C_in·k·k] sparse weight multiplies. A
grouped convolution's weight is laid out block-diagonally first (its zeros cost nothing
in a sparse format). No library for sparse *weight* convolutions on CPUs was found that
is kept up: Neural Magic's DeepSparse, the CPU engine for this, is archived (its last
PyPI release, 1.9.0, is a 6 kB stub), so torch's own sparse matmul is the sparse path.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.models.layers import IN_OUT, adapter_for

LAYOUTS = ("csr", "bsr")


def to_sparse(w: torch.Tensor, layout: str, block: int = 8) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        if layout == "bsr":
            return w.to_sparse_bsr((block, block))
        return w.to_sparse_csr()


def bsr_fits(shape: torch.Size, block: int = 8) -> bool:
    return len(shape) == 2 and shape[0] % block == 0 and shape[1] % block == 0


def dense_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """A convolution's weight as a [C_out, C_in·k·k] matrix (block-diagonal when grouped)."""
    w = conv.weight.detach()
    cout, cin_pg = w.shape[0], w.shape[1]
    k = w.shape[2] * w.shape[3]
    if conv.groups == 1:
        return w.reshape(cout, cin_pg * k)
    out = torch.zeros(cout, conv.in_channels * k, dtype=w.dtype, device=w.device)
    cout_pg = cout // conv.groups
    for g in range(conv.groups):
        rows = slice(g * cout_pg, (g + 1) * cout_pg)
        cols = slice(g * cin_pg * k, (g + 1) * cin_pg * k)
        out[rows, cols] = w[rows].reshape(cout_pg, cin_pg * k)
    return out


class SparseLinear(nn.Module):
    """``x W^T + b`` with ``W`` ([out, in]) sparse: an ``nn.Linear``, or GPT-2's Conv1D
    (whose stored weight is [in, out], so its transpose)."""

    def __init__(self, linear: nn.Module, layout: str = "csr"):
        super().__init__()
        self.layout = layout
        w = linear.weight.detach()
        w = w.t() if adapter_for(linear).weight_axis == 1 else w
        self.weight = to_sparse(w.contiguous().clone(), layout)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = (self.weight @ x.reshape(-1, shape[-1]).t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], y.shape[-1])


class SparseConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, layout: str = "csr"):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"sparse convolution needs zero padding, not {conv.padding_mode}")
        self.layout = layout
        self.weight = to_sparse(dense_matrix(conv).clone(), layout)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # [N, CK, L]
        ho = (
            h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1
        ) // self.stride[0] + 1
        wo = (
            w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1
        ) // self.stride[1] + 1
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # [CK, N·L]
        y = (self.weight @ flat).reshape(self.out_channels, n, ho, wo).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.contiguous()


def has_sparse_version(module: nn.Module) -> bool:
    """A layer whose computation is known to be a matrix product: nn.Linear, GPT-2's
    Conv1D, nn.Conv2d. Another type (a user's layer may do more in its forward) stays
    dense in the sparse formats."""
    return isinstance(module, nn.Linear | nn.Conv2d) or adapter_for(module) is IN_OUT


def sparse_version(module: nn.Module, layout: str = "csr") -> nn.Module:
    if isinstance(module, nn.Linear) or adapter_for(module) is IN_OUT:
        return SparseLinear(module, layout)
    if isinstance(module, nn.Conv2d):
        return SparseConv2d(module, layout)
    raise TypeError(f"no sparse version of {type(module).__name__}")


def sparse_matrix_shape(module: nn.Module) -> torch.Size:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return torch.Size((module.out_channels, module.in_channels * k))
    return adapter_for(module).rows(module.weight).shape


def semi_structured_fits(w: torch.Tensor) -> bool:
    """2:4 semi-structured sparsity (CUDA, compute capability 8.0+): in every run of 4 weights
    along the input dimension at most 2 are nonzero. IMP's masks are not built to it, so a
    layer qualifies only if its mask happens to satisfy it."""
    m = w.reshape(w.shape[0], -1)
    if m.shape[1] % 4:
        return False
    return bool(((m != 0).reshape(m.shape[0], -1, 4).sum(-1) <= 2).all())
