"""`ortlite run` / `bench` on models with symbolic dims: the defaults chosen, printed first, and the hint
when a run on them fails (issue 11, item 5)."""
import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper

from ortlite import zoo
from ortlite.cli import main

FIRST = "inputs (defaults chosen for symbolic dims; --shape to override): "


def yolo(size, **meta):
    """zoo.yolo_style with its input's dims 0, 2, 3 symbolic ("batch", "height", "width")."""
    m = zoo.yolo_style(size=size)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for k, name in ((0, "batch"), (2, "height"), (3, "width")):
        dims[k].dim_param = name
    if meta:
        helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, **meta})
    return m


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    paths = {"224": yolo(224), "160-imgsz": yolo(160, imgsz="[160, 160]"), "160": yolo(160)}
    for k, m in paths.items():
        onnx.save(m, str(d / f"yolo{k}.onnx"))
    return {k: str(d / f"yolo{k}.onnx") for k in paths}


def cli(capsys, *args, rc=0):
    assert main(list(args)) == rc
    return capsys.readouterr()


@pytest.mark.parametrize("which, side", [("224", 224), ("160-imgsz", 160)])
def test_run_and_bench_choose_image_sizes(models, which, side, capsys):
    shape = [1, 3, side, side]
    out = cli(capsys, "run", models[which]).out.splitlines()
    assert out[0] == f"{FIRST}images {shape} float32"
    assert f"input  images: tensor(float) {shape}" in out
    out = cli(capsys, "bench", models[which], "--no-onnxruntime", "--iterations", "2", "--warmup", "0").out.splitlines()
    assert out[0] == f"{FIRST}images {shape} float32"
    assert f"inputs: images {shape} float32; batch 1" in out
    out = cli(capsys, "info", models[which], "--run").out.splitlines()
    assert out[0] == f"{FIRST}images {shape} float32" and out[1].startswith("model: ")


def test_a_failing_default_ends_with_a_hint(models, capsys):
    hint = ("hint: input 'images' had symbolic dims set by default to [1, 3, 224, 224]; "
            "pass --shape images:1x3xHxW with the size the model expects")
    for cmd in (["run"], ["bench", "--no-onnxruntime", "--iterations", "2", "--warmup", "0"]):
        r = cli(capsys, *cmd, models["160"], rc=2)  # the detect head reshapes to the 160 grid only
        assert r.out.splitlines()[0] == f"{FIRST}images [1, 3, 224, 224] float32"
        err = r.err.strip().splitlines()
        assert err[-1] == hint
        assert "Reshape node" in err[-2] and "inputs: " in err[-2]
    # with the size it expects it runs, and nothing was chosen
    out = cli(capsys, "run", models["160"], "--shape", "images:1x3x160x160").out
    assert FIRST not in out and "input  images: tensor(float) [1, 3, 160, 160]" in out


def test_errors_not_caused_by_the_shapes_get_no_hint(capsys, tmp_path):
    """--shape given for every symbolic dim: a failing run gets no hint (nothing was chosen)."""
    r = cli(capsys, "run", _save(yolo(160), tmp_path), "--shape", "images:1x3x224x224", rc=2)
    assert "hint:" not in r.err and "Reshape node" in r.err


def _save(m, tmp_path, name="m.onnx"):
    path = str(tmp_path / name)
    onnx.save(m, path)
    return path


