"""The PyTorch example's model served to deja over the exec runner
protocol, so that deja replays and bisects it like a C plugin:

  deja replay --model 'exec:/usr/bin/python3 examples/torch/model.py build/lib/digits-v1.pt'
  deja bisect 'exec:/usr/bin/python3 examples/torch/model.py build/lib/digits-v1.pt' ...

Arguments: the weights file, then optionally --threads N (torch's intra-op
threads; default 1). The model name is "digits", the version the
checkpoint's, the digest the weights file's XXH3-128 (what app.py records).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits_model  # noqa: E402

import deja  # noqa: E402


class Digits:
    name = "digits"

    def open(self, argv):
        p = argparse.ArgumentParser(prog="model.py")
        p.add_argument("weights")
        p.add_argument("--threads", type=int, default=1)
        a = p.parse_args(argv)
        digits_model.setup(a.threads)
        self.model, self.version = digits_model.load(a.weights)
        self.digest = deja.digest_file(a.weights)

    def infer(self, ctx):
        image = ctx.inputs["image"]
        mc = int(ctx.params.get("mc_samples", 8))
        got = digits_model.predict(self.model, image, ctx.seed("dropout"), mc, ctx.checkpoint)
        if got is None:  # replay --stop-at-first: stopped at a divergent checkpoint
            return
        probs, labels = got
        ctx.output("probs", probs)
        ctx.output("label", labels)


if __name__ == "__main__":
    deja.run_model(Digits)
