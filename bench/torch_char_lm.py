#!/usr/bin/python3
"""The PyTorch side of bench/shakespeare.sh: the same character LSTM, data split, streams,
windows, optimizer, clipping and validation protocol as `bptt train --text`, under the same
wall-clock budget. Prints one JSON line with the validation loss.

Protocol (identical to bptt): vocabulary = sorted distinct bytes of the whole file; the last
--val-fraction of the bytes is validation; the training part is split into B contiguous streams,
windows of T steps, the state carried between windows with the gradient cut at each window start
(detach), reset at each epoch; xent at every step; Adam, clip_grad_norm_; validation runs the
validation part the same way (B streams, halved until they fit) and averages the window means.

For issue 18's comparison: --dropout is nn.LSTM's between-layer dropout (PyTorch's own
regularizer), and --eval-every N evaluates every N steps (the model back in training mode
after), reports the best validation loss and, with --metrics, writes the rows as `bptt train
--metrics` does (step, elapsed_s, train_loss, val_loss, ...), so `bptt plot` draws both. As
bptt's, the time budget counts the evaluations too.
"""
import argparse, json, math, os, sys, time

# torch.set_num_threads does not reach Debian torch's OpenBLAS; its pool size must be set before
# the import (bench/torch_rnn.py does the same).
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ["OPENBLAS_NUM_THREADS"] = _threads
import torch  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--text", required=True)
p.add_argument("--val-fraction", type=float, default=0.1)
p.add_argument("--hidden", type=int, default=256)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--seq-len", type=int, default=100)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--clip-norm", type=float, default=5.0)
p.add_argument("--time-budget", type=float, default=300)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--eval-every", type=int, default=0)
p.add_argument("--metrics", default="")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

data = open(a.text, "rb").read()
vocab = sorted(set(data))
index = {b: i for i, b in enumerate(vocab)}
ids = torch.tensor([index[b] for b in data], dtype=torch.long)
V = len(vocab)
train_end = math.floor(len(ids) * (1 - a.val_fraction))  # as bptt (nanoGPT's split)


def streams(begin, end, B, T):
    n = (end - begin - 1) // B
    windows = n // T
    base = torch.arange(B) * n + begin
    return windows, base


def window(base, w, T):
    pos = base[None, :] + w * T + torch.arange(T)[:, None]  # [T, B]
    return ids[pos], ids[pos + 1]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(V, a.hidden, a.layers, dropout=a.dropout)
        self.head = torch.nn.Linear(a.hidden, V)

    def forward(self, x, state):
        out, state = self.rnn(torch.nn.functional.one_hot(x, V).float(), state)
        return self.head(out), state


net = Net()
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
B, T = a.batch, a.seq_len
windows, base = streams(0, train_end, B, T)


def validate():
    """The validation loss, bptt's protocol; the model back in training mode afterwards."""
    net.eval()
    with torch.no_grad():
        length = len(ids) - train_end - 1
        vb, vt = B, T
        while vb > 1 and length // vb < vt:
            vb //= 2
        if length // vb < vt:
            vt = length
        vwin, vbase = streams(train_end, len(ids), vb, vt)
        total, vstate = 0.0, None
        for v in range(vwin):
            x, y = window(vbase, v, vt)
            z, vstate = net(x, vstate)
            total += torch.nn.functional.cross_entropy(z.reshape(-1, V), y.reshape(-1)).item()
    net.train()
    return total / vwin


metrics = open(a.metrics, "w") if a.metrics else None
if metrics:
    metrics.write("step,elapsed_s,train_loss,val_loss,lr,grad_norm,throughput\n")
start = time.time()
step, w, state, best, loss_sum, loss_n, norm = 0, 0, None, float("inf"), 0.0, 0, 0.0
while time.time() - start < a.time_budget:
    if w == windows:
        w, state = 0, None
    x, y = window(base, w, T)
    z, state = net(x, state)
    state = tuple(s.detach() for s in state)
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip_norm)
    opt.step()
    step += 1
    w += 1
    loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
    if a.eval_every and step % a.eval_every == 0:
        v = validate()
        best = min(best, v)
        if metrics:
            t = time.time() - start
            metrics.write("%d,%.3f,%.6g,%.6g,%.6g,%.6g,%.1f\n" % (
                step, t, loss_sum / loss_n, v, a.lr, float(norm), step * B * T / t))
            metrics.flush()
        loss_sum, loss_n = 0.0, 0
train_seconds = time.time() - start
val = validate()
best = min(best, val)
if metrics:
    metrics.write("%d,%.3f,%.6g,%.6g,%.6g,%.6g,%.1f\n" % (
        step, train_seconds, loss_sum / max(loss_n, 1), val, a.lr, float(norm),
        step * B * T / train_seconds))
    metrics.close()
print(json.dumps({"impl": "pytorch", "steps": step, "train_seconds": train_seconds,
                  "val_loss": val, "best_val_loss": best, "bits_per_char": val / math.log(2),
                  "chars_per_second": step * B * T / train_seconds}))
