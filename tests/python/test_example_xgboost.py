"""examples/xgboost end to end through the real deja binary: record loan
applicants through the XGBoost plugin on model file v1, replay them on the
same trees saved in another format (same, although the digest differs),
on the retrained v3 (diverged, labels flip), and bisect the four model
files (names v3). Run by ctest (test_example_xgboost)."""

import json
import os
import subprocess
import tempfile
import unittest

DEJA = os.environ.get("DEJA_BIN", "deja")
LIB = os.path.join(os.environ.get("DEJA_BUILD_DIR", "build"), "lib")


def spec(v):
    return "credit-xgb:" + os.path.join(LIB, "credit-" + v)


@unittest.skipUnless(os.path.exists(os.path.join(LIB, "credit-xgb.so")), "XGBoost not built")
class XGBoostExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="deja-xgb-")
        cls.store = os.path.join(cls.tmp.name, "x.store")
        with open(os.path.join(LIB, "credit-requests.jsonl")) as f:
            cls.requests = [next(f) for _ in range(40)]
        cls.req = os.path.join(cls.tmp.name, "req.jsonl")
        with open(cls.req, "w") as f:
            f.writelines(cls.requests)
        r = cls.deja("run", "--model", spec("v1.json"), "--requests", cls.req)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def deja(cls, *args):
        return subprocess.run([DEJA, "--store", cls.store] + list(args), capture_output=True,
                              text=True)

    def test_example_xgboost__recorded_with_the_model_file_digest(self):
        r = self.deja("ls", "--json")
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(len(rows), 40)
        self.assertTrue(all(row["model"]["name"] == "credit-risk" for row in rows), rows[0])
        r = self.deja("show", rows[0]["id"], "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        trace = json.loads(r.stdout)
        self.assertIn("scores", json.dumps(trace["outputs"]))

    def test_example_xgboost__same_trees_in_another_file_replay_same(self):
        for v in ("v1.json", "v2.ubj"):
            r = self.deja("replay", "--model", spec(v))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("40 same", r.stdout)

    def test_example_xgboost__retrained_model_flips_labels(self):
        r = self.deja("replay", "--model", spec("v3.json"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("diverged", r.stdout)
        self.assertRegex(r.stdout, r"label [01] → [01]")

    def test_example_xgboost__bisect_names_the_retrained_file(self):
        r = self.deja("bisect", spec("v1.json"), spec("v2.ubj"), spec("v3.json"), spec("v4.json"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("first bad version: " + spec("v3.json"), r.stdout)

    def test_example_xgboost__missing_model_file_is_one_line_exit_2(self):
        r = self.deja("replay", "--model", spec("v9.json"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("credit-v9.json", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