def text_model(extra_inputs=()):
    """input_ids / attention_mask [batch_size, sequence_length] int64 -> Add -> [batch_size, sequence_length]."""
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch_size", "sequence_length"])
           for n in ("input_ids", "attention_mask")]
    return make_model([helper.make_node("Add", ["input_ids", "attention_mask"], ["y"])], ins + list(extra_inputs),
                      [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch_size", "sequence_length"])])


def test_input_shapes_defaults():
    s = zoo.input_shapes(text_model())
    assert s["input_ids"].shape == s["attention_mask"].shape == (1, zoo.SEQUENCE_LENGTH)
    assert s["input_ids"].chosen == (0, 1) and s["input_ids"].pattern == "1xL"
    # a dim name gets one size in every input; --shape of one input sets it for the others
    s = zoo.input_shapes(text_model(), shapes={"input_ids": [2, 7]})
    assert s["input_ids"] == ((2, 7), (), "2x7") and s["attention_mask"].shape == (2, 7)
    assert s["attention_mask"].chosen == ()
    # dims and batch given
    assert zoo.input_shapes(text_model(), dims={"sequence_length": 5}, batch=3)["input_ids"].shape == (3, 5)
    # batch: for batch-like names on any axis, and axis 0 unless it is a sequence (time-major RNN)
    rnn = make_model([helper.make_node("Identity", ["x"], ["y"])],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 4]),
                      helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", 8]),
                      helper.make_tensor_value_info("u", TensorProto.FLOAT, ["dyn_0", None])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    s = zoo.input_shapes(rnn, batch=3)
    assert s["x"].shape == (zoo.SEQUENCE_LENGTH, 3, 4) and s["h0"].shape == (1, 3, 8) and s["u"].shape == (3, 1)
    # NHWC image, uint8, unnamed dims; other unknown dims are 1
    nhwc = helper.make_tensor_value_info("img", TensorProto.UINT8, [None, None, None, 3])
    other = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["num_boxes", 4])
    m = make_model([helper.make_node("Identity", ["img"], ["y"])], [nhwc, other],
                   [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    s = zoo.input_shapes(m)
    assert s["img"] == ((1, 224, 224, 3), (0, 1, 2), "1xHxWx3") and s["boxes"] == ((1, 4), (0,), "D0x4")


@pytest.mark.parametrize("meta, hw", [
    ({"imgsz": "[480, 640]"}, (480, 640)), ({"imgsz": "320"}, (320, 320)), ({"input_shape": "1,3,256,320"}, (256, 320)),
    ({"Image_Size": "{'size': 96}"}, (96, 96)), ({"height": "128", "width": "64"}, (128, 64)),
    ({"imgsz": "n/a"}, (224, 224)), ({}, (224, 224)),
])
def test_image_size_from_metadata(meta, hw):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    helper.set_model_props(m, meta)
    assert zoo.input_shapes(m)["x"].shape == (1, 3, *hw)


def test_zoo_metadata_dims_still_win():
    s = zoo.input_shapes(zoo.bert_tiny())
    assert s["input_ids"].shape == (1, 32)
    assert zoo.example_inputs(zoo.demo())["input"].shape == (1, 3, 64, 64)


def test_shapes_that_do_not_fit_are_refused(capsys, tmp_path):
    m = text_model()
    with pytest.raises(ValueError, match=r"input 'input_ids' has rank 2 \[batch_size, sequence_length\], a shape of rank 3"):
        zoo.input_shapes(m, shapes={"input_ids": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"the model has no input 'nope'; inputs: \['input_ids', 'attention_mask'\]"):
        zoo.input_shapes(m, shapes={"nope": [1]})
    path = _save(m, tmp_path)
    assert "has rank 2" in cli(capsys, "run", path, "--shape", "input_ids:1x2x3", rc=2).err
    assert "--shape expects name:1x3x224x224, name:[1,3,224,224] or a comma-separated list, got 'input_ids:1xL'" \
        in cli(capsys, "run", path, "--shape", "input_ids:1xL", rc=2).err


def test_given_input_array_sets_the_shared_dims(capsys, tmp_path):
    path = _save(text_model(), tmp_path)
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(10, dtype=np.int64).reshape(2, 5))
    out = cli(capsys, "run", path, "--input", f"input_ids={ids}", "--save", str(tmp_path / "o_")).out
    assert FIRST not in out and "input  attention_mask: tensor(int64) [2, 5]" in out
    assert np.load(tmp_path / "o_y.npy").shape == (2, 5)
    assert zoo.input_shapes(path)["input_ids"].shape == (1, zoo.SEQUENCE_LENGTH)  # a path works too
