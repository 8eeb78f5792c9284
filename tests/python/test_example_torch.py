"""examples/torch end to end: the application records digit requests
through deja.Tracer; the exec runner (model.py) replays them bit for bit on
the recording weights and on their re-export, `close` on the half-precision
cast (with --atol 0.01), `diverged` with label flips on the retrained
version, and bisect names the retrained version. The models are trained
once at build time (build/lib/digits-v*.pt). Run by ctest
(test_example_torch)."""

import os
import subprocess
import sys
import tempfile
import unittest

import deja

DEJA = os.environ.get("DEJA_BIN", "deja")
BUILD = os.environ.get("DEJA_BUILD_DIR", "build")
SOURCE = os.environ.get("DEJA_SOURCE_DIR", ".")
LIB = os.path.join(BUILD, "lib")
EXAMPLE = os.path.join(SOURCE, "examples", "torch")


def spec(v, *extra):
    return " ".join(["exec:" + sys.executable, os.path.join(EXAMPLE, "model.py"),
                     os.path.join(LIB, "digits-v%d.pt" % v)] + list(extra))


@unittest.skipUnless(os.path.exists(os.path.join(LIB, "digits-v1.pt")), "torch example not built")
class TorchExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="deja-torch-")
        cls.store = os.path.join(cls.tmp.name, "t.store")
        r = subprocess.run([sys.executable, os.path.join(EXAMPLE, "app.py"),
                            os.path.join(LIB, "digits-v1.pt"), "--store", cls.store, "-n", "20"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cls.app_out = r.stdout

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def deja(self, *args):
        return subprocess.run([DEJA, "--store", self.store] + list(args), capture_output=True,
                              text=True)

    def test_example_torch__app_records_seed_and_torch_environment(self):
        self.assertEqual(len(self.app_out.splitlines()), 20)
        with deja.Store(self.store) as st:
            infos = list(st.ls(model="digits"))
            self.assertEqual(len(infos), 20)
            t = st.get(infos[0].id)
        self.assertIn("dropout", t.seeds)
        self.assertEqual(t.outputs["probs"].shape, (1, 10))
        self.assertEqual(t.digest, deja.digest_file(os.path.join(LIB, "digits-v1.pt")))
        libs = t.env["libs"]
        import torch
        self.assertEqual(libs["torch"], torch.__version__)
        self.assertEqual(libs["torch.threads"], "1")
        self.assertIn("torch.blas", libs)

    def test_example_torch__replay_same_on_recording_weights_and_reexport(self):
        for v in (1, 2):
            r = self.deja("replay", "--model", spec(v))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("20 same", r.stdout)

    def test_example_torch__half_cast_is_close_retrained_flips_labels(self):
        r = self.deja("replay", "--atol", "0.01", "--model", spec(3))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("20 close", r.stdout)
        # Replayed on 2 intra-op threads: the runner says so, and the
        # divergence names it among its likely causes.
        r = self.deja("replay", "--model", spec(4, "--threads", "2"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # A 3 is read as another digit (8 mostly, the bug's label; on two
        # threads of a loaded machine a borderline one may come out 9).
        self.assertRegex(r.stdout, r"label 3 → [0-9]")
        self.assertIn("library torch.threads: '1' recorded, '2' now", r.stdout)
        self.assertNotIn("library numpy", r.stdout)  # the runner's libraries are compared

    def test_example_torch__bisect_names_the_retrained_version(self):
        r = self.deja("bisect", "--atol", "0.01", spec(1), spec(2), spec(3), spec(4), spec(5))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("first bad version: " + spec(4), r.stdout)


if __name__ == "__main__":
    unittest.main()
