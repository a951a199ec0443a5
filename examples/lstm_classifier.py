"""An LSTM classifying synthetic integer-token sequences by the order of two tokens (no downloads).

Each sequence has 24 tokens over a vocabulary of 32 and holds tokens 3 and 5 once each, at random
places; the label says whether 3 comes first. Counting cannot tell the classes apart, so the model has
to carry what it saw along the sequence. The data is made here, seeded, so every run sees the same sets.
"""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

VOCAB = 32
SEQ_LEN = 24
EMBED = 32
HIDDEN = 64
MARKS = (3, 5)


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.tokens(tokens))
        # The output at the last step: it has read the whole sequence.
        return self.head(out[:, -1])


def build() -> nn.Module:
    return LSTMClassifier()


def _make(n: int, generator: torch.Generator) -> TensorDataset:
    # Filler tokens avoid the two marks, which are then written at two distinct random positions.
    filler = torch.tensor([t for t in range(VOCAB) if t not in MARKS])
    tokens = filler[torch.randint(len(filler), (n, SEQ_LEN), generator=generator)]
    places = torch.rand(n, SEQ_LEN, generator=generator).argsort(dim=1)[:, :2]
    rows = torch.arange(n)
    tokens[rows, places[:, 0]] = MARKS[0]
    tokens[rows, places[:, 1]] = MARKS[1]
    labels = (places[:, 0] < places[:, 1]).long()
    return TensorDataset(tokens, labels)


def load():
    generator = torch.Generator().manual_seed(0)
    return _make(4000, generator), _make(1000, generator)


effsearch.register(model=build, data=load, name="lstm-classifier", epochs=3)
