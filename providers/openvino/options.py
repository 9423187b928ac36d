"""The OpenVINO provider's options, by onnxruntime's names, parsed and checked up front.

onnxruntime option      -> what ortlite does with it
``device_type``         CPU (default), GPU, GPU.<n>, NPU, AUTO, AUTO:<devs>, HETERO:<devs>, MULTI:<devs>;
                        each device must be in ``openvino.Core().available_devices``. The deprecated
                        CPU_FP32 / GPU_FP16 spellings are split into device_type + precision (warning).
``precision``           FP32 -> INFERENCE_PRECISION_HINT f32, FP16 -> INFERENCE_PRECISION_HINT f16,
                        ACCURACY -> EXECUTION_MODE_HINT ACCURACY. Valid per device as onnxruntime's:
                        CPU FP32/ACCURACY (plus FP16 where the CPU lists FP16 in OPTIMIZATION_CAPABILITIES),
                        GPU FP16/FP32/ACCURACY, NPU FP16/ACCURACY; defaults CPU FP32, GPU/NPU FP16, composite
                        devices OpenVINO's own default.
``num_of_threads``      INFERENCE_NUM_THREADS (a positive integer)
``num_streams``         NUM_STREAMS (a positive integer)
``cache_dir``           the directory of ortlite's engine cache (the core stores serialized engines there);
                        OpenVINO's own CACHE_DIR is not turned on by it.
``load_config``         a JSON string or the path of a JSON file ``{"DEVICE": {"PROPERTY": value}}``; the
                        properties of the device in use are passed to compile_model. Unknown device names,
                        and properties the device does not list as settable, are refused.
``disable_dynamic_shapes``  true: each new set of input shapes compiles a static-shape engine (always on
                        for NPU, as in onnxruntime)
``model_priority``      LOW/MEDIUM/HIGH/DEFAULT -> MODEL_PRIORITY where the device supports it
``enable_opencl_throttling``  true -> GPU_QUEUE_THROTTLE LOW on GPU devices
``enable_qdq_optimizer``  accepted and recorded (onnxruntime's NPU QDQ stripping has no ortlite counterpart)
``device_id``           deprecated in onnxruntime: CPU/GPU/NPU select the device_type
``context``             an OpenCL context handle (hex); recorded, ortlite passes host arrays only
``min_subgraph_size``   ortlite's: the fewest nodes a group may have (smaller groups run elsewhere)

``device_luid``, ``reshape_input``, ``layout`` and ``enable_causallm`` are accepted and ignored (warning).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace

from ortlite.errors import InvalidArgument
from ortlite.providers.base import option_bool

NAME = "OpenVINOExecutionProvider"
PRECISIONS = ("FP32", "FP16", "ACCURACY")
MODES = ("AUTO", "HETERO", "MULTI", "BATCH")
# onnxruntime's per-device precisions: device -> (default, valid values)
DEVICE_PRECISIONS = {
    "CPU": ("FP32", ("FP32", "ACCURACY")),
    "GPU": ("FP16", ("FP16", "FP32", "ACCURACY")),
    "NPU": ("FP16", ("FP16", "ACCURACY")),
}
MODEL_PRIORITIES = ("LOW", "MEDIUM", "HIGH", "DEFAULT")
# Device names a load_config JSON may hold (onnxruntime's list, plus indexed GPUs such as GPU.1).
CONFIG_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI", "BATCH")
# Properties compile_model takes for any device (they belong to the Core, not the plugin).
CORE_PROPERTIES = frozenset({"CACHE_DIR", "CACHE_MODE", "ENABLE_MMAP", "FORCE_TBB_TERMINATE",
                             "COMPILATION_NUM_THREADS", "DEVICE_PROPERTIES", "WEIGHTS_PATH"})
# onnxruntime options ortlite accepts and ignores.
IGNORED_ORT_OPTIONS = frozenset({"device_luid", "reshape_input", "layout", "enable_causallm"})
VALID_OPTIONS = ("device_type", "precision", "num_of_threads", "num_streams", "cache_dir", "load_config",
                 "enable_qdq_optimizer", "disable_dynamic_shapes", "model_priority", "enable_opencl_throttling",
                 "device_id", "context", "min_subgraph_size")


@dataclass(frozen=True)
class OpenVINOOptions:
    """The parsed options. ``device`` is the OpenVINO device string compile_model gets."""

    device: str = "CPU"
    precision: str = ""  # '' : OpenVINO's default (composite devices without an explicit precision)
    num_of_threads: int = 0  # 0: OpenVINO's default
    num_streams: int = 0
    cache_dir: str = ""
    load_config: dict = field(default_factory=dict)  # {device: {property: value}}
    load_config_text: str = ""  # the option's value as given
    enable_qdq_optimizer: bool = False
    disable_dynamic_shapes: bool = False
    model_priority: str = "DEFAULT"
    enable_opencl_throttling: bool = False
    context: int = 0
    min_subgraph_size: int = 0  # 0: not given (the core's default, 1)

    @property
    def devices(self) -> list:
        """The physical devices named (one, or those of a composite AUTO:/HETERO:/MULTI: device)."""
        return _split_device(self.device)[1]

    @property
    def mode(self) -> str:
        """'AUTO' / 'HETERO' / 'MULTI' / 'BATCH' for composite devices, '' for one device."""
        return _split_device(self.device)[0]

    def as_strings(self) -> dict:
        """The options as get_provider_options() gives them (strings, onnxruntime's names)."""
        out = {
            "device_type": self.device,
            "precision": self.precision,
            "num_of_threads": str(self.num_of_threads),
            "num_streams": str(self.num_streams),
            "cache_dir": self.cache_dir,
            "load_config": self.load_config_text,
            "enable_qdq_optimizer": _bstr(self.enable_qdq_optimizer),
            "disable_dynamic_shapes": _bstr(self.disable_dynamic_shapes),
            "model_priority": self.model_priority,
            "enable_opencl_throttling": _bstr(self.enable_opencl_throttling),
            "context": hex(self.context) if self.context else "",
        }
        if self.min_subgraph_size:
            out["min_subgraph_size"] = str(self.min_subgraph_size)
        return out

    def device_config(self, device: str | None = None) -> dict:
        """The load_config properties for ``device`` (the device in use by default)."""
        device = device or self.device
        mode, devs = _split_device(device)
        if mode:
            return dict(self.load_config.get(mode, {}))
        out = dict(self.load_config.get(devs[0].split(".")[0], {}))
        if devs[0] != devs[0].split(".")[0]:
            out.update(self.load_config.get(devs[0], {}))  # GPU.1's own entry after GPU's
        return out


def _bstr(b: bool) -> str:
    return "true" if b else "false"


def _split_device(device: str):
    """('', ['CPU']) for one device; ('HETERO', ['GPU', 'CPU']) for a composite one."""
    if ":" in device:
        mode, rest = device.split(":", 1)
        return mode, [d for d in rest.split(",") if d]
    if device in MODES:
        return device, []
    return "", [device]


def _bool(key, value):
    return option_bool(NAME, key, value)


def _positive_int(key, value):
    s = str(value).strip()
    try:
        v = int(s)
    except ValueError:
        raise InvalidArgument(f"{NAME} option {key}={value!r}: expected a positive integer") from None
    if v <= 0:
        raise InvalidArgument(f"{NAME} option {key}={value!r}: expected a positive integer")
    return v


def _device_known(d: str, available: list) -> bool:
    """Whether device ``d`` (CPU, GPU, GPU.1, ...) is one of ``available`` (OpenVINO lists GPU.0 and
    GPU.1 where there are two GPUs and GPU where there is one; 'GPU' then means the first)."""
    if d in available:
        return True
    if "." not in d:
        return any(a.split(".")[0] == d for a in available)
    return d.endswith(".0") and d[:-2] in available


def parse_device(value, available: list) -> tuple[str, str]:
    """(device string, precision from a deprecated CPU_FP32-style suffix or '')."""
    dev = "".join(str(value).split())
    if not dev:
        raise InvalidArgument(f"{NAME} option device_type={value!r}: expected a device; available here: "
                              f"{', '.join(available)}")
    suffix = ""
    if ":" not in dev and "_" in dev:
        dev, suffix = dev.split("_", 1)
        if suffix not in PRECISIONS:
            raise InvalidArgument(f"{NAME} option device_type={value!r}: unknown precision suffix '{suffix}'; "
                                  f"set device_type ({', '.join(available)}) and precision "
                                  f"({', '.join(PRECISIONS)}) separately")
        warnings.warn(f"{NAME} option device_type={value!r} is deprecated (as in onnxruntime); use "
                      f"device_type={dev!r} and precision={suffix!r}", stacklevel=4)
    mode, devs = _split_device(dev)
    if ":" in dev and mode not in MODES:
        raise InvalidArgument(f"{NAME} option device_type={value!r}: unknown mode '{mode}'; expected one of "
                              f"{', '.join(m + ':<devices>' for m in MODES)} or a device ({', '.join(available)})")
    if mode and ":" in dev and not devs:
        raise InvalidArgument(f"{NAME} option device_type={value!r}: {mode} needs its devices listed "
                              f"(e.g. {mode}:{','.join(available)})")
    for d in devs:
        if not _device_known(d, available):
            raise InvalidArgument(f"{NAME} option device_type={value!r}: device '{d}' is not available here; "
                                  f"available devices: {', '.join(available)}"
                                  + (f" (or {', '.join(m + ':<devices>' for m in MODES[:3])})" if not mode else ""))
    return dev, suffix


def parse_load_config(text: str, core, available: list) -> dict:
    """{device: {property: value}} from a JSON string or the path of a JSON file."""
    s = str(text).strip()
    if not s:
        return {}
    where = "the JSON string"
    if not s.startswith(("{", "[")):
        if not os.path.isfile(s):
            raise InvalidArgument(f"{NAME} option load_config={text!r}: expected a JSON object or the path of "
                                  "a JSON file, and no such file exists")
        where = f"file '{s}'"
        try:
            with open(s, encoding="utf-8") as f:
                s = f.read()
        except OSError as e:
            raise InvalidArgument(f"{NAME} option load_config: cannot read {where}: {e}") from None
    try:
        cfg = json.loads(s)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"{NAME} option load_config: {where} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"{NAME} option load_config: {where} must hold a JSON object "
                              '{"DEVICE": {"PROPERTY": value}}')
    out = {}
    for dev, props in cfg.items():
        base = dev.split(".")[0]
        if base not in CONFIG_DEVICES:
            raise InvalidArgument(f"{NAME} option load_config: unknown device '{dev}' in {where}; expected one of "
                                  f"{', '.join(CONFIG_DEVICES)} (available here: {', '.join(available)})")
        if not isinstance(props, dict):
            raise InvalidArgument(f"{NAME} option load_config: the entry of device '{dev}' in {where} must be a "
                                  "JSON object of properties")
        clean = {}
        for k, v in props.items():
            if isinstance(v, (dict, list)):
                if k != "DEVICE_PROPERTIES":
                    raise InvalidArgument(f"{NAME} option load_config: property {dev}.{k} in {where} has a nested "
                                          "value; only DEVICE_PROPERTIES may")
                v = json.dumps(v) if isinstance(v, list) else v
            elif v is None:
                raise InvalidArgument(f"{NAME} option load_config: property {dev}.{k} in {where} is null")
            clean[str(k)] = v
        settable = _settable_properties(core, dev, available)
        if settable is not None:
            bad = sorted(k for k in clean if k not in settable)
            if bad:
                raise InvalidArgument(f"{NAME} option load_config: device '{dev}' has no settable propert"
                                      f"{'y' if len(bad) == 1 else 'ies'} {', '.join(bad)} ({where}); its settable "
                                      f"properties: {', '.join(sorted(settable))}")
        out[dev] = clean
    return out


