"""Small networks of every layer kind, built here (not netsqueeze's reference models).

Each factory takes no argument and returns a fresh module; ``ZOO`` maps a name to
``(factory, example_input_fn)``. The factories are importable as ``tests.nn.zoo:NAME`` so that
tests can save a file naming its factory and load it back by that name.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """ResNet-style: BatchNorm, residual adds, a strided downsampling block."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


class TinyMobileNet(nn.Module):
    """MobileNet-style: depthwise (groups = channels) and pointwise convolutions, ReLU6."""

    def __init__(self, classes: int = 10):
        super().__init__()

        def dw(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
            )

        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            dw(16, 32, 1), dw(32, 64, 2),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(64, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """Transformer encoder classifier: token embedding, a learned positional Parameter,
    nn.TransformerEncoder (MultiheadAttention in_proj_weight, NonDynamicallyQuantizableLinear
    out_proj, LayerNorm), a linear head."""

    def __init__(self, vocab: int = 50, dim: int = 32, classes: int = 4, seq: int = 12):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, dim_feedforward=64, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.encoder(x).mean(dim=1))


class TiedLSTMLM(nn.Module):
    """LSTM language model whose decoder weight *is* its embedding weight (tied)."""

    def __init__(self, vocab: int = 60, dim: int = 24):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, num_layers=2, batch_first=True)
        self.decoder = nn.Linear(dim, vocab)
        self.decoder.weight = self.embedding.weight

    def forward(self, tokens):
        out, _ = self.lstm(self.embedding(tokens))
        return self.decoder(out)


class RecurrentZoo(nn.Module):
    """Bidirectional GRU, a plain RNN, an LSTM with projections, EmbeddingBag, Bilinear and a
    separate-projection MultiheadAttention (q/k/v_proj_weight)."""

    def __init__(self, vocab: int = 40, dim: int = 16):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.embed = nn.Embedding(vocab, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(2 * dim, dim, batch_first=True)
        self.lstm = nn.LSTM(dim, dim, batch_first=True, proj_size=8)
        self.attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
        self.kv = nn.Linear(8, 6)
        self.bilinear = nn.Bilinear(8, dim, 5)

    def forward(self, tokens):
        x = self.embed(tokens)
        x, _ = self.gru(x)
        x, _ = self.rnn(x)
        x, _ = self.lstm(x)
        kv = self.kv(x)
        x, _ = self.attn(x, kv, kv)
        return self.bilinear(x.mean(dim=1), self.bag(tokens))


class TinyUNet(nn.Module):
    """U-Net-style: down convolutions, ConvTranspose2d up, a skip concatenation, Conv1x1."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = self.down1(x)
        b = self.up(self.down2(a))
        return self.out(torch.cat([a, b], dim=1))


class RawParams(nn.Module):
    """A model made of raw Parameters: a 2-D matrix, a 3-D tensor, a 1-D scale."""

    def __init__(self, features: int = 20, classes: int = 5):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(features, 32) * 0.2)
        self.mix = nn.Parameter(torch.randn(2, 32, 32) * 0.1)
        self.scale = nn.Parameter(torch.ones(32))
        self.w2 = nn.Parameter(torch.randn(32, classes) * 0.2)

    def forward(self, x):
        h = torch.tanh(x @ self.w1)
        h = torch.tanh(h @ self.mix[0]) + torch.tanh(h @ self.mix[1])
        return (h * self.scale) @ self.w2


def _image(n=2, size=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g)


def _tokens(vocab, n=3, t=12):
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, vocab, (n, t), generator=g)


#: name -> (factory, inputs, loss target fn(output) -> scalar)
ZOO = {
    "resnet": (TinyResNet, lambda: _image()),
    "mobilenet": (TinyMobileNet, lambda: _image()),
    "transformer": (TinyTransformer, lambda: _tokens(50)),
    "tied_lstm_lm": (TiedLSTMLM, lambda: _tokens(60)),
    "recurrent": (RecurrentZoo, lambda: _tokens(40)),
    "unet": (TinyUNet, lambda: _image()),
    "raw_params": (RawParams, lambda: torch.randn(4, 20, generator=torch.Generator()
                                                  .manual_seed(3))),
}
