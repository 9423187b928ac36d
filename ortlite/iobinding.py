"""IOBinding: inputs and outputs bound to buffers before a run (onnxruntime.IOBinding).

Bound inputs are used as they are; outputs are written into bound buffers, or
allocated by the run on the bound device and returned as OrtValues without a
copy back to the host unless asked (``copy_outputs_to_cpu``).
"""
from __future__ import annotations

import numpy as np

from ortlite.errors import InvalidArgument
from ortlite.ortvalue import OrtDevice, OrtValue, _element_dtype, array_from_pointer, device_provider


class IOBinding:
    def __init__(self, session):
        self._session = session
        self._inputs: dict[str, object] = {}
        self._outputs: dict[str, tuple] = {}  # name -> (OrtDevice, OrtValue or None)
        self._results: list = []

    # ---- inputs ---------------------------------------------------------------
    def bind_cpu_input(self, name, arr_on_cpu):
        self._inputs[name] = np.asarray(arr_on_cpu)

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        """Bind raw memory at ``buffer_ptr`` (host memory for device 'cpu')."""
        device = OrtDevice(device_type, device_id)
        dtype = _element_dtype(element_type)
        prov = device_provider(device)
        if prov is None:
            self._inputs[name] = array_from_pointer(buffer_ptr, dtype, shape)
        else:  # device memory the caller owns: used in place, no copy
            self._inputs[name] = prov.from_pointer(buffer_ptr, dtype, shape)

    def bind_ortvalue_input(self, name, ortvalue):
        if not isinstance(ortvalue, OrtValue):
            raise TypeError(f"bind_ortvalue_input expects an OrtValue, got {type(ortvalue).__name__}")
        self._inputs[name] = ortvalue._value

    def clear_binding_inputs(self):
        self._inputs.clear()

    def synchronize_inputs(self):
        for p in self._session._providers:
            p.synchronize()

    # ---- outputs ----------------------------------------------------------------
    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        device = OrtDevice(device_type, device_id)
        device_provider(device)  # an unavailable device fails here, with the reason
        self._check_output_name(name)
        if buffer_ptr is None:
            self._outputs[name] = (device, None)
            return
        if element_type is None or shape is None:
            raise InvalidArgument(f"bind_output('{name}'): a buffer_ptr needs element_type and shape too")
        prov = device_provider(device)
        if prov is None:
            arr = array_from_pointer(buffer_ptr, _element_dtype(element_type), shape)
        else:
            arr = prov.from_pointer(buffer_ptr, _element_dtype(element_type), shape)
        self._outputs[name] = (device, OrtValue(arr, device))

    def bind_ortvalue_output(self, name, ortvalue):
        self._check_output_name(name)
        self._outputs[name] = (ortvalue.device(), ortvalue)

    def clear_binding_outputs(self):
        self._outputs.clear()
        self._results = []

    def synchronize_outputs(self):
        for p in self._session._providers:
            p.synchronize()

    def get_outputs(self):
        """OrtValues of the last run, in binding order."""
        return list(self._results)

    def get_outputs_as_ortvaluevector(self):
        return self.get_outputs()

    def copy_outputs_to_cpu(self):
        return [v.numpy() for v in self._results]

    # ---- run ----------------------------------------------------------------------
    def _check_output_name(self, name):
        valid = [o.name for o in self._session.get_outputs()]
        if name not in valid:
            raise InvalidArgument(f"Invalid output name: '{name}'. Valid outputs: {valid}")

    def _run(self, run_options):
        """Run with the bound values. Device outputs are OrtValues ordered on the session's stream:
        the run synchronizes it before returning (unless RunOptions says
        disable_synchronize_execution_providers=1), and their numpy() / __dlpack__(stream) /
        __cuda_array_interface__ are ordered after it either way."""
        s = self._session
        feeds = s._check_feed(self._inputs)
        names = list(self._outputs) or [o.name for o in s.get_outputs()]
        values = s._run_plan(feeds, s._fetch_slots(names), run_options)
        results = []
        for name, v in zip(names, values):
            device, bound = self._outputs.get(name, (OrtDevice("cpu", 0), None))
            prov = s._provider_on(device)  # the session's own provider: copies go on the session's stream
            if prov is None:  # wanted on the host: bring device results back (counted)
                v = s._output_to_host(v)
            elif not prov.is_on_device(v):  # wanted on a device, computed on the host
                s._copy_stats.add(v)
                v = prov.to_device(v)
            if bound is not None and bound.is_tensor():
                dst = bound._value
                if tuple(dst.shape) != tuple(np.shape(v)):
                    raise InvalidArgument(
                        f"output '{name}' has shape {list(np.shape(v))} but the bound buffer has {list(dst.shape)}"
                    )
                if prov is None:
                    dst[...] = v
                else:
                    with prov.active():  # device to device, on the session's stream
                        dst[...] = v
                    bound._owner = prov
                results.append(bound)
            else:
                results.append(OrtValue(np.asarray(v) if isinstance(v, np.generic) else v, device, prov))
        self._results = results
        s._last_copies = (s._copy_stats.count, s._copy_stats.bytes)
