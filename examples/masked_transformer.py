"""A transformer encoder on padded token sequences of varying length, with an attention mask (no downloads).

Each sequence holds 6 to 24 real tokens over a vocabulary of 32, padded with token 0 to 24; a sample's
input is a dict, {"tokens": int64 [24], "padding_mask": bool [24]} (True where a position is padding),
and the model takes them as keyword arguments. The mask keeps padding out of attention and out of the
mean the classifier reads. The label says whether token 3 occurs more often than token 5 among the
real tokens. The data is made here, seeded, so every run sees the same sets.
"""

import torch
from torch import nn
from torch.utils.data import Dataset

import effsearch

VOCAB = 32
MAX_LEN = 24
MIN_LEN = 6
PAD = 0
D_MODEL = 64


class MaskedTransformer(nn.Module):
    def __init__(self, layers: int = 2, heads: int = 4, ff: int = 128) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, D_MODEL, padding_idx=PAD)
        self.positions = nn.Embedding(MAX_LEN, D_MODEL)
        layer = nn.TransformerEncoderLayer(D_MODEL, heads, dim_feedforward=ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, 2)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        x = self.norm(self.encoder(x, src_key_padding_mask=padding_mask))
        keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
        return self.head((x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0))


class PaddedTokens(Dataset):
    """Sequences of varying length, padded to MAX_LEN: the padding is the dataset's job."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        weights = torch.ones(VOCAB)
        weights[PAD] = 0.0
        weights[3] = weights[5] = 4.0  # drawn more often, so that their counts vary and ties are rarer
        self.lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=generator)
        self.tokens = torch.multinomial(weights.expand(n, VOCAB), MAX_LEN, replacement=True, generator=generator)
        self.mask = torch.arange(MAX_LEN).expand(n, MAX_LEN) >= self.lengths.unsqueeze(1)
        self.tokens[self.mask] = PAD
        self.labels = ((self.tokens == 3).sum(1) > (self.tokens == 5).sum(1)).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"tokens": self.tokens[i], "padding_mask": self.mask[i]}, self.labels[i]


def build() -> nn.Module:
    return MaskedTransformer()


def load():
    generator = torch.Generator().manual_seed(0)
    return PaddedTokens(4000, generator), PaddedTokens(1000, generator)


effsearch.register(model=build, data=load, name="masked-transformer", epochs=3)
