"""deja.run_model: a Python model served over the exec runner protocol to
the real deja binary. The ctx round trip (inputs of several dtypes,
params, seed, batched RNG draws, clock, outputs), failures (ctx.fail, an
exception, a model that cannot open), print() not corrupting the stream,
and traces recorded by deja.Tracer replaying `same` through the runner.
Run by ctest (test_py_runner)."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

import deja

DEJA = os.environ.get("DEJA_BIN", "deja")

RUNNER = textwrap.dedent('''
    import sys
    import numpy as np
    import deja

    def infer(ctx):
        mode = ctx.params.get("mode", "ok")
        print("infer called, mode", mode)            # must not corrupt the protocol
        if mode == "raise":
            raise ValueError("bad request")
        if mode == "fail":
            ctx.fail("refused: " + ctx.inputs["text"])
            return
        x = ctx.inputs["x"]
        assert not x.flags.writeable and x.dtype == np.int32, (x.dtype, x.flags)
        seed = ctx.seed("numpy")
        draws = ctx.rng("noise", 3)
        assert len(draws) == 3 and ctx.rng("noise") >= 0
        t = ctx.now()
        noise = np.random.default_rng(seed).integers(0, 100, size=x.shape)
        ctx.output("y", (x * ctx.params.get("scale", 1.0) + noise).astype(np.float32))
        ctx.output("draws", np.array(draws, dtype=np.uint64))
        return {"echo": ctx.inputs["text"].upper(), "t": np.int64(t)}

    deja.run_model(infer, name="pyecho", version="2", digest="c0ffee")
''')

CHECKPOINTS = textwrap.dedent('''
    import sys
    import numpy as np
    import deja

    diverge = int(sys.argv[1]) if len(sys.argv) > 1 else -1
    produced = []

    def infer(ctx):
        x = np.arange(6, dtype=np.float32)
        for k in range(4):
            x = x * 2 + (1e-3 if k >= diverge >= 0 else 0)
            if ctx.checkpoint("layer%d" % k, x):
                produced.append(k)
                print("stopped at", k)
                return
        ctx.output("y", x)

    deja.run_model(infer, name="pyck", version="1")
''')

BROKEN = textwrap.dedent('''
    import deja

    class Model:
        def open(self, argv):
            raise FileNotFoundError("no weights at %s" % argv[0])
        def infer(self, ctx):
            pass

    deja.run_model(Model)
''')


def i32(a):
    a = np.asarray(a, dtype=np.int32)
    return {"dtype": "i32", "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode()}


class RunnerCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="deja-pyrunner-")
        cls.runner = os.path.join(cls.tmp.name, "runner.py")
        with open(cls.runner, "w") as f:
            f.write(RUNNER)
        cls.ckpt = os.path.join(cls.tmp.name, "ckpt.py")
        with open(cls.ckpt, "w") as f:
            f.write(CHECKPOINTS)
        cls.broken = os.path.join(cls.tmp.name, "broken.py")
        with open(cls.broken, "w") as f:
            f.write(BROKEN)
        cls.spec = "exec:%s %s" % (sys.executable, cls.runner)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def deja(self, store, *args, stdin=None):
        return subprocess.run([DEJA, "--store", store] + list(args), capture_output=True,
                              text=True, input=stdin)

    def store(self, name):
        return os.path.join(self.tmp.name, name)

    def test_py_runner__ctx_round_trip_records_and_replays_same(self):
        st = self.store("rt.store")
        reqs = "".join(json.dumps(r) + "\n" for r in [
            {"inputs": {"x": i32([[1, 2], [3, 4]]), "text": "hello"}, "params": {"scale": 2.5}},
            {"inputs": {"x": i32([7]), "text": "again"}, "params": {"scale": 1}},
        ])
        r = self.deja(st, "run", "--model", self.spec, stdin=reqs)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("infer called", r.stderr)  # the runner's stdout went to stderr
        with deja.Store(st) as s:
            traces = [s.get(i.id) for i in s.ls()]
        self.assertEqual(len(traces), 2)
        t = [t for t in traces if t.inputs["text"] == "hello"][0]
        self.assertEqual((t.model, t.version, t.digest), ("pyecho", "2", bytes.fromhex("c0ffee")))
        self.assertEqual(t.outputs["echo"], "HELLO")
        rng = np.random.default_rng(t.seeds["numpy"]).integers(0, 100, size=(2, 2))
        np.testing.assert_array_equal(t.outputs["y"], np.array([[1, 2], [3, 4]]) * 2.5 + rng)
        self.assertEqual(len(t.rng["noise"][1]), 4)  # 3 at once, then 1
        np.testing.assert_array_equal(t.outputs["draws"], t.rng["noise"][1][:3])
        self.assertEqual(int(t.outputs["t"]), t.clock_ns[0])
        self.assertEqual(t.env["libs"].get("python") is not None, True)
        r = self.deja(st, "replay", "--model", self.spec)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("2 same", r.stdout)

    def test_py_runner__checkpoints_recorded_compared_and_stopped(self):
        st = self.store("ck.store")
        spec = "exec:%s %s" % (sys.executable, self.ckpt)
        r = self.deja(st, "run", "--model", spec, "--checkpoints", "all",
                      stdin='{"inputs": {"x": "1"}}\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.deja(st, "show", "--json", "0")
        self.assertEqual([c["name"] for c in json.loads(r.stdout)["checkpoints"]],
                         ["layer0", "layer1", "layer2", "layer3"])
        r = self.deja(st, "replay", "--model", spec)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("4 of 4 checkpoints bit-identical", r.stdout)
        r = self.deja(st, "replay", "--model", spec + " 2", "--json")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        ck = json.loads(r.stdout.splitlines()[0])["checkpoints"]
        self.assertEqual((ck["first"]["name"], ck["identical"]), ("layer2", 2))
        r = self.deja(st, "replay", "--model", spec + " 1", "--stop-at-first")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("stopped at 1", r.stderr)  # the runner was told, and returned
        self.assertIn("first divergence: layer1", r.stdout)
        # Recorded without checkpoints: the runner is told to send none.
        st2 = self.store("ck2.store")
        r = self.deja(st2, "run", "--model", spec, stdin='{"inputs": {"x": "1"}}\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.deja(st2, "show", "--json", "0")
        self.assertEqual(json.loads(r.stdout)["checkpoints"], [])

    def test_py_runner__failures_fail_their_trace_only(self):
        st = self.store("fail.store")
        reqs = "".join(json.dumps(r) + "\n" for r in [
            {"inputs": {"x": i32([1]), "text": "a"}, "params": {"mode": "raise"}},
            {"inputs": {"x": i32([1]), "text": "b"}, "params": {"mode": "fail"}},
            {"inputs": {"x": i32([1]), "text": "c"}},
        ])
        r = self.deja(st, "run", "--model", self.spec, stdin=reqs)
        self.assertIn("ValueError: bad request", r.stderr)  # the traceback, passed through
        with deja.Store(st) as s:
            errors = sorted(i.error for i in s.ls(status="error"))
            ok = list(s.ls(status="ok"))
        self.assertEqual(len(errors), 2, errors)
        self.assertTrue(errors[0].endswith("ValueError: bad request"), errors)
        self.assertTrue(errors[1].endswith("refused: b"), errors)
        self.assertEqual(len(ok), 1)

    def test_py_runner__a_model_that_cannot_open_says_why(self):
        st = self.store("rt2.store")
        with deja.Tracer(st) as t:
            with t.span("Model", "") as s:
                s.input("x", "y")
        r = self.deja(st, "replay", "--model", "exec:%s %s /nowhere.pt" % (sys.executable,
                                                                           self.broken))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("FileNotFoundError: no weights at /nowhere.pt", r.stderr)

    def test_py_runner__tracer_traces_replay_same_through_the_runner(self):
        st = self.store("app.store")
        with deja.Tracer(st) as t:
            for k in range(3):
                x = np.arange(4, dtype=np.int32).reshape(2, 2) + k
                with t.span("pyecho", "2", digest="c0ffee") as s:
                    s.input("x", x)
                    s.input("text", "app %d" % k)
                    s.param("scale", 0.5)
                    seed = s.seed("numpy")
                    draws = s.rng("noise", 3)
                    s.rng("noise")
                    now = s.now()
                    noise = np.random.default_rng(seed).integers(0, 100, size=x.shape)
                    s.output("y", (x * 0.5 + noise).astype(np.float32))
                    s.output("draws", np.array(draws, dtype=np.uint64))
                    s.output("echo", "APP %d" % k)
                    s.output("t", np.int64(now))
        r = self.deja(st, "replay", "--model", self.spec)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 same", r.stdout)


if __name__ == "__main__":
    unittest.main()
