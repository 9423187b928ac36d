"""Partitioning, fallback, copies and IOBinding across devices, with the pretend device."""
import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper

import ortlite as ort
from ortlite.partition import HOST_REASON
from partition.pretend_device import DeviceArray

PRETEND = "PretendDeviceExecutionProvider"
CPU = "CPUExecutionProvider"
F = TensorProto.FLOAT


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def chain_model():
    """x -> Add(c) [device] -> Erf [host only] -> Mul(c) [device] -> Relu [device] -> y"""
    c = onnx.numpy_helper.from_array(np.full((4,), 0.5, np.float32), "c")
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"], name="add"),
        helper.make_node("Erf", ["a"], ["e"], name="erf"),
        helper.make_node("Mul", ["e", "c"], ["m"], name="mul"),
        helper.make_node("Relu", ["m"], ["y"], name="relu"),
    ]
    return make_model(nodes, [vi("x", [2, 4])], [vi("y", [2, 4])], [c])


def reference_chain(x):
    import math

    erf = np.vectorize(math.erf)
    return np.maximum(erf(x + 0.5) * 0.5, 0).astype(np.float32)


def session(model, providers, **config):
    so = ort.SessionOptions()
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(model.SerializeToString(), so, providers=providers)


def test_priority_order_and_fallback_reasons():
    sess = session(chain_model(), [PRETEND, CPU])
    rep = sess.get_placement()
    assert [(n.name, n.provider) for n in rep] == [("add", PRETEND), ("erf", CPU), ("mul", PRETEND), ("relu", PRETEND)]
    (erf,) = rep.fallbacks()
    assert erf.name == "erf" and erf.refused == ((PRETEND, "no pretend-device kernel for Erf"),)
    assert rep.counts() == {PRETEND: 3, CPU: 1}
    assert "no pretend-device kernel for Erf" in rep.summary()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    assert type(y) is np.ndarray
    np.testing.assert_allclose(y, reference_chain(x), rtol=1e-5, atol=1e-6)


def test_cpu_first_takes_everything():
    sess = session(chain_model(), [CPU, PRETEND])
    assert {n.provider for n in sess.get_placement()} == {CPU}
    assert sess.get_placement().copies == []


def test_fallback_is_logged_at_warning(caplog):
    with caplog.at_level("WARNING", logger="ortlite"):
        session(chain_model(), [PRETEND, CPU])
    assert any("not on PretendDeviceExecutionProvider" in r.message and "Erf" in r.message for r in caplog.records)


def test_copies_exactly_where_values_cross_devices():
    sess = session(chain_model(), [PRETEND, CPU])
    copies = sess.get_placement().copies
    assert [(c.value, c.dst, c.reader) for c in copies] == [
        ("x", "pretend", "add"),  # graph input to the device
        ("a", "cpu", "erf"),  # device -> host for the host-only op
        ("e", "pretend", "mul"),  # and back
    ]
    x = np.ones((2, 4), np.float32)
    sess.run(None, {"x": x})
    rep = sess.get_placement()
    assert rep.last_run_copies == 4  # the three above and the output back to the host
    assert rep.last_run_copy_bytes == 4 * x.nbytes


def test_one_copy_shared_by_several_readers():
    nodes = [
        helper.make_node("Relu", ["x"], ["r1"], name="r1"),
        helper.make_node("Neg", ["x"], ["r2"], name="r2"),
        helper.make_node("Add", ["r1", "r2"], ["y"], name="add"),
    ]
    sess = session(make_model(nodes, [vi("x", [3])], [vi("y", [3])]), [PRETEND, CPU])
    assert [(c.value, c.dst) for c in sess.get_placement().copies] == [("x", "pretend")]
    (y,) = sess.run(None, {"x": np.array([-1, 0, 2], np.float32)})
    assert y.tolist() == [1.0, 0.0, 0.0]


def test_constants_are_copied_once_at_session_start():
    sess = session(chain_model(), [PRETEND, CPU])
    assert not any(c.value == "c" for c in sess.get_placement().copies)


