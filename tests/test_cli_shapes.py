"""The CLI on models with dynamic dims (issue 18, items 2 and 6): --shape in ortlite's, trtexec's and
Polygraphy's spellings, --seed / --val-range, integer inputs, shape profiles for bench, and clean errors."""
import json
import warnings

import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper

import ortlite
from ortlite import providers, zoo
from ortlite.bench import profile_options
from ortlite.cli import _parse_shapes, _parse_val_ranges, main


def text_model(vocab=30):
    """ids [batch, seq] -> Gather(table [vocab, 4]) * mask -> y; plus a float input x [batch, seq]."""
    table = np.arange(vocab * 4, dtype=np.float32).reshape(vocab, 4)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Mul", ["e", "m3"], ["y"])]
    inits = [onnx.numpy_helper.from_array(table, "table"), onnx.numpy_helper.from_array(np.array([2]), "axes")]
    ins = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
           helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
           helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])]
    return make_model(nodes, ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
                      inits)


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "text.onnx"
    onnx.save(text_model(), str(p))
    return str(p)


def cli(capsys, *args, rc=0):
    got = main(list(args))
    out = capsys.readouterr()
    assert got == rc, out.err
    return out


def test_shape_spellings():
    want = {"a": [1, 3, 64, 64], "b": [1, 3, 64, 64], "c": [2, 5], "d": [4], "e": [], "x y": [2, 3], "n:s": [1]}
    assert _parse_shapes(["a:1x3x64x64", "b:[1, 3,64,64]", "c:2x5,d:[4],e:[]", "'x y':2X3", "n:s:1"]) == want
    for bad in ("a:1x", "a", "a:[1,b]", ",a:1"):
        with pytest.raises(ValueError, match="--shape"):
            _parse_shapes([bad])
    assert _parse_val_ranges(["[0,1]", "ids:[0,99],m:[1,1]"]) == {"": (0, 1), "ids": (0, 99), "m": (1, 1)}
    for bad in ("[1]", "a:[2,1]", "a:[x,1]"):
        with pytest.raises(ValueError, match="--val-range"):
            _parse_val_ranges([bad])


@pytest.mark.parametrize("spelling", ["input_ids:2x7,attention_mask:2x7", "input_ids:[2,7]"])
def test_run_with_trtexec_and_polygraphy_shapes(path, spelling, capsys):
    out = cli(capsys, "run", path, "--shape", spelling).out
    assert "input  input_ids: tensor(int64) [2, 7]" in out and "output y: tensor(float) [2, 7, 4]" in out


def test_integer_inputs_fit_ids_masks_and_positions(path):
    feeds = zoo.example_inputs(path, shapes={"input_ids": [2, 50]})
    ids = feeds["input_ids"]
    assert ids.min() >= 0 and ids.max() < 30 and len(np.unique(ids)) > 10  # random, inside the 30-row table
    assert (feeds["attention_mask"] == 1).all()
    assert (feeds["position_ids"] == np.arange(50)).all()
    other = make_model([helper.make_node("Identity", ["k"], ["o"])],
                       [helper.make_tensor_value_info("k", TensorProto.INT32, [1000])],
                       [helper.make_tensor_value_info("o", TensorProto.INT32, [1000])])
    k = zoo.example_inputs(other)["k"]
    assert k.dtype == np.int32 and 0 <= k.min() and k.max() < zoo.INT_HIGH and len(np.unique(k)) > 50
    # --val-range: integers inclusive, floats uniform; "" for every input; --seed changes the values
    f = zoo.example_inputs(path, val_range={"": (3, 4), "x": (-1, 1)}, seed=1)
    assert set(np.unique(f["input_ids"])) == {3, 4} and -1 <= f["x"].min() and f["x"].max() <= 1
    assert not np.array_equal(zoo.example_inputs(path, seed=2)["x"], zoo.example_inputs(path, seed=3)["x"])
    with pytest.raises(ValueError, match="no input 'nope'"):
        zoo.example_inputs(path, val_range={"nope": (0, 1)})


def test_seed_and_val_range_on_the_cli(path, tmp_path, capsys):
    pre = str(tmp_path / "o_")
    cli(capsys, "run", path, "--seed", "5", "--val-range", "input_ids:[7,7]", "--save", pre)
    assert (np.load(pre + "y.npy")[..., 0] == 28).all()  # row 7 of the table, mask ones
    assert "'nope'" in cli(capsys, "run", path, "--val-range", "nope:[0,1]", rc=2).err


def test_info_takes_shape(path, capsys):
    out = cli(capsys, "info", path, "--providers", "cpu", "--run", "--shape", "input_ids:[3,4]").out
    assert "last run on input_ids [3, 4], attention_mask [3, 4]" in out


def test_bench_shape_profile(path, tmp_path, capsys):
    js = tmp_path / "b.json"
    prof = ["--shape-min", "input_ids:1x1", "--optShapes", "input_ids:[2,8]", "--shape-max", "input_ids:4x16"]
    out = cli(capsys, "bench", path, "--providers", "cpu,tensorrt", "--no-onnxruntime", "--runs", "2",
              "--warmup", "0", "--json", str(js), *prof).out
    d = json.loads(js.read_text())
    assert d["settings"]["profile"] == {"input_ids": {"min": [1, 1], "opt": [2, 8], "max": [4, 16]}}
    assert {i["name"]: i["shape"] for i in d["model"]["inputs"]}["input_ids"] == [2, 8]  # the runs use opt
    assert "note: shape profile input_ids: min [1, 1] opt [2, 8] max [4, 16]" in out
    assert profile_options({"a": ([1, 3], [2, 3], [4, 3]), "b": ([1], [1], [1])}) == {
        "trt_profile_min_shapes": "a:1x3,b:1", "trt_profile_opt_shapes": "a:2x3,b:1",
        "trt_profile_max_shapes": "a:4x3,b:1"}
    for bad, msg in ((prof[:4], "given together"),
                     (["--shape-min", "input_ids:1x9", *prof[2:]], "min <= opt <= max"),
                     ([*prof, "--shape", "input_ids:3x3"], "differs from its --shape-opt")):
        assert msg in cli(capsys, "bench", path, "--providers", "cpu", *bad, rc=2).err


def test_version_and_clean_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"ortlite {ortlite.__version__}\n"
    trace = tmp_path / "t.json"
    for text in ('{"a": 1}', "not json", "[]"):
        trace.write_text(text)
        err = cli(capsys, "profile", str(trace), rc=2).err
        assert err.startswith("ortlite: error: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError) as e:
        providers.canonical_name("nope")
    assert "TensorrtExecutionProvider" in str(e.value) and "TensorRTExecutionProvider" not in str(e.value)
    assert providers.canonical_name("TensorRTExecutionProvider") == "TensorrtExecutionProvider"  # the alias stays


def test_run_on_an_unavailable_provider_warns_in_one_line(capsys):
    if providers.availability("CUDAExecutionProvider")[0]:
        pytest.skip("CUDA is available here")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        err = cli(capsys, "run", "--providers", "cuda").err
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1 and "CUDAExecutionProvider" in lines[0] and ".py" not in err
