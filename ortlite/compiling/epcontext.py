"""onnxruntime's EP-context format: compiled groups saved as ``com.microsoft`` ``EPContext`` nodes.

Saving (``SessionOptions.optimized_model_filepath``): each fused group is already an EPContext
node; its ``ep_cache_context`` attribute is set to the path of the group's engine-cache entry
relative to the saved model (``embed_mode`` 0), the entry being written next to the model
(``<model stem>_ctx/``) when the provider has no cache directory. A session made from the saved
model loads each engine by its entry and neither queries nor compiles.

Loading refuses, with the reason, what it cannot use: an engine embedded in the model
(``embed_mode`` 1, onnxruntime's default), a shared context (``main_context`` 0), a model read
from bytes (no directory to resolve the path against), a path leaving the model's directory,
a missing or changed entry, and an entry made by another compiler version, device or options.
"""
from __future__ import annotations

import logging
import os
import time

import onnx
from onnx import helper

from ortlite.compiling.cache import EngineCache, key_fields, read_entry
from ortlite.compiling.spec import GroupSpec
from ortlite.errors import Fail

log = logging.getLogger("ortlite")


def _refuse(node, why):
    raise Fail(f"EPContext node '{node.name}' (source '{node.attrs.get('source', '')}') cannot be loaded: {why}")


def load_epcontext(node, prov, builder):
    """A CompiledKernel for a saved EPContext node, from the cache entry it names."""
    from ortlite.compiling.build import CompiledKernel, EngineBuild, engine_inputs_outputs

    a = node.attrs
    if int(a.get("embed_mode", 1)) != 0:
        _refuse(node, "the engine is embedded in the model (embed_mode=1, onnxruntime's default); ortlite "
                      "reads engines from its engine-cache files (embed_mode=0): save the model with ortlite")
    if int(a.get("main_context", 1)) != 1:
        _refuse(node, "it shares another node's context (main_context=0), which ortlite does not write or read")
    ref = str(a.get("ep_cache_context", "") or "")
    if not ref:
        _refuse(node, "its ep_cache_context attribute (the engine file) is empty")
    if builder.model_dir is None:
        _refuse(node, "the model was loaded from bytes or a ModelProto, so there is no directory to find "
                      f"'{ref}' in; load it from its file path")
    base = os.path.realpath(builder.model_dir)
    path = os.path.realpath(os.path.join(base, ref))
    if os.path.isabs(ref) or os.path.commonpath([base, path]) != base:
        _refuse(node, f"ep_cache_context '{ref}' leaves the model's directory {base}")
    t0 = time.perf_counter()
    try:
        entry = read_entry(path)
        meta = entry.meta
    except FileNotFoundError as e:
        _refuse(node, f"its engine file is missing ({e.filename}); load the original model to rebuild it")
    except (OSError, ValueError) as e:
        _refuse(node, f"its engine file {path} is unreadable: {e}")
    ins, outs = engine_inputs_outputs(meta)
    spec = GroupSpec(node.attrs.get("partition_name", node.name), prov.name, None, ins, outs,
                     [node.name], ["EPContext"])
    want = meta.get("fields") or {}
    have = key_fields(prov, spec)
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if diff:
        details = "; ".join(f"{k}: saved {want.get(k)!r}, here {have.get(k)!r}" for k in diff[:4])
        _refuse(node, f"its engine was built for another configuration ({details}); load the original model "
                      "to rebuild it")
    if [t.name for t in ins] != list(node.inputs) or [t.name for t in outs] != list(node.outputs):
        _refuse(node, "its inputs/outputs do not match the engine file's")
    try:
        engine = prov.deserialize(entry.blob, spec)
    except Exception as e:  # noqa: BLE001 - a damaged file is named as such, else the loader's words
        problem = entry.verify()
        if problem is not None:
            _refuse(node, f"its engine file {path}: {problem}; load the original model to rebuild it")
        _refuse(node, f"{prov.name} could not load its engine {path}: {type(e).__name__}: {e}")
    problem = entry.verify()
    if problem is not None:
        _refuse(node, f"its engine file {path}: {problem}; load the original model to rebuild it")
    runner = prov.make_runner(engine, spec)
    builder.builds.append(EngineBuild(spec.name, prov.name, int(meta.get("nodes", 1)),
                                      time.perf_counter() - t0, "epcontext", path, meta.get("key", "")))
    log.info("%s: %s loaded from EP context %s", prov.name, spec.name, path)
    return CompiledKernel(runner, spec, prov, meta.get("key", ""), want, engine, path)


def prepare_for_save(graph, placements, model_path):
    """Point every fused group's EPContext node at its engine file relative to ``model_path``
    (writing the entry beside the model where the provider keeps no cache); returns the
    ValueInfoProtos of the groups' inputs and outputs (their types, for the saved model)."""
    from ortlite.compiling.build import CompiledKernel

    model_dir = os.path.dirname(os.path.abspath(model_path))
    stem = os.path.splitext(os.path.basename(model_path))[0]
    infos = []
    for p in placements:
        ck = p.kernel
        if not isinstance(ck, CompiledKernel):
            continue
        entry = ck.entry
        if entry is None or not os.path.exists(entry):
            blob = ck.provider.serialize(ck.engine)
            if blob is None:
                raise Fail(f"optimized_model_filepath: {ck.provider.name} cannot serialize the engine of "
                           f"group '{ck.spec.name}', so it cannot be saved as an EPContext node")
            cache = EngineCache(os.path.join(model_dir, f"{stem}_ctx"))
            prefix = ck.provider.name.replace("ExecutionProvider", "").lower()
            from ortlite.compiling.build import _io_json

            entry = cache.store(prefix, ck.key, ck.fields, blob, 0.0,
                                {"group": ck.spec.name, "nodes": len(ck.members) or 1,
                                 "inputs": _io_json(ck.spec.inputs), "outputs": _io_json(ck.spec.outputs)})
            ck.entry = entry
        rel = os.path.relpath(entry, model_dir)
        node = p.node
        node.attrs.update({"ep_cache_context": rel, "embed_mode": 0, "main_context": 1,
                           "source": ck.provider.name, "ep_sdk_version": str(ck.fields.get("compiler", "")),
                           "partition_name": ck.spec.name,
                           "notes": f"ortlite engine cache entry, key {ck.key[:16]}"})
        node.attr_protos = {k: helper.make_attribute(k, v) for k, v in node.attrs.items()}
        for name in list(node.inputs) + list(node.outputs):
            vi = graph.info(name)
            if vi is not None and vi.type_proto is not None:
                v = onnx.ValueInfoProto(name=name)
                v.type.CopyFrom(vi.type_proto)
                infos.append(v)
    return infos