def _settable_properties(core, dev, available):
    """The properties ``dev`` lets one set (RW in its SUPPORTED_PROPERTIES, plus the Core's), or None
    when the device is not here to ask (its entry is then kept unchecked and unused)."""
    base = dev.split(".")[0]
    if base in MODES:
        names = [base]
    elif _device_known(dev, available):
        names = [dev]
    else:
        return None
    try:
        props = core.get_property(names[0], "SUPPORTED_PROPERTIES")
    except Exception:  # noqa: BLE001 - a plugin that cannot answer: leave the entry unchecked
        return None
    rw = {str(k) for k, v in dict(props).items() if "W" in str(v)}
    return rw | CORE_PROPERTIES


def _cpu_has_fp16(core) -> bool:
    try:
        return "FP16" in list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001
        return False


def valid_precisions(device: str, core) -> tuple[str, tuple]:
    """(default, valid values) of ``precision`` for ``device``."""
    mode, devs = _split_device(device)
    if mode:
        return "", PRECISIONS
    base = devs[0].split(".")[0]
    default, valid = DEVICE_PRECISIONS.get(base, ("", PRECISIONS))
    if base == "CPU" and _cpu_has_fp16(core):
        valid = valid + ("FP16",)
    return default, valid


def parse_options(options: dict | None, core, available: list) -> OpenVINOOptions:
    """OpenVINOOptions from a provider-options dict (strings or values), with clear errors for unknown
    names and bad values (the message names the option, the value and the valid values)."""
    options = {str(k): v for k, v in (options or {}).items()}
    for key in options:
        if key not in VALID_OPTIONS and key not in IGNORED_ORT_OPTIONS:
            raise InvalidArgument(f"{NAME}: unknown provider option '{key}'; valid options: "
                                  f"{', '.join(sorted(set(VALID_OPTIONS) | IGNORED_ORT_OPTIONS))}")
    o = OpenVINOOptions()
    suffix = ""
    if "device_type" in options:
        dev, suffix = parse_device(options["device_type"], available)
        o = replace(o, device=dev)
    elif "CPU" not in available and available:
        o = replace(o, device=available[0])
    if "device_id" in options:
        v = str(options["device_id"]).strip()
        if v in ("CPU", "GPU", "NPU"):
            warnings.warn(f"{NAME} option device_id is deprecated (as in onnxruntime); use device_type={v!r}",
                          stacklevel=3)
            if not _device_known(v, available):
                raise InvalidArgument(f"{NAME} option device_id={options['device_id']!r}: device '{v}' is not "
                                      f"available here; available devices: {', '.join(available)}")
            o = replace(o, device=v)
        elif v not in ("", "0"):  # 0 / empty: the habit of passing device_id=0 to every provider
            raise InvalidArgument(f"{NAME} option device_id={options['device_id']!r}: expected CPU, GPU or NPU "
                                  f"(deprecated; prefer device_type, one of {', '.join(available)})")
    default, valid = valid_precisions(o.device, core)
    precision = default
    if suffix or "precision" in options:
        given = str(options.get("precision", suffix)).strip().upper()
        if suffix and "precision" in options and given != suffix:
            raise InvalidArgument(f"{NAME}: precision is given twice (device_type={options['device_type']!r} "
                                  f"and precision={options['precision']!r}); drop the device_type suffix")
        if given not in valid:
            extra = ""
            if o.devices and o.devices[0].startswith("CPU") and given == "FP16":
                extra = " (this CPU lists no FP16 in OPTIMIZATION_CAPABILITIES)"
            raise InvalidArgument(f"{NAME} option precision={options.get('precision', suffix)!r}: device "
                                  f"{o.device} supports {', '.join(valid)}{extra}")
        precision = given
    o = replace(o, precision=precision)
    if "num_of_threads" in options:
        o = replace(o, num_of_threads=_positive_int("num_of_threads", options["num_of_threads"]))
    if "num_streams" in options:
        o = replace(o, num_streams=_positive_int("num_streams", options["num_streams"]))
    if "min_subgraph_size" in options:
        o = replace(o, min_subgraph_size=_positive_int("min_subgraph_size", options["min_subgraph_size"]))
    if "cache_dir" in options:
        o = replace(o, cache_dir=str(options["cache_dir"]))
    for key in ("enable_qdq_optimizer", "disable_dynamic_shapes", "enable_opencl_throttling"):
        if key in options:
            o = replace(o, **{key: _bool(key, options[key])})
    if "model_priority" in options:
        v = str(options["model_priority"]).strip().upper()
        if v not in MODEL_PRIORITIES:
            raise InvalidArgument(f"{NAME} option model_priority={options['model_priority']!r}: expected one of "
                                  f"{', '.join(MODEL_PRIORITIES)}")
        o = replace(o, model_priority=v)
    if "context" in options:
        v = str(options["context"]).strip()
        try:
            ctx = int(v, 16) if v else 0
        except ValueError:
            raise InvalidArgument(f"{NAME} option context={options['context']!r}: expected an OpenCL context "
                                  "handle in hex (e.g. 0x7f12ab00)") from None
        o = replace(o, context=ctx)
    if "load_config" in options:
        text = str(options["load_config"])
        o = replace(o, load_config=parse_load_config(text, core, available), load_config_text=text)
    if any(d.startswith("NPU") for d in o.devices):
        o = replace(o, disable_dynamic_shapes=True)  # onnxruntime: always on for NPU
    for key in sorted(IGNORED_ORT_OPTIONS & set(options)):
        warnings.warn(f"{NAME} option {key} is not supported by ortlite and is ignored", stacklevel=3)
    return o


