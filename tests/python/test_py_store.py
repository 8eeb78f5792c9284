"""The Python package's reading side: deja.Store, ls filters and paging,
get by prefix, payloads as read-only numpy views. Run by ctest
(python_store)."""

import datetime as dt
import os
import tempfile
import unittest

import numpy as np

import deja


class StoreCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="deja-pystore-")
        cls.path = os.path.join(cls.tmp.name, "s.store")
        cls.ids = []
        with deja.Tracer(cls.path) as t:
            for i in range(40):
                with t.span("m%d" % (i % 2), str(i % 4)) as s:
                    s.input("x", np.full((2, 3), i, dtype=np.float32))
                    s.param("i", i)
                    s.tag("parity", "even" if i % 2 == 0 else "odd")
                    if i % 10 == 9:
                        s.fail("every tenth fails")
                    s.output("y", "out %d" % i)
                    cls.ids.append(s.id)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_py_store__ls_streams_newest_first_across_pages(self):
        with deja.Store(self.path) as st:
            st.PAGE = 3  # many pages, some within one millisecond
            listed = [i.id for i in st.ls()]
            self.assertEqual(listed, sorted(self.ids, reverse=True))
            self.assertEqual([i.id for i in st], listed)
            self.assertEqual([i.id for i in st.ls(limit=7)], listed[:7])

    def test_py_store__ls_filters(self):
        with deja.Store(self.path) as st:
            st.PAGE = 4
            self.assertEqual(len(list(st.ls(model="m0"))), 20)
            self.assertEqual(len(list(st.ls(model="m1", version=3))), 10)
            errors = list(st.ls(status="error"))
            self.assertEqual(len(errors), 4)
            self.assertTrue(all(e.error == "every tenth fails" for e in errors))
            odd = list(st.ls(tags={"parity": "odd"}, limit=5))
            self.assertEqual(len(odd), 5)
            self.assertTrue(all(i.tags["parity"] == "odd" for i in odd))
            self.assertEqual(len(list(st.ls(since=dt.timedelta(hours=1)))), 40)
            self.assertEqual(list(st.ls(until=dt.datetime(2000, 1, 1))), [])
            self.assertEqual(list(st.ls(since=dt.timedelta(seconds=-3600))), [])
            with self.assertRaises(ValueError):
                list(st.ls(status="maybe"))
            info = next(iter(st.ls(limit=1)))
            self.assertEqual(info.input_info["x"].shape, (2, 3))
            self.assertEqual(info.input_info["x"].dtype, "f32")
            self.assertIsInstance(info.start, dt.datetime)

    def test_py_store__get_by_prefix_with_readonly_views(self):
        with deja.Store(self.path) as st:
            idx = 17
            full = self.ids[idx]
            n = next(n for n in range(1, 27)
                     if sum(i.startswith(full[:n]) for i in self.ids) == 1)
            tr = st.get(full[:n])
            self.assertEqual(tr.id, self.ids[idx])
            x = tr.inputs["x"]
            self.assertEqual(x.dtype, np.float32)
            np.testing.assert_array_equal(x, np.full((2, 3), idx, dtype=np.float32))
            self.assertFalse(x.flags.writeable)
            with self.assertRaises(ValueError):
                x[0, 0] = 1
            self.assertFalse(x.flags.owndata)  # a view of the decoded trace
            self.assertEqual(tr.outputs["y"], "out %d" % idx)
            self.assertEqual(tr.params, {"i": float(idx)})
            self.assertEqual(tr.tags, {"parity": "odd"})
            self.assertIn("cores", tr.env)
            del tr, st  # the view keeps the trace's memory alive
            np.testing.assert_array_equal(x, np.full((2, 3), idx, dtype=np.float32))

    def test_py_store__values_decoded(self):
        """values(): numbers in their shape, f16 and bf16 decoded, read-only;
        text and bytes as they are."""
        try:
            import torch
        except ImportError:
            self.skipTest("bf16 comes from torch (python3-torch)")
        path = os.path.join(self.tmp.name, "values.store")
        bf16 = torch.tensor([[1.0, -3.0], [float("nan"), float("inf")]], dtype=torch.bfloat16)
        with deja.Tracer(path) as t:
            with t.span("m", "1") as s:
                s.input("h", np.array([[0.5, -2.0], [np.inf, 65504]], dtype=np.float16))
                s.input("n", np.arange(6, dtype=np.int64).reshape(3, 2))
                s.output("b", bf16)
                s.output("text", "hello")
                s.output("raw", b"\x00\x01")
                tid = s.id
        with deja.Store(path) as st:
            tr = st.get(tid)
            b = tr.values("b")
            self.assertEqual(b.dtype, np.float32)
            self.assertEqual(b.shape, (2, 2))
            self.assertEqual(b[0, 0], 1.0)
            self.assertEqual(b[0, 1], -3.0)
            self.assertTrue(np.isnan(b[1, 0]))
            self.assertEqual(b[1, 1], np.inf)
            self.assertFalse(b.flags.writeable)
            h = tr.values("h")
            self.assertEqual(h.dtype, np.float16)
            np.testing.assert_array_equal(h, [[0.5, -2.0], [np.inf, 65504]])
            self.assertFalse(h.flags.writeable)
            n = tr.values("n")
            self.assertFalse(n.flags.owndata)  # a view, no copy
            np.testing.assert_array_equal(n, np.arange(6).reshape(3, 2))
            every = tr.values()
            self.assertEqual(sorted(every), ["b", "h", "n", "raw", "text"])
            self.assertEqual(every["text"], "hello")
            self.assertEqual(every["raw"], b"\x00\x01")

    def test_py_store__missing_ambiguous_and_absent_store(self):
        with deja.Store(self.path) as st:
            with self.assertRaises(KeyError):
                st.get("7ZZZZZ")
            with self.assertRaises(deja.Error):
                st.get(self.ids[0][:2])  # every id shares its first characters
            with self.assertRaises(ValueError):
                st.get("")
        with self.assertRaises(deja.Error):
            deja.Store(os.path.join(self.tmp.name, "absent.store"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "absent.store")))


if __name__ == "__main__":
    unittest.main()
