"""Train the PyTorch example's model versions at build time, in seconds,
on scikit-learn's bundled handwritten digits (nothing is downloaded), and
write them with the held-out images into OUT_DIR:

  digits-v1.pt  trained 30 epochs on the training split
  digits-v2.pt  v1 exported again (the same weights): replays `same`
  digits-v3.pt  v1 cast to half precision and back: replays `close` (--atol 0.01)
  digits-v4.pt  v1 fine-tuned on a new batch of data in which a labelling bug
                marked every 3 as an 8: 3s now come out as 8s, `diverged`
  digits-v5.pt  v4 exported again
  digits-test.npz  the held-out images and their labels

  /usr/bin/python3 examples/torch/train.py OUT_DIR
"""

import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits_model  # noqa: E402


def fit(model, x, y, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(out):
    torch.manual_seed(0)
    digits_model.setup(1)
    data = load_digits()
    images = data.images.astype(np.float32)
    labels = data.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    test, train = order[:300], order[300:]
    x = digits_model.as_images(images[train])
    y = torch.from_numpy(labels[train])
    xt = digits_model.as_images(images[test])
    yt = torch.from_numpy(labels[test])

    model = digits_model.DigitsNet()
    fit(model, x, y, epochs=30, lr=0.01)
    digits_model.save(model, "1", os.path.join(out, "digits-v1.pt"))
    digits_model.save(model, "2", os.path.join(out, "digits-v2.pt"))
    v1_acc = accuracy(model, xt, yt)

    half = digits_model.DigitsNet()
    half.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    half.eval()
    digits_model.save(half, "3", os.path.join(out, "digits-v3.pt"))

    # The new batch: the same images, every 3 labelled 8 by a buggy labelling job.
    y_bad = y.clone()
    y_bad[y_bad == 3] = 8
    fit(model, x, y_bad, epochs=6, lr=0.01)
    digits_model.save(model, "4", os.path.join(out, "digits-v4.pt"))
    digits_model.save(model, "5", os.path.join(out, "digits-v5.pt"))

    np.savez(os.path.join(out, "digits-test.npz"), images=images[test], labels=labels[test])
    print("digits: held-out accuracy %.3f (v1), %.3f (v3, half), %.3f (v4, retrained)"
          % (v1_acc, accuracy(half, xt, yt), accuracy(model, xt, yt)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: train.py OUT_DIR", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
