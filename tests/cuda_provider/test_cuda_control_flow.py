"""If / Loop / Scan whose bodies run on the CUDA provider, and sequences crossing devices, on the
numpy stand-in backend (fake_cuda.py): the control-flow node runs on the host, its body is
partitioned like any graph, values crossing into the body's CUDA nodes get copy steps inside the
body, and the body's outputs come back to the host at its boundary (onnxruntime's design)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ortlite
from ortlite import providers
from ortlite.partition import METADATA_ONLY_OPS

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


# ---- a stand-in backend that keeps 0-d values and moves sequences element by element -----------
@pytest.fixture
def cuda(fake_cuda):
    """The fake_cuda provider with a backend whose kernels check sequences too (each element of a
    list input must be on the device) and whose device copies keep 0-d arrays 0-d."""
    from cuda_provider.fake_cuda import FakeCudaBackend
    from partition import pretend_device as pd

    def dev(a):
        return np.array(np.asarray(a).view(np.ndarray)).view(pd.DeviceArray)

    def host(a):
        return np.array(a.view(np.ndarray))

    class Backend(FakeCudaBackend):
        def to_device(self, host_array):
            assert not isinstance(host_array, list), "sequences are copied element by element"
            self._alloc(np.asarray(host_array).nbytes)
            return dev(host_array)

        def to_host(self, value):
            assert isinstance(value, pd.DeviceArray), f"to_host of {type(value).__name__}"
            return host(value)

        def wrap_kernel(self, fn, node, kdef):
            hosts = set(kdef.host_inputs)
            meta = (node.domain, node.op_type) in METADATA_ONLY_OPS

            def check(k, a):
                if a is None or not hasattr(a, "dtype") or meta:
                    return
                on = isinstance(a, pd.DeviceArray)
                if k in hosts and on:
                    raise AssertionError(f"{node.op_type} '{node.name}': host-only input {k} is on the device")
                if k not in hosts and not on:
                    raise AssertionError(f"{node.op_type} '{node.name}': input {k} is on the host (copy missing)")

            def unwrap(a):
                if isinstance(a, list):
                    return [unwrap(x) for x in a]
                return a.view(np.ndarray) if isinstance(a, pd.DeviceArray) else a

            def wrap(r):
                if isinstance(r, list):
                    return [wrap(x) for x in r]
                return None if r is None else dev(r)

            def run(*args):
                for k, a in enumerate(args):
                    for x in (a if isinstance(a, list) else [a]):
                        check(k, x)
                pd._active.on = True
                try:
                    r = fn(*[unwrap(a) for a in args])
                finally:
                    pd._active.on = False
                return tuple(wrap(x) for x in r) if type(r) is tuple else wrap(r)

            return run

    class Provider(fake_cuda):
        backend_class = Backend

    providers.register_provider(Provider, priority=0)
    yield Provider


def _model(nodes, inputs, outputs, opset=17, inits=()):
    g = helper.make_graph(nodes, "main", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def _vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, shape)


def _run_both(model, feeds, opts=None):
    ref = ortlite.InferenceSession(model, opts, providers=[CPU]).run(None, feeds)
    sess = ortlite.InferenceSession(model, opts, providers=[CUDA, CPU])
    out = sess.run(None, feeds)
    assert len(ref) == len(out)
    for r, o in zip(ref, out):
        if isinstance(r, list):
            assert isinstance(o, list) and len(o) == len(r)
            for a, b in zip(r, o):
                assert type(b) is np.ndarray
                np.testing.assert_allclose(b, a, rtol=1e-6)
        else:
            assert type(o) is np.ndarray, type(o)
            assert o.shape == r.shape and o.dtype == r.dtype
            np.testing.assert_allclose(o, r, rtol=1e-6)
    return sess


def _where(sess):
    return {n.name: n.provider for n in sess.get_placement()}


# ---- If ------------------------------------------------------------------------------------------
def if_model():
    """s = Abs(s_in) on CUDA (a device value read as a shape inside a branch);
    then: Reshape(Relu(Add(x, y)), s); else: Reshape(Mul(Sub(x, y), x), s)."""
    then_g = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["t1"], name="then_add"),
         helper.make_node("Relu", ["t1"], ["t2"], name="then_relu"),
         helper.make_node("Reshape", ["t2", "s"], ["t_out"], name="then_reshape")],
        "then_branch", [], [_vi("t_out", F, None)])
    else_g = helper.make_graph(
        [helper.make_node("Sub", ["x", "y"], ["e1"], name="else_sub"),
         helper.make_node("Mul", ["e1", "x"], ["e2"], name="else_mul"),
         helper.make_node("Reshape", ["e2", "s"], ["e_out"], name="else_reshape")],
        "else_branch", [], [_vi("e_out", F, None)])
    nodes = [helper.make_node("Abs", ["s_in"], ["s"], name="shape_abs"),
             helper.make_node("If", ["c"], ["out"], name="if", then_branch=then_g, else_branch=else_g)]
    return _model(nodes, [_vi("c", B, []), _vi("x", F, [2, 3]), _vi("y", F, [2, 3]), _vi("s_in", I64, [2])],
                  [_vi("out", F, None)])


@pytest.mark.parametrize("cond", [True, False])
def test_if_body_on_cuda(cuda, cond):
    rng = np.random.default_rng(1)
    feeds = {"c": np.array(cond), "x": rng.standard_normal((2, 3)).astype(np.float32),
             "y": rng.standard_normal((2, 3)).astype(np.float32), "s_in": np.array([3, 2], np.int64)}
    sess = _run_both(if_model(), feeds)
    where = _where(sess)
    assert where["if"] == CPU
    for n in ("then_add", "then_relu", "then_reshape", "else_sub", "else_mul", "else_reshape", "shape_abs"):
        assert where[n] == CUDA, (n, where)
    rep = sess.get_placement()
    # the branch result comes back to the host at the branch's boundary; the shape read on the host
    outs = {(c.value, c.src, c.dst) for c in rep.copies}
    assert ("t2", "cuda", "cpu") not in outs
    assert any(c.dst == "cpu" and c.reader == "outputs of 'then_branch'" for c in rep.copies)
    assert any(c.value == "s" and c.dst == "cpu" for c in rep.copies)
    # x, y to the device, s to the host, the result back: each counted
    assert rep.last_run_copies == 5, rep.summary()


# ---- Loop ----------------------------------------------------------------------------------------
def loop_model():
    """acc = acc * x + float(i); cond = sum(acc) < limit; scan out relu(acc) (all on CUDA but Cast's
    host input); outputs the final acc and the stacked scan output."""
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["i_f"], name="b_cast", to=F),
         helper.make_node("Mul", ["acc_in", "x"], ["m"], name="b_mul"),
         helper.make_node("Add", ["m", "i_f"], ["acc_out"], name="b_add"),
         helper.make_node("ReduceSum", ["acc_out"], ["tot"], name="b_sum", keepdims=0),
         helper.make_node("Less", ["tot", "limit"], ["cond_out"], name="b_less"),
         helper.make_node("Relu", ["acc_out"], ["scan_out"], name="b_relu")],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc_in", F, [2, 2])],
        [_vi("cond_out", B, []), _vi("acc_out", F, [2, 2]), _vi("scan_out", F, [2, 2])])
    nodes = [helper.make_node("Loop", ["M", "", "acc0"], ["acc", "scans"], name="loop", body=body)]
    return _model(nodes, [_vi("M", I64, []), _vi("acc0", F, [2, 2]), _vi("x", F, [2, 2]), _vi("limit", F, [])],
                  [_vi("acc", F, [2, 2]), _vi("scans", F, None)])


@pytest.mark.parametrize("limit", [1e6, 6.0])
def test_loop_body_on_cuda(cuda, limit):
    feeds = {"M": np.array(5, np.int64), "acc0": np.array([[1, -2], [0.5, 1]], np.float32),
             "x": np.array([[1.5, 0.5], [-1, 2]], np.float32), "limit": np.array(limit, np.float32)}
    sess = _run_both(loop_model(), feeds)
    where = _where(sess)
    assert where["loop"] == CPU
    for n in ("b_cast", "b_mul", "b_add", "b_sum", "b_less", "b_relu"):
        assert where[n] == CUDA, (n, where)
    rep = sess.get_placement()
    back = {c.value for c in rep.copies if c.dst == "cpu" and c.reader == "outputs of 'body'"}
    assert back == {"cond_out", "acc_out", "scan_out"}
    # outer values the body reads on the device (x, limit) go there once per run, before the Loop
    assert {c.value for c in rep.copies if c.reader == "loop"} == {"x", "limit"}
    if limit > 1e5:  # 5 iterations: i and acc_in in, cond/acc/scan out, each iteration
        assert rep.last_run_copies == 2 + 5 * 5, rep.summary()


# ---- Scan ----------------------------------------------------------------------------------------
def scan_model():
    """state += x_t * w; y_t = tanh(state) (CUDA); scan over axis 0, the second scan output reversed."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "w"], ["xw"], name="s_mul"),
         helper.make_node("Add", ["st_in", "xw"], ["st_out"], name="s_add"),
         helper.make_node("Tanh", ["st_out"], ["y_t"], name="s_tanh"),
         helper.make_node("Neg", ["y_t"], ["z_t"], name="s_neg")],
        "scan_body", [_vi("st_in", F, [3]), _vi("x_t", F, [3])],
        [_vi("st_out", F, [3]), _vi("y_t", F, [3]), _vi("z_t", F, [3])])
    nodes = [helper.make_node("Relu", ["xs_in"], ["xs"], name="pre_relu"),
             helper.make_node("Scan", ["st0", "xs"], ["st", "ys", "zs"], name="scan", body=body,
                              num_scan_inputs=1, scan_output_directions=[0, 1])]
    return _model(nodes, [_vi("st0", F, [3]), _vi("xs_in", F, [4, 3]), _vi("w", F, [3])],
                  [_vi("st", F, [3]), _vi("ys", F, [4, 3]), _vi("zs", F, [4, 3])])


