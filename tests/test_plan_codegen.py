"""The generated run function of a Plan: same results, errors and memory behaviour as the slot walk."""
import gc
import threading
import types
import weakref

import numpy as np
import pytest

import ortlite as ort
from ortlite import zoo
from ortlite.errors import Fail, RuntimeException
from ortlite.plan import Plan


def node(name, op, inputs, outputs):
    return types.SimpleNamespace(name=name, op_type=op, inputs=list(inputs), outputs=list(outputs), implicit_inputs=[])


def plan_of(specs, inputs, outputs, constants=None):
    bound = [(node(n, op, i, o), fn, "CPUExecutionProvider") for n, op, fn, i, o in specs]
    return Plan(bound, inputs, outputs, constants or {})


def test_a_plan_runs_as_one_generated_function():
    p = plan_of([("a", "Add", np.add, ["x", "w"], ["t"]), ("n", "Neg", np.negative, ["t"], ["y"])],
                ["x"], ["y", "t"], {"w": np.float32(2)})
    assert p.source.startswith("def run(inputs):") and "del v" in p.source
    x = np.arange(3, dtype=np.float32)
    y, t = p.run([x])
    np.testing.assert_array_equal(y, -(x + 2))
    np.testing.assert_array_equal(t, x + 2)
    assert [a.tolist() for a in p.run([x], fetch=[p.slot_of["t"]])] == [(x + 2).tolist()]
    assert [a.tolist() for a in p.run([x])] == [a.tolist() for a in p.run_slots([x])]


def test_values_are_released_after_their_last_reader():
    refs = {}

    def big(x):
        v = np.ones(1000, np.float32)
        refs["big"] = weakref.ref(v)
        return v

    def check(x):
        gc.collect()
        refs["alive_at_end"] = refs["big"]() is not None
        return x

    p = plan_of([("b", "Big", big, ["x"], ["t"]), ("s", "Sum", np.sum, ["t"], ["u"]),
                 ("c", "Check", check, ["u"], ["y"])], ["x"], ["y"])
    p.run([np.zeros(1)])
    assert refs["alive_at_end"] is False


def test_a_kernel_error_names_the_node_and_its_inputs():
    def boom(a, b):
        raise ValueError("bad")

    p = plan_of([("ok", "Neg", np.negative, ["x"], ["t"]), ("bad", "Boom", boom, ["t", "w"], ["y"])],
                ["x"], ["y"], {"w": np.zeros((2, 3), np.int64)})
    with pytest.raises(RuntimeException) as e:
        p.run([np.zeros(4, np.float32)])
    msg = str(e.value)
    assert "Boom node. Name:'bad'" in msg and "ValueError: bad" in msg
    assert "t float32[4]" in msg and "w int64[2, 3]" in msg


def test_fail_and_runtime_exception_pass_untouched():
    for exc in (Fail("stop"), RuntimeException("as is")):
        def k(x, exc=exc):
            raise exc

        p = plan_of([("n", "K", k, ["x"], ["y"])], ["x"], ["y"])
        with pytest.raises(type(exc)) as e:
            p.run([np.zeros(1)])
        assert e.value is exc


def test_multi_output_and_optional_semantics():
    two = lambda x: (x + 1, x + 2)  # noqa: E731
    p = plan_of([("s", "Two", two, ["x"], ["a", "b"]), ("add", "Add", np.add, ["a", "b"], ["y"])], ["x"], ["y", "a"])
    y, a = p.run([np.float32(1)])
    assert y == 5 and a == 2
    # fewer results than outputs: an unused trailing output stays None
    one = lambda x: (x,)  # noqa: E731
    p = plan_of([("s", "One", one, ["x"], ["a", ""]), ("n", "Neg", np.negative, ["a"], ["y"])], ["x"], ["y"])
    assert p.run([np.float32(3)]) == [-3]
    # ... but one the model reads is an error naming it
    p = plan_of([("s", "One", one, ["x"], ["a", "b"]), ("add", "Add", np.add, ["a", "b"], ["y"])], ["x"], ["y"])
    with pytest.raises(RuntimeException, match=r"returned 1 output\(s\) but the model reads \['b'\]"):
        p.run([np.float32(3)])
    # a single-output kernel returning a tuple stores its first value
    p = plan_of([("s", "T", lambda x: (x * 2,), ["x"], ["y"])], ["x"], ["y"])
    assert p.run([np.float32(3)]) == [6]
    # a missing optional input reads None
    seen = []
    p = plan_of([("s", "Opt", lambda x, o, z: seen.append(o) or x, ["x", "", "x"], ["y"])], ["x"], ["y"])
    p.run([1])
    assert seen == [None]


@pytest.mark.parametrize("intra_op", [1, 0])
def test_concurrent_runs_of_one_session(intra_op):
    """Bit-equal with one intra-op thread; with the default (every core) a run alone uses all of them
    and overlapping runs share them (ortlite.blas), and OpenBLAS's sums depend on its thread count:
    equal within float rounding then."""
    m = zoo.demo()
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = zoo.example_inputs(m)
    ref = sess.run(None, feeds)
    errors = []
    same = np.array_equal if intra_op == 1 else (lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6))

    def worker():
        for _ in range(50):
            for a, b in zip(sess.run(None, feeds), ref):
                if not same(a, b):
                    errors.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sess._plan.source is not None


def test_generated_and_slot_runs_agree_on_a_zoo_model():
    m = zoo.bert_base(layers=1, hidden=64, heads=2, seq=8, vocab=100)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = zoo.example_inputs(m)
    plan = sess._plan
    vals = [feeds.get(n) for n in plan.input_names]
    for a, b in zip(plan.run(vals), plan.run_slots(vals)):
        np.testing.assert_array_equal(a, b)
