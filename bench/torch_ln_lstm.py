"""PyTorch's own layer-normalized LSTM for bench/torch_rnn.py's `_ln` shapes (issue 18), written as
pytorch/benchmarks/fastrnns writes its LayerNorm LSTM: a TorchScript cell that normalises the
two products and the cell state, run by a TorchScript loop over time, layers stacked. PyTorch
has no fused layer-normalized LSTM, so this is what a PyTorch user runs.

The equations are issue 18's (docs/math.md, section 8d), in the cost fastrnns has:
  gates = LN(x W_ihᵀ) ⊙ γ_ih + b_ih + LN(h W_hhᵀ) ⊙ γ_hh + b_hh    (nn.LayerNorm(4H): γ and β = b)
  c = f ⊙ c + i ⊙ g;   h = o ⊙ tanh(LN(c) ⊙ γ_c + β_c)              (c carried unnormalised)
Imported only after bench/torch_rnn.py has set OPENBLAS_NUM_THREADS.
"""
import math
from typing import List, Tuple

import torch
from torch import Tensor


class LNLSTMCell(torch.nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = torch.nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = torch.nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.ln_ih = torch.nn.LayerNorm(4 * hidden_size)
        self.ln_hh = torch.nn.LayerNorm(4 * hidden_size)
        self.ln_c = torch.nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        gates = self.ln_ih(torch.mm(x, self.weight_ih.t())) + self.ln_hh(torch.mm(h, self.weight_hh.t()))
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, (h, c)


class LNLSTMLayer(torch.nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = LNLSTMCell(input_size, hidden_size)

    def forward(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        inputs = x.unbind(0)
        outputs = torch.jit.annotate(List[Tensor], [])
        for t in range(len(inputs)):
            out, state = self.cell(inputs[t], state)
            outputs += [out]
        return torch.stack(outputs), state


class LNLSTM(torch.nn.Module):
    """L stacked layers from a zero state; returns (output [T, B, H], None) as nn.LSTM's pair."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = torch.nn.ModuleList(
            [LNLSTMLayer(input_size if k == 0 else hidden_size, hidden_size)
             for k in range(num_layers)])

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out = x
        for layer in self.layers:
            zero = torch.zeros(x.shape[1], self.hidden_size, dtype=x.dtype)
            out, _ = layer(out, (zero, zero))
        return out, out[-1]


def ln_lstm(input_size, hidden_size, num_layers):
    return torch.jit.script(LNLSTM(input_size, hidden_size, num_layers))