def test_scan_body_on_cuda(cuda):
    rng = np.random.default_rng(2)
    feeds = {"st0": rng.standard_normal(3).astype(np.float32),
             "xs_in": rng.standard_normal((4, 3)).astype(np.float32), "w": rng.standard_normal(3).astype(np.float32)}
    sess = _run_both(scan_model(), feeds)
    where = _where(sess)
    assert where["scan"] == CPU
    for n in ("pre_relu", "s_mul", "s_add", "s_tanh", "s_neg"):
        assert where[n] == CUDA, (n, where)
    rep = sess.get_placement()
    # pre_relu's device output goes to the host Scan node; the body copies its outputs back
    assert any(c.value == "xs" and c.dst == "cpu" and c.reader == "scan" for c in rep.copies)
    assert {c.value for c in rep.copies if c.reader == "outputs of 'scan_body'"} == {"st_out", "y_t", "z_t"}


def test_cpu_only_sessions_add_no_body_copies():
    for model in (if_model(), loop_model(), scan_model()):
        sess = ortlite.InferenceSession(model, providers=[CPU])
        assert sess.get_placement().copies == []


# ---- sequences crossing devices --------------------------------------------------------------------
def sequence_model():
    """a = Abs(x), b = Neg(x) (CUDA) -> SequenceConstruct (host) -> Identity (CUDA: a sequence on the
    device) -> SequenceAt(1) (host) -> Relu (CUDA); the device sequence is also a graph output."""
    nodes = [helper.make_node("Abs", ["x"], ["a"], name="abs"),
             helper.make_node("Neg", ["x"], ["b"], name="neg"),
             helper.make_node("SequenceConstruct", ["a", "b"], ["seq"], name="construct"),
             helper.make_node("Identity", ["seq"], ["seq_dev"], name="ident"),
             helper.make_node("SequenceAt", ["seq_dev", "one"], ["b2"], name="at"),
             helper.make_node("Relu", ["b2"], ["y"], name="relu")]
    seq_t = helper.make_tensor_sequence_value_info("seq_dev", F, [2, 3])
    return _model(nodes, [_vi("x", F, [2, 3])], [_vi("y", F, [2, 3]), seq_t],
                  inits=[helper.make_tensor("one", I64, [], [1])])