def test_disable_cpu_fallback_lists_leftovers():
    with pytest.warns(UserWarning, match="falls back|not available") if False else _nullcontext():
        with pytest.raises(ort.Fail, match=r"1 node\(s\) have no kernel .* disabled .*Erf 'erf' \(PretendDeviceExecutionProvider: no pretend-device kernel for Erf\)"):
            session(chain_model(), [PRETEND], **{"session.disable_cpu_ep_fallback": "1"})


def test_disable_cpu_fallback_when_everything_fits():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    sess = session(make_model(nodes, [vi("x", [3])], [vi("y", [3])]), [PRETEND], **{"session.disable_cpu_ep_fallback": "1"})
    assert sess.get_providers() == [PRETEND]
    assert sess.run(None, {"x": np.array([-1, 0, 2], np.float32)})[0].tolist() == [0, 0, 2]


def test_shape_inputs_stay_on_host():
    """Reshape on the device reads a shape computed from Shape/Gather/Concat: those run on the host
    and the run copies no shape from the device."""
    two = onnx.numpy_helper.from_array(np.array([2], np.int64), "two")
    idx = onnx.numpy_helper.from_array(np.array([0], np.int64), "idx")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "idx"], ["n"], name="gather", axis=0),
        helper.make_node("Div", ["n", "two"], ["h"], name="half"),
        helper.make_node("Concat", ["two", "h"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "new_shape"], ["y"], name="reshape"),
    ]
    # Div is supported on the device: it must still run on the host, as it only feeds a shape.
    m = make_model(nodes, [vi("x", [8])], [vi("y", [2, 4])], [two, idx])
    sess = session(m, [PRETEND, CPU])
    rep = sess.get_placement()
    where = {n.name: n.provider for n in rep}
    assert where["relu"] == PRETEND and where["reshape"] == PRETEND
    assert where["shape"] == CPU and where["half"] == CPU
    assert (PRETEND, HOST_REASON) in rep.node("half").refused
    assert not any(c.dst == "cpu" for c in rep.copies), rep.summary()
    x = np.arange(8, dtype=np.float32) - 3
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(2, 4))
    assert sess.get_placement().last_run_copies == 2  # x in, y out


def test_control_flow_subgraphs_are_partitioned():
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "then", [], [vi("t", [3])])
    else_g = helper.make_graph([helper.make_node("Erf", ["x"], ["e0"], name="else_erf"),
                                helper.make_node("Neg", ["e0"], ["e"], name="else_neg")], "else", [], [vi("e", [3])])
    nodes = [helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    m = make_model(nodes, [vi("cond", [], TensorProto.BOOL), vi("x", [3])], [vi("y", [3])])
    sess = session(m, [PRETEND, CPU])
    assert sess.get_placement().node("if").provider == CPU  # no device kernel for If
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    np.testing.assert_allclose(sess.run(None, {"cond": np.array(True), "x": x})[0], np.maximum(x, 0))
    import math

    np.testing.assert_allclose(sess.run(None, {"cond": np.array(False), "x": x})[0],
                               [-math.erf(v) for v in x], rtol=1e-6)


def test_iobinding_on_the_device_makes_no_copies():
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Neg", ["h"], ["y"], name="neg")]
    sess = session(make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])]), [PRETEND, CPU])
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    xv = ort.OrtValue.ortvalue_from_numpy(x, "pretend", 0)
    assert xv.device_name() == "pretend" and isinstance(xv._value, DeviceArray)
    io = sess.io_binding()
    io.bind_ortvalue_input("x", xv)
    io.bind_output("y", "pretend")
    sess.run_with_iobinding(io)
    assert sess.get_placement().last_run_copies == 0
    (yv,) = io.get_outputs()
    assert yv.device_name() == "pretend" and isinstance(yv._value, DeviceArray)
    np.testing.assert_array_equal(io.copy_outputs_to_cpu()[0], -np.maximum(x, 0))
    # a host input and a host output: one copy each way
    io.clear_binding_inputs()
    io.clear_binding_outputs()
    io.bind_cpu_input("x", x)
    io.bind_output("y")
    sess.run_with_iobinding(io)
    assert sess.get_placement().last_run_copies == 2
    assert type(io.get_outputs()[0].numpy()) is np.ndarray


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
