"""TensorrtExecutionProvider options, by onnxruntime's names (tensorrt_execution_provider_info.cc).

Parsed once at provider creation: unknown names are an error listing the valid ones; bad values name
the option, the value and what is valid. Options onnxruntime users pass by habit but ortlite does not
implement (DLA, engine decryption, plugin libraries...) are accepted with a warning saying so.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field

from ortlite.errors import InvalidArgument
from ortlite.providers.base import option_bool

log = logging.getLogger("ortlite")

BOOLS = {
    "trt_fp16_enable": False, "trt_bf16_enable": False, "trt_int8_enable": False,
    "trt_engine_cache_enable": False, "trt_timing_cache_enable": False, "trt_force_timing_cache": False,
    "trt_sparsity_enable": False, "trt_engine_hw_compatible": False, "trt_detailed_build_log": False,
    "has_user_compute_stream": False, "trt_dump_ep_context_model": False,
}
INTS = {
    "device_id": 0, "trt_max_partition_iterations": 1000, "trt_min_subgraph_size": 1,
    "trt_max_workspace_size": 0, "trt_builder_optimization_level": 3, "trt_auxiliary_streams": -1,
    "user_compute_stream": 0, "trt_ep_context_embed_mode": 0,
}
STRINGS = {
    "trt_engine_cache_path": "", "trt_engine_cache_prefix": "", "trt_timing_cache_path": "",
    "trt_profile_min_shapes": "", "trt_profile_opt_shapes": "", "trt_profile_max_shapes": "",
    "trt_op_types_to_exclude": "", "trt_int8_calibration_table_name": "", "trt_ep_context_file_path": "",
}
# accepted so onnxruntime code runs unchanged, but not implemented here: a warning says so
IGNORED = {
    "trt_int8_use_native_calibration_table": "INT8 calibration tables are out of scope (Q/DQ models work)",
    "trt_dla_enable": "DLA cores are not supported", "trt_dla_core": "DLA cores are not supported",
    "trt_dump_subgraphs": "the groups are in the engine cache entries' sidecars and in get_placement()",
    "trt_engine_decryption_enable": "engine decryption is not supported",
    "trt_engine_decryption_lib_path": "engine decryption is not supported",
    "trt_force_sequential_engine_build": "builds are sequential within a session already",
    "trt_context_memory_sharing_enable": "each engine keeps its own activation memory",
    "trt_layer_norm_fp32_fallback": "per-layer precision pins do not exist on TensorRT 11",
    "trt_build_heuristics_enable": "a TensorRT 8 flag", "trt_tactic_sources": "tactic sources are left to TensorRT",
    "trt_extra_plugin_lib_paths": "plugin libraries are not loaded",
    "trt_cuda_graph_enable": "CUDA graphs around TensorRT engines are not implemented",
    "trt_weight_stripped_engine_enable": "weight-stripped engines are not implemented",
    "trt_onnx_model_folder_path": "weight-stripped engines are not implemented",
    "trt_load_user_initializer": "initializers are embedded in each group's ONNX model",
}
VALID = sorted(set(BOOLS) | set(INTS) | set(STRINGS) | set(IGNORED))


@dataclass
class TrtOptions:
    device_id: int = 0
    user_compute_stream: int = 0
    max_partition_iterations: int = 1000
    min_subgraph_size: int = 1
    max_workspace_size: int = 0
    builder_optimization_level: int = 3
    auxiliary_streams: int = -1
    fp16: bool = False
    bf16: bool = False
    int8: bool = False
    engine_cache_enable: bool = False
    engine_cache_path: str = ""
    engine_cache_prefix: str = ""
    timing_cache_enable: bool = False
    timing_cache_path: str = ""
    force_timing_cache: bool = False
    sparsity: bool = False
    hw_compatible: bool = False
    detailed_build_log: bool = False
    op_types_to_exclude: frozenset = frozenset()
    profiles: list = field(default_factory=list)  # [{input: (min, opt, max)}] one dict per profile
    raw: dict = field(default_factory=dict)

    def result_fields(self) -> dict:
        """The options that change a built engine (part of the engine-cache key)."""
        return {"fp16": self.fp16, "bf16": self.bf16, "int8": self.int8, "workspace": self.max_workspace_size,
                "opt_level": self.builder_optimization_level, "sparsity": self.sparsity,
                "hw_compatible": self.hw_compatible, "aux_streams": self.auxiliary_streams,
                "profiles": [{k: [list(s) for s in v] for k, v in sorted(p.items())} for p in self.profiles]}


def _bad(key, value, valid):
    return InvalidArgument(f"TensorrtExecutionProvider option {key}={value!r} is not valid; expected {valid}")


def parse_shapes(key, text) -> list:
    """'in1:1x3x224x224,in2:1x16' -> [(name, (dims...))]; a name may repeat (one entry per profile)."""
    out = []
    for part in [p for p in str(text).split(",") if p.strip()]:
        name, sep, dims = part.strip().rpartition(":")
        if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims.strip()):
            raise _bad(key, text, "'name:d0xd1x...,name2:...' (onnxruntime's format, e.g. 'input:1x3x224x224')")
        out.append((name, tuple(int(d) for d in dims.strip().split("x"))))
    return out


def _profiles(mins, opts, maxs) -> list:
    given = [bool(mins), bool(opts), bool(maxs)]
    if not any(given):
        return []
    if not all(given):
        raise InvalidArgument("TensorrtExecutionProvider: trt_profile_min_shapes, trt_profile_opt_shapes and "
                              "trt_profile_max_shapes must be given together")
    lo, mid, hi = (parse_shapes(k, v) for k, v in (("trt_profile_min_shapes", mins),
                                                    ("trt_profile_opt_shapes", opts),
                                                    ("trt_profile_max_shapes", maxs)))
    if [n for n, _ in lo] != [n for n, _ in mid] or [n for n, _ in lo] != [n for n, _ in hi]:
        raise InvalidArgument("TensorrtExecutionProvider: the min/opt/max profile shapes must name the same inputs "
                              "in the same order")
    profiles: list[dict] = []
    seen_count: dict[str, int] = {}
    for (name, a), (_, b), (_, c) in zip(lo, mid, hi):
        k = seen_count.get(name, 0)
        seen_count[name] = k + 1
        while len(profiles) <= k:
            profiles.append({})
        if not (len(a) == len(b) == len(c)) or any(not (x <= y <= z) for x, y, z in zip(a, b, c)):
            raise InvalidArgument(f"TensorrtExecutionProvider: profile shapes of '{name}' must have one rank and "
                                  f"min <= opt <= max in every dim; got {a}, {b}, {c}")
        profiles[k][name] = (a, b, c)
    return profiles


def parse_options(options: dict | None) -> TrtOptions:
    raw = {str(k): v for k, v in (options or {}).items()}
    unknown = sorted(set(raw) - set(VALID))
    if unknown:
        raise InvalidArgument(f"TensorrtExecutionProvider: unknown option(s) {unknown}; valid options: "
                              f"{', '.join(VALID)}")
    o = TrtOptions(raw={k: str(v) for k, v in raw.items()})
    vals = {}
    for k, v in raw.items():
        if k in BOOLS:
            vals[k] = option_bool("TensorrtExecutionProvider", k, v)
        elif k in INTS:
            try:
                vals[k] = int(v)
            except (TypeError, ValueError):
                raise _bad(k, v, "an integer") from None
        elif k in STRINGS:
            vals[k] = str(v)
        else:
            msg = f"TensorrtExecutionProvider option {k} is accepted but ignored: {IGNORED[k]}"
            warnings.warn(msg, UserWarning, stacklevel=4)
            log.warning(msg)
    g = lambda k, d: vals.get(k, d)  # noqa: E731
    o.device_id = g("device_id", 0)
    o.user_compute_stream = g("user_compute_stream", 0)
    o.max_partition_iterations = g("trt_max_partition_iterations", 1000)
    o.min_subgraph_size = g("trt_min_subgraph_size", 1)
    o.max_workspace_size = g("trt_max_workspace_size", 0)
    o.builder_optimization_level = g("trt_builder_optimization_level", 3)
    o.auxiliary_streams = g("trt_auxiliary_streams", -1)
    for name, lo in (("device_id", 0), ("trt_max_partition_iterations", 1), ("trt_min_subgraph_size", 1),
                     ("trt_max_workspace_size", 0), ("user_compute_stream", 0)):
        if g(name, lo) < lo:
            raise _bad(name, g(name, lo), f"an integer >= {lo}")
    if not 0 <= o.builder_optimization_level <= 5:
        raise _bad("trt_builder_optimization_level", o.builder_optimization_level, "0 to 5")
    o.fp16 = g("trt_fp16_enable", False)
    o.bf16 = g("trt_bf16_enable", False)
    o.int8 = g("trt_int8_enable", False)
    if g("trt_int8_calibration_table_name", ""):
        raise InvalidArgument("TensorrtExecutionProvider: trt_int8_calibration_table_name: INT8 from a calibration "
                              "table is out of scope; quantize the model with QuantizeLinear/DequantizeLinear "
                              "(explicit quantization), which TensorRT builds in int8 without a table")
    o.engine_cache_enable = g("trt_engine_cache_enable", False)
    o.engine_cache_path = g("trt_engine_cache_path", "")
    o.engine_cache_prefix = g("trt_engine_cache_prefix", "")
    o.timing_cache_enable = g("trt_timing_cache_enable", False)
    o.timing_cache_path = g("trt_timing_cache_path", "")
    o.force_timing_cache = g("trt_force_timing_cache", False)
    o.sparsity = g("trt_sparsity_enable", False)
    o.hw_compatible = g("trt_engine_hw_compatible", False)
    o.detailed_build_log = g("trt_detailed_build_log", False)
    o.op_types_to_exclude = frozenset(x.strip() for x in g("trt_op_types_to_exclude", "").split(",") if x.strip())
    o.profiles = _profiles(g("trt_profile_min_shapes", ""), g("trt_profile_opt_shapes", ""),
                           g("trt_profile_max_shapes", ""))
    return o
