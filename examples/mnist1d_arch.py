"""The 1-D CNN both MNIST-1D CNN examples share: examples/mnist1d_cnn.py (trained from scratch) and
examples/mnist1d_cnn_trained.py (the same network, arriving trained)."""

from torch import nn

# Wide enough that dense latency at batch 1 stands well above onnxruntime's per-call floor, and that
# pruning leaves several distinct channel counts after rounding to 8 or 16.
WIDTH = 128
SHAPE = (1, 40)  # channels first


def cnn(width: int = WIDTH) -> nn.Module:
    def conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]

    return nn.Sequential(
        *conv(1, width, 5),
        *conv(width, width, 3, stride=2),  # 40 -> 20
        *conv(width, width, 3),
        *conv(width, width, 3, stride=2),  # 20 -> 10
        nn.Flatten(),  # where a pattern sits matters in MNIST-1D: no global pooling
        nn.Linear(width * 10, 10),
    )
