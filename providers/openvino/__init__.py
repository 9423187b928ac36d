"""OpenVINOExecutionProvider: runs groups of ONNX nodes as OpenVINO compiled models.

A compiling provider (``ortlite.providers.base.CompilingProvider``): it claims connected groups of
the nodes OpenVINO's ONNX frontend converts and the device supports (``claim.py``), compiles each
group (a standalone ONNX model, ``GroupSpec``) with ``Core.read_model`` + ``Core.compile_model``,
serializes engines with ``export_model`` / ``import_model`` for the core's engine cache, and runs
them through a pool of InferRequests (``engine.py``). Values come and go as host numpy arrays for
every device_type (CPU, GPU, NPU), so ``device_type`` is 'cpu' for ortlite.

Available where the ``openvino`` package imports and ``Core().available_devices`` is not empty.
Options are onnxruntime's (device_type, precision, num_of_threads, num_streams, cache_dir,
load_config, disable_dynamic_shapes, ...; see ``options.py`` for what each maps to) plus ortlite's
``min_subgraph_size``.
"""
from __future__ import annotations

import importlib
import json

import numpy as np

from ortlite.providers.base import CompileError, CompilingProvider
from ortlite.hints import install_hint
from ortlite.providers.openvino.engine import OVEngine, export, first_lines, get_core, import_engine, make_runner
from ortlite.providers.openvino.options import compile_config, parse_options

__all__ = ["OpenVINOExecutionProvider"]


class OpenVINOExecutionProvider(CompilingProvider):
    name = "OpenVINOExecutionProvider"
    device_type = "cpu"  # values are host numpy arrays whatever the OpenVINO device
    family = "openvino"
    min_group_size_option = "min_subgraph_size"
    cache_dir_option = "cache_dir"

    def __init__(self, options: dict | None = None):
        ok, why = self.availability()
        if not ok:
            raise RuntimeError(f"{self.name} is not available: {why}")
        core = get_core()
        self.ov_options = parse_options(options, core, list(core.available_devices))
        super().__init__({})  # the base would read device_id as an int; OpenVINO's is a device name
        self.options = self.ov_options.as_strings()
        dev = self.ov_options.devices[0] if self.ov_options.devices else ""
        self.device_id = int(dev.rsplit(".", 1)[1]) if "." in dev and dev.rsplit(".", 1)[1].isdigit() else 0
        self._config = None

    # ---- availability ----------------------------------------------------------------------
    @classmethod
    def availability(cls):
        try:
            importlib.import_module("openvino")
        except ImportError:
            return False, f"the openvino Python package is not installed ({install_hint('openvino')})"
        except Exception as e:  # noqa: BLE001 - a broken install raises many things
            return False, f"openvino failed to import: {type(e).__name__}: {e}"
        try:
            devices = list(get_core().available_devices)
        except Exception as e:  # noqa: BLE001
            return False, f"OpenVINO cannot list its devices: {first_lines(e, 2)}"
        if not devices:
            return False, "OpenVINO finds no device (Core().available_devices is empty)"
        return True, ""

    @property
    def xp(self):
        return np

    @property
    def device(self) -> str:
        """The OpenVINO device string (CPU, GPU.1, HETERO:GPU,CPU, ...)."""
        return self.ov_options.device

    @property
    def compile_config(self) -> dict:
        """The properties compile_model gets (precision, threads, streams, load_config...)."""
        if self._config is None:
            self._config = compile_config(self.ov_options, get_core())
        return dict(self._config)

    # ---- claiming --------------------------------------------------------------------------
    def claim_groups(self, graph, nodes):
        """(groups, {id(node): reason}): connected groups of the nodes OpenVINO converts and the
        device supports, each in topological order; see ``claim.py``."""
        from ortlite.providers.openvino.claim import claim

        o = self.ov_options
        core = get_core()
        devices = o.devices or list(core.available_devices)  # bare AUTO / MULTI: any device here
        return claim(core, graph, list(nodes), o.device, devices, o.mode)

    # ---- compiling -------------------------------------------------------------------------
    def cache_key_fields(self) -> dict:
        import openvino

        o = self.ov_options
        return {
            "compiler": f"openvino {openvino.__version__}",
            "device": self._device_identity(),
            "options": {
                "device_type": o.device,
                "precision": o.precision,
                "num_of_threads": o.num_of_threads,
                "num_streams": o.num_streams,
                "load_config": json.dumps(o.load_config, sort_keys=True, default=str),
                "disable_dynamic_shapes": o.disable_dynamic_shapes,
            },
        }

    def _device_identity(self) -> str:
        core = get_core()
        parts = []
        for d in self.ov_options.devices or list(core.available_devices):
            bits = [d]
            for prop in ("FULL_DEVICE_NAME", "DEVICE_ARCHITECTURE", "OPTIMIZATION_CAPABILITIES"):
                try:
                    v = core.get_property(d, prop)
                except Exception:  # noqa: BLE001 - not every plugin has every property
                    continue
                bits.append(",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
            parts.append(" | ".join(bits))
        mode = self.ov_options.mode
        return (f"{mode}: " if mode else "") + "; ".join(parts)

    def compile(self, spec, progress=None):
        """An OVEngine for ``spec`` (CompileError with OpenVINO's message when it cannot)."""
        core = get_core()
        try:
            model = core.read_model(spec.model_bytes)
        except Exception as e:  # noqa: BLE001
            raise CompileError(f"OpenVINO cannot read {spec.describe()}: {first_lines(e)}") from e
        cfg = self.compile_config
        if self.ov_options.disable_dynamic_shapes and not all(p.get_partial_shape().is_static for p in model.inputs):
            engine = OVEngine(self.device, cfg, model=model, name=spec.name)  # compiled per input shapes
        else:
            try:
                cm = core.compile_model(model, self.device, cfg)
            except Exception as e:  # noqa: BLE001
                raise CompileError(f"OpenVINO {self.device} cannot compile {spec.describe()}: {first_lines(e)}") from e
            engine = OVEngine(self.device, cfg, compiled=cm, name=spec.name)
        if progress is not None:
            progress(1.0)
        return engine

    def serialize(self, engine):
        """The compiled model's blob (export_model); None for per-shape engines."""
        return export(engine)

    def deserialize(self, blob, spec):
        return import_engine(blob, self.device, self.compile_config, name=spec.name)

    def make_runner(self, engine, spec):
        """callable(*inputs) -> tuple of outputs (spec.outputs' order and dtypes); thread-safe."""
        return make_runner(engine, spec)
