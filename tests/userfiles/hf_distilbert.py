"""A Hugging Face DistilBertForSequenceClassification with samples of varying length and a padding collate.

Samples are {input_ids: list of ints, label: int}, as a tokenizer gives them without padding; `pad` batches
them as transformers' DataCollatorWithPadding does (padded to the batch's longest, `label` renamed `labels`).
"""

import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

import effsearch


class Sentences:
    """Map-style: {input_ids, label}, 6 to 12 random tokens; the class is the second token modulo 3."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(6, 13, (n,), generator=g)
        self.items = []
        for length in lengths.tolist():
            ids = torch.randint(1, 100, (length,), generator=g).tolist()
            self.items.append({"input_ids": ids, "label": ids[1] % 3})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def pad(features: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), longest, dtype=torch.long)
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    for row, f in enumerate(features):
        ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[row, : len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in features])}


def model() -> DistilBertForSequenceClassification:
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=3)
    return DistilBertForSequenceClassification(config)


def data() -> tuple[Sentences, Sentences]:
    return Sentences(512, 0), Sentences(128, 1)


effsearch.register(model=model, data=data, name="hf-distilbert", epochs=1, collate=pad)
