"""The core's half of compiling providers (OpenVINO, TensorRT): claims made safe
(``groups``), a group as a standalone ONNX model (``spec``), building with the engine cache and
fusing groups into EPContext nodes (``build``, ``cache``), EP-context save/load (``epcontext``).
The provider's half is ``ortlite.providers.base.CompilingProvider``."""
from ortlite.compiling.build import Builder, CompiledKernel, EngineBuild, compile_groups
from ortlite.compiling.spec import GroupSpec, TensorSpec

__all__ = ["Builder", "CompiledKernel", "EngineBuild", "GroupSpec", "TensorSpec", "compile_groups"]
