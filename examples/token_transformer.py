"""A small transformer encoder classifying synthetic integer-token sequences (no downloads).

Each sequence has 16 tokens over a vocabulary of 32; the label says whether token 3 occurs more often
than token 5. The data is made here, seeded, so every run sees the same sets.
"""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

VOCAB = 32
SEQ_LEN = 16
D_MODEL = 64


class TokenTransformer(nn.Module):
    def __init__(self, layers: int = 2, heads: int = 4, ff: int = 128) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, D_MODEL)
        self.positions = nn.Embedding(SEQ_LEN, D_MODEL)
        layer = nn.TransformerEncoderLayer(D_MODEL, heads, dim_feedforward=ff, dropout=0.0, batch_first=True)
        # Nested tensors only pay off with padding masks, and they get in the way of export.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        return self.head(self.norm(self.encoder(x)).mean(dim=1))


def build() -> nn.Module:
    return TokenTransformer()


def _make(n: int, generator: torch.Generator) -> TensorDataset:
    # Tokens 3 and 5 are drawn more often than the others so that their counts vary and ties are rarer.
    weights = torch.ones(VOCAB)
    weights[3] = weights[5] = 4.0
    tokens = torch.multinomial(weights.expand(n, VOCAB), SEQ_LEN, replacement=True, generator=generator)
    labels = ((tokens == 3).sum(1) > (tokens == 5).sum(1)).long()
    return TensorDataset(tokens, labels)


def load():
    generator = torch.Generator().manual_seed(0)
    return _make(4000, generator), _make(1000, generator)


effsearch.register(model=build, data=load, name="token-transformer", epochs=3)
