"""The Python package's recording side: deja.Tracer and its spans.
Run by ctest (python_tracer) with PYTHONPATH=build/python and DEJA_BIN."""

import os
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

import deja

DEJA_BIN = os.environ.get("DEJA_BIN", "deja")


class TracerCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="deja-pytest-")
        self.path = os.path.join(self.tmp.name, "t.store")

    def tearDown(self):
        self.tmp.cleanup()

    def only(self, **filters):
        with deja.Store(self.path) as st:
            infos = list(st.ls(**filters))
            self.assertEqual(len(infos), 1, infos)
            return st.get(infos[0].id)

    def test_py_tracer__every_dtype_round_trips_without_loss(self):
        arrays = {
            "f16": np.array([1.5, -2.25, 65504], dtype=np.float16),
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
            "f64": np.array([[np.pi, -np.e]]),
            "i8": np.array([-128, 127], dtype=np.int8),
            "i16": np.array([-32768, 5], dtype=np.int16),
            "i32": np.array([-(2**31), 7], dtype=np.int32),
            "i64": np.array([-(2**63), 2**62], dtype=np.int64),
            "u8": np.array([0, 255], dtype=np.uint8),
            "u16": np.array([65535], dtype=np.uint16),
            "u32": np.array([2**32 - 1], dtype=np.uint32),
            "u64": np.array([2**64 - 1], dtype=np.uint64),
            "bool": np.array([True, False, True]),
            "scalar": np.float64(2.5),
            "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
            "bigendian": np.array([1, 2, 3], dtype=">i4"),
            "list": [1.0, 2.0],
        }
        with deja.Tracer(self.path) as t:
            with t.span("dtypes", "1") as s:
                for name, a in arrays.items():
                    s.input(name, a)
                s.input("text", "héllo")
                s.input("raw", b"\x00\x01\xff")
                s.input("ba", bytearray(b"xyz"))
                s.output("out", np.zeros((0, 3), dtype=np.float32))
        tr = self.only()
        expect_dtype = {"scalar": "f64", "strided": "i32", "bigendian": "i32", "list": "f64"}
        for name, a in arrays.items():
            want = np.asarray(a)
            got = tr.inputs[name]
            self.assertEqual(tr.dtypes[name], expect_dtype.get(name, name))
            self.assertEqual(got.shape, want.shape, name)
            np.testing.assert_array_equal(got, want, err_msg=name)
            self.assertFalse(got.flags.writeable, name)
        self.assertEqual(tr.inputs["text"], "héllo")
        self.assertEqual(tr.dtypes["text"], "utf8")
        self.assertEqual(tr.inputs["raw"], b"\x00\x01\xff")
        self.assertEqual(tr.inputs["ba"], b"xyz")
        self.assertEqual(tr.outputs["out"].shape, (0, 3))

    def test_py_tracer__torch_tensors_including_bfloat16(self):
        import torch
        x = torch.tensor([[1.0, -2.5], [3.25, 1e30]], dtype=torch.bfloat16)
        h = torch.tensor([0.5, 1.5], dtype=torch.float16)
        with deja.Tracer(self.path) as t:
            with t.span("torchy", "1") as s:
                s.input("bf", x)
                s.input("half", h)
                s.input("t", torch.arange(6).reshape(2, 3).t())  # not contiguous
                s.output("grad", torch.ones(2, requires_grad=True) * 2)
        tr = self.only()
        self.assertEqual(tr.dtypes["bf"], "bf16")
        self.assertTrue(torch.equal(tr.torch("bf"), x))
        self.assertEqual(tr.dtypes["half"], "f16")
        self.assertTrue(torch.equal(tr.torch("half"), h))
        np.testing.assert_array_equal(tr.inputs["t"], np.arange(6).reshape(2, 3).T)
        np.testing.assert_array_equal(tr.outputs["grad"], [2.0, 2.0])

    def test_py_tracer__unrecordable_values_raise_type_error(self):
        with deja.Tracer(self.path) as t:
            with t.span("m", "1") as s:
                with self.assertRaises(TypeError):
                    s.input("obj", object())
                with self.assertRaises(TypeError):
                    s.input("strs", np.array(["a", "b"]))
                with self.assertRaises(TypeError):
                    s.param("p", [1, 2])
                with self.assertRaises(TypeError):
                    s.input(3, "x")

    def test_py_tracer__params_seeds_rng_clock_tags_and_digest(self):
        with deja.Tracer(self.path) as t:
            with t.span("m", 3, digest="00ff10") as s:
                s.param("temperature", 0.7)
                s.param("top_k", 40)
                s.param("greedy", False)
                s.param("mode", "beam")
                s.param("np", np.float32(0.5))
                seed = s.seed("torch")
                self.assertEqual(s.seed("torch"), seed)
                draws = s.rng("dropout", 4)
                one = s.rng("dropout")
                now = s.now()
                s.tag("user", "alice")
                sid = s.id
        tr = self.only()
        self.assertEqual(tr.id, sid)
        self.assertEqual(tr.version, "3")
        self.assertEqual(tr.digest, b"\x00\xff\x10")
        self.assertEqual(tr.params, {"temperature": 0.7, "top_k": 40.0, "greedy": False,
                                     "mode": "beam", "np": 0.5})
        self.assertEqual(tr.seeds, {"torch": seed})
        self.assertEqual(tr.rng["dropout"][1], draws + [one])
        self.assertEqual(tr.clock_ns, [now])
        self.assertEqual(tr.tags, {"user": "alice"})
        libs = tr.env["libs"]
        self.assertEqual(libs["python"], "%d.%d.%d" % sys.version_info[:3])
        self.assertEqual(libs["numpy"], np.__version__)

    def test_py_tracer__checkpoints_as_the_tracer_selects(self):
        import json
        with deja.Tracer(self.path, checkpoints=["emb", "layer*"]) as t:
            with t.span("m", "1") as s:
                s.checkpoint("emb", np.arange(6, dtype=np.float32).reshape(2, 3))
                s.checkpoint("other", np.zeros(3))  # not selected: not kept
                s.checkpoint("layer1", np.array([1, 2], dtype=np.int64))
        with deja.Tracer(self.path, checkpoints_digest=True) as t:
            with t.span("d", "1") as s:
                s.checkpoint("x", np.array([1.0, float("nan"), 3.0], dtype=np.float32))
        show = lambda m: json.loads(subprocess.run(
            [DEJA_BIN, "--store", self.path, "show", "--json", self.only(model=m).id],
            capture_output=True, text=True, check=True).stdout)["checkpoints"]
        cks = show("m")
        self.assertEqual([(c["name"], c["dtype"], c["shape"]) for c in cks],
                         [("emb", "f32", [2, 3]), ("layer1", "i64", [2])])
        self.assertEqual(cks[0]["summary"]["mean"], 2.5)
        self.assertFalse(cks[0]["digest_only"])
        (x,) = show("d")
        self.assertTrue(x["digest_only"])
        self.assertNotIn("base64", x)
        self.assertEqual((x["summary"]["nan"], x["summary"]["min"], x["summary"]["max"]),
                         (1, 1.0, 3.0))
        with self.assertRaises(Exception):
            deja.Tracer(self.path, checkpoints="a b")

    def test_py_tracer__exception_is_an_error_trace_and_propagates(self):
        with deja.Tracer(self.path) as t:
            with self.assertRaisesRegex(ValueError, "bad input"):
                with t.span("m", "1") as s:
                    s.input("x", "text")
                    raise ValueError("bad input")
            with t.span("m", "2") as s:
                s.fail("refused: too long")
        with deja.Store(self.path) as st:
            errs = {i.version: i for i in st.ls(status="error")}
        self.assertEqual(errs["1"].error, "ValueError: bad input")
        self.assertEqual(errs["2"].error, "refused: too long")

    def test_py_tracer__decorator_records_args_result_and_seed(self):
        t = deja.Tracer(self.path)

        @t.trace("classify", "7")
        def classify(text, threshold=0.5, image=None):
            s = deja.current_span()
            rng = np.random.default_rng(s.seed("numpy"))
            return {"label": "pos" if rng.random() >= 0 else "neg",
                    "scores": np.array([0.1, 0.9], dtype=np.float32)}

        self.assertEqual(classify("great film", threshold=0.25)["label"], "pos")
        self.assertIsNone(deja.current_span())

        @t.trace("classify", "8")
        def broken(text):
            raise KeyError("vocab")

        with self.assertRaises(KeyError):
            broken("x")
        t.close()
        tr = self.only(version="7")
        self.assertEqual(tr.inputs, {"text": "great film"})
        self.assertEqual(tr.params, {"threshold": 0.25})
        self.assertEqual(tr.outputs["label"], "pos")
        self.assertIn("numpy", tr.seeds)
        self.assertEqual(self.only(version="8").error, "KeyError: 'vocab'")

    def test_py_tracer__threads_record_concurrently(self):
        t = deja.Tracer(self.path)
        errors = []

        def work(k):
            try:
                for i in range(150):
                    with t.span("threads", str(k)) as s:
                        s.input("x", np.full(64, i, dtype=np.int32))
                        s.output("y", "%d-%d" % (k, i))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t.close()
        self.assertEqual(errors, [])
        with deja.Store(self.path) as st:
            outs = sorted(st.get(i.id).outputs["y"] for i in st.ls())
        self.assertEqual(outs, sorted("%d-%d" % (k, i) for k in range(4) for i in range(150)))

    def test_py_tracer__flushed_at_exit_without_close(self):
        code = ("import deja\nt = deja.Tracer(%r)\n"
                "for i in range(50):\n"
                "    with t.span('atexit', '1') as s: s.input('i', str(i))\n") % self.path
        subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
        with deja.Store(self.path) as st:
            self.assertEqual(len(list(st.ls(model="atexit"))), 50)

    def test_py_tracer__redact_edits_drops_tensors_and_traces(self):
        seen = []

        def redact(side, name, dtype, data):
            seen.append((side, name, dtype))
            if name == "email":
                data[:] = b"*" * len(data)
                return None
            if name == "ssn":
                return False
            if name == "card":
                return b"[card]"
            if name == "secret":
                return deja.DROP_TRACE
            if name == "boom":
                raise RuntimeError("redactor bug")
            return None

        t = deja.Tracer(self.path, redact=redact)
        with t.span("r", "1") as s:
            s.input("email", "a@b.c")
            s.input("ssn", "123")
            s.input("card", "4111 1111 1111 1111")
            s.output("ok", "fine")
        with t.span("r", "2") as s:
            s.input("secret", "x")
        with t.span("r", "3") as s:
            s.input("boom", "x")
        t.flush()
        self.assertEqual(t.stats()["redacted"], 2)
        t.close()
        tr = self.only()
        self.assertEqual(tr.inputs, {"email": "*****", "card": "[card]"})
        self.assertEqual(tr.outputs, {"ok": "fine"})
        self.assertIn(("input", "email", "utf8"), seen)

    def test_py_tracer__sampling_keeps_errors_and_max_payload_truncates(self):
        with deja.Tracer(self.path, sample_rate=0.0, max_payload=8) as t:
            for _ in range(5):
                with t.span("s", "1") as s:
                    s.input("x", "y")
            with self.assertRaises(ZeroDivisionError):
                with t.span("s", "1") as s:
                    s.input("long", "0123456789abcdef")
                    1 / 0
        tr = self.only()
        self.assertEqual(tr.status, "error")
        self.assertEqual(tr.inputs["long"], "01234567")

    def test_py_tracer__closed_tracer_and_ended_span_refuse(self):
        t = deja.Tracer(self.path)
        s = t.span("m", "1")
        s.end()
        with self.assertRaises(deja.Error):
            s.input("x", "y")
        t.close()
        with self.assertRaises(deja.Error):
            t.span("m", "1")
        with self.assertRaises(ValueError):
            deja.Tracer(self.path, sample_rate=2)
        with self.assertRaises(deja.Error):
            deja.Tracer(self.path, queue_bytes=0)
        with deja.Tracer(self.path, queue_bytes=1 << 20) as t:
            with t.span("m", "1") as s:
                s.input("x", "y")

    def test_py_tracer__close_waits_for_open_spans(self):
        t = deja.Tracer(self.path)
        s = t.span("late", "1")
        t.close()
        s.input("x", "still recorded")
        s.end()
        self.assertEqual(self.only().inputs["x"], "still recorded")

    def test_py_tracer__cli_lists_what_python_recorded(self):
        with deja.Tracer(self.path) as t:
            with t.span("sentiment", "3") as s:
                s.input("text", "good")
                s.output("label", "pos")
        out = subprocess.run([DEJA_BIN, "--store", self.path, "ls"], check=True,
                             capture_output=True, text=True).stdout
        self.assertIn("sentiment@3", out)


if __name__ == "__main__":
    unittest.main()
