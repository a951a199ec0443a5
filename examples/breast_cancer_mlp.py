"""An MLP on scikit-learn's breast-cancer table (569 rows, 30 features, 2 classes)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build() -> nn.Module:
    return nn.Sequential(
        nn.Linear(30, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 2),
    )


def load():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    as_x = lambda a: torch.tensor(scaler.transform(a), dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return TensorDataset(as_x(x_train), as_y(y_train)), TensorDataset(as_x(x_val), as_y(y_val))


effsearch.register(model=build, data=load, name="breast-cancer-mlp", epochs=20)
