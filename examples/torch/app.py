"""An application serving digit classifications, recording every request
through deja.Tracer, as a team would instrument its own Python service:

  /usr/bin/python3 examples/torch/app.py build/lib/digits-v1.pt [--store S] [-n N]

Each request is one held-out 8x8 image (build/lib/digits-test.npz); the
model runs Monte-Carlo dropout with a seed taken from the span, so that
`deja replay --model 'exec:/usr/bin/python3 examples/torch/model.py
build/lib/digits-v1.pt'` feeds the same seed back and reproduces the
probabilities bit for bit. Prints one line per request: trace id, label,
top probability.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits_model  # noqa: E402  (imports torch: recorded in the environment)

import deja  # noqa: E402

MC_SAMPLES = 8


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("--store", default=None, help="default $DEJA_STORE, else ./deja.store")
    p.add_argument("-n", type=int, default=50, help="requests to serve (default 50)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoints", default=None,
                   help="record checkpoints: all, or NAME,... (features, logits); default none")
    a = p.parse_args()

    digits_model.setup(a.threads)
    model, version = digits_model.load(a.weights)
    digest = deja.digest_file(a.weights)
    test = np.load(os.path.join(os.path.dirname(os.path.abspath(a.weights)), "digits-test.npz"))
    # --checkpoints all: the pooled features and each dropout sample's logits
    # are recorded too, so that a replay names the first that diverges.
    tracer = deja.Tracer(a.store, checkpoints=a.checkpoints)

    for i in range(min(a.n, len(test["images"]))):
        image = test["images"][i].astype(np.float32)
        with tracer.span("digits", version, digest=digest) as s:
            s.input("image", image)
            s.param("mc_samples", MC_SAMPLES)
            s.tag("request", "r%03d" % i)
            s.tag("truth", str(int(test["labels"][i])))
            probs, labels = digits_model.predict(model, image, s.seed("dropout"), MC_SAMPLES,
                                                 s.checkpoint)
            s.output("probs", probs)
            s.output("label", labels)
            trace_id = s.id
        print("%s  r%03d  label %d  p=%.3f" % (trace_id, i, int(labels[0]), float(probs[0].max())))
    tracer.close()


if __name__ == "__main__":
    main()
