"""A regressor on scikit-learn's diabetes table (442 rows, 10 features): MSE loss, RMSE to minimize."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0))


def load():
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_diabetes(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(x_train)
    # Targets scaled to unit variance so one learning-rate range suits them.
    mean, std = y_train.mean(), y_train.std()
    as_x = lambda a: torch.tensor(scaler.transform(a), dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return TensorDataset(as_x(x_train), as_y(y_train)), TensorDataset(as_x(x_val), as_y(y_val))


def mse(outputs, targets):
    return nn.functional.mse_loss(outputs.reshape(targets.shape), targets)


def rmse(outputs, targets):
    return float(torch.sqrt(nn.functional.mse_loss(outputs.reshape(targets.shape), targets)))


effsearch.register(model=build, data=load, name="diabetes-regressor", loss=mse, metric=rmse, metric_direction="minimize", epochs=30)
