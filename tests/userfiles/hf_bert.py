"""A Hugging Face BertForSequenceClassification registered as it is: dict samples as a tokenizer gives them.

A tiny config built locally (no download). The class is the second token modulo 3, so one epoch learns it.
"""

import torch
from transformers import BertConfig, BertForSequenceClassification

import effsearch

LENGTH = 12


class Tokens(torch.utils.data.Dataset):
    """{input_ids, attention_mask, token_type_ids, labels}: random token ids, the class a rule on them."""

    def __init__(self, n: int, seed: int) -> None:
        self.ids = torch.randint(1, 100, (n, LENGTH), generator=torch.Generator().manual_seed(seed))
        self.labels = self.ids[:, 1] % 3

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids), "labels": self.labels[i]}


def model() -> BertForSequenceClassification:
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3)
    return BertForSequenceClassification(config)


def data() -> tuple[Tokens, Tokens]:
    return Tokens(512, 0), Tokens(128, 1)


effsearch.register(model=model, data=data, name="hf-bert", epochs=1)