def compile_config(o: OpenVINOOptions, core) -> dict:
    """The properties compile_model gets: PERFORMANCE_HINT LATENCY unless load_config says otherwise,
    the precision, threads and streams, then the device's load_config entry (which wins)."""
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if o.precision == "FP32":
        cfg["INFERENCE_PRECISION_HINT"] = "f32"
    elif o.precision == "FP16":
        cfg["INFERENCE_PRECISION_HINT"] = "f16"
    elif o.precision == "ACCURACY":
        cfg["EXECUTION_MODE_HINT"] = "ACCURACY"
    if o.num_of_threads:
        cfg["INFERENCE_NUM_THREADS"] = o.num_of_threads
    if o.num_streams:
        cfg["NUM_STREAMS"] = o.num_streams
    if o.model_priority != "DEFAULT" and _supports(core, o.device, "MODEL_PRIORITY"):
        cfg["MODEL_PRIORITY"] = o.model_priority
    if o.enable_opencl_throttling and any(d.startswith("GPU") for d in o.devices) and not o.mode:
        if _supports(core, o.device, "GPU_QUEUE_THROTTLE"):
            cfg["GPU_QUEUE_THROTTLE"] = "LOW"
    extra = o.device_config()
    if "EXECUTION_MODE_HINT" in extra or "INFERENCE_PRECISION_HINT" in extra:
        # onnxruntime: use one of the two; load_config's choice replaces the precision option's
        cfg.pop("EXECUTION_MODE_HINT", None)
        cfg.pop("INFERENCE_PRECISION_HINT", None)
    cfg.update(extra)
    return cfg


def _supports(core, device, prop) -> bool:
    try:
        return prop in dict(core.get_property(device, "SUPPORTED_PROPERTIES"))
    except Exception:  # noqa: BLE001
        return False