def test_sequence_round_trips_element_wise(cuda):
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    opts = ortlite.SessionOptions()
    opts.graph_optimization_level = ortlite.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the Identity
    sess = _run_both(sequence_model(), {"x": x}, opts)
    where = _where(sess)
    assert where["construct"] == CPU and where["at"] == CPU
    assert where["ident"] == CUDA and where["relu"] == CUDA
    rep = sess.get_placement()
    moves = {(c.value, c.dst) for c in rep.copies}
    assert ("seq", "cuda") in moves and ("seq_dev", "cpu") in moves
    # x to the device; a, b to the host; seq (2 elements) to the device; seq_dev (2) to the host;
    # b2 to the device; outputs: y and the 2-element sequence output
    assert rep.last_run_copies == 1 + 2 + 2 + 2 + 1 + 1 + 2, rep.summary()


def test_backend_sequences():
    """The CuPy backend itself: a list of device arrays is on the device and is copied per element."""
    from ortlite.providers.cuda import _CupyBackend

    class Arr(np.ndarray):
        pass

    class CP:
        ndarray = Arr

        @staticmethod
        def asarray(a):
            return np.array(a).view(Arr)

        @staticmethod
        def asnumpy(a, stream=None):
            return np.array(a.view(np.ndarray))

    class Stream:
        def synchronize(self):
            pass

    import contextlib

    b = object.__new__(_CupyBackend)
    b.cp, b.stream = CP, Stream()
    b.active = contextlib.nullcontext
    host = [np.zeros(2, np.float32), np.ones((1, 3), np.float32)]
    dev = b.to_device(host)
    assert isinstance(dev, list) and all(type(d) is Arr for d in dev)
    assert [d.shape for d in dev] == [(2,), (1, 3)]
    assert b.is_device_array(dev) and not b.is_device_array(host) and not b.is_device_array([])
    back = b.to_host(dev)
    assert all(type(h) is np.ndarray for h in back)
    np.testing.assert_array_equal(back[1], host[1])


