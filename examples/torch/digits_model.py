"""The PyTorch example's model: a small convolutional classifier of
scikit-learn's bundled 8x8 handwritten digits, with Monte-Carlo dropout at
inference (its randomness seeded from deja, so a replay draws the very
same dropout masks). Shared by train.py (training, at build time),
app.py (an application recording through deja.Tracer) and model.py (the
exec runner deja replays with)."""

import numpy as np
import torch
from torch import nn

DROPOUT = 0.25


class DigitsNet(nn.Module):
    """conv 1->8 (3x3) -> relu -> conv 8->16 (3x3) -> relu -> 2x2 max pool
    -> dropout -> linear 64->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def features(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.pool(x).flatten(1)

    def forward(self, x, generator=None):
        """Logits of images x [n, 1, 8, 8]. With `generator`, dropout masks
        are drawn from it (Monte-Carlo dropout at inference); in training
        mode, from torch's global generator."""
        return self.head(self.features(x), generator)

    def head(self, h, generator=None):
        """Logits from the pooled features h [n, 64] (dropout as forward)."""
        if generator is not None:
            keep = torch.rand(h.shape, generator=generator) >= DROPOUT
            h = h * keep / (1 - DROPOUT)
        elif self.training:
            h = nn.functional.dropout(h, DROPOUT)
        return self.fc(h)


def setup(threads=1):
    """Pin torch's intra-op threads (recorded in the environment: replaying
    with another count is reported as a likely cause)."""
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)


def load(path):
    """The checkpoint at `path`: (model in eval mode, version string)."""
    ckpt = torch.load(path, map_location="cpu")
    model = DigitsNet()
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, str(ckpt["version"])


def save(model, version, path):
    torch.save({"version": str(version), "state_dict": model.state_dict()}, path)


def as_images(pixels):
    """Digit images (values 0..16, shape [8, 8] or [n, 8, 8]) as the f32
    [n, 1, 8, 8] tensor the net takes."""
    a = np.array(pixels, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0
    return torch.from_numpy(a)


@torch.no_grad()
def predict(model, pixels, seed, mc_samples=8, checkpoint=None):
    """Mean class probabilities over `mc_samples` dropout masks drawn from a
    generator seeded with `seed`: f32 [n, 10], and the labels i64 [n].

    `checkpoint(name, array)` (a deja span's or ctx's) sees the pooled
    features ("features", once) and the logits of each dropout sample
    ("logits", once per sample); when it returns True (a replay stopping at
    its first divergence) predict returns None."""
    g = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    x = as_images(pixels)
    h = model.features(x)
    if checkpoint is not None and checkpoint("features", h.numpy()):
        return None
    probs = torch.zeros(x.shape[0], 10)
    for _ in range(max(1, int(mc_samples))):
        logits = model.head(h, generator=g)
        if checkpoint is not None and checkpoint("logits", logits.numpy()):
            return None
        probs += torch.softmax(logits, dim=1)
    probs /= max(1, int(mc_samples))
    return probs, probs.argmax(dim=1)