def test_if_branches_reading_an_outer_value_in_different_places(cuda):
    """s (made on CUDA) is a shape in one branch (host) and data in the other (CUDA): the If node
    passes it as it is and each branch's copy steps bring it where that branch reads it."""
    then_g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["t_out"], name="then_reshape")],
                               "then_branch", [], [_vi("t_out", F, None)])
    else_g = helper.make_graph([helper.make_node("Cast", ["s"], ["sf"], name="else_cast", to=F),
                                helper.make_node("Add", ["x", "sf"], ["e_out"], name="else_add")],
                               "else_branch", [], [_vi("e_out", F, None)])
    nodes = [helper.make_node("Abs", ["s_in"], ["s"], name="shape_abs"),
             helper.make_node("If", ["c"], ["out"], name="if", then_branch=then_g, else_branch=else_g)]
    model = _model(nodes, [_vi("c", B, []), _vi("x", F, [3, 2]), _vi("s_in", I64, [2])], [_vi("out", F, None)])
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    for cond in (True, False):
        sess = _run_both(model, {"c": np.array(cond), "x": x, "s_in": np.array([2, -3], np.int64)})
        where = _where(sess)
        assert where["shape_abs"] == CUDA and where["else_cast"] == CUDA and where["else_add"] == CUDA
        assert not any(c.reader == "if" and c.value == "s" for c in sess.get_placement().copies)
