"""InferenceSession: load, optimize, partition, plan, run (onnxruntime's API)."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings

import numpy as np
import onnx

from ortlite import providers as prov_mod
from ortlite import registry
from ortlite import types as ot
from ortlite.context import KernelContext
from ortlite.errors import Fail, InvalidArgument, InvalidGraph, OrtliteError, ProviderFallbackWarning
from ortlite.ir import Graph, ValueInfo
from ortlite.iobinding import IOBinding
from ortlite.loader import EXTERNAL_DIR_KEY, check_model, load_model, normalize_dims, without_weights
from ortlite.validate import check_types
from ortlite.options import ExecutionMode, RunOptions, SessionOptions, log_scope, log_scope_of, session_log_scope, verbose_trace
from ortlite.ortvalue import OrtValue, device_provider
from ortlite.copies import CopyStats, insert_copies
from ortlite.report import NodePlacement, PlacementReport
from ortlite.compiling import compile_groups
from ortlite.compiling.groups import ClaimMemo
from ortlite.partition import HOST_REASON, Placement, assign, prefer_host_for_shape_math
from ortlite.plan import Plan, Subgraph, VerboseTracer, as_output, check_terminate, running_with
from ortlite.blas import run_begin, run_end

log = logging.getLogger("ortlite")
_async_lock = threading.Lock()


class NodeArg:
    """A graph input or output as onnxruntime describes it: name, shape, type."""

    __slots__ = ("name", "shape", "type")

    def __init__(self, name, shape, type_):
        self.name = name
        self.shape = shape
        self.type = type_

    def __repr__(self):
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


class ModelMetadata:
    __slots__ = ("producer_name", "graph_name", "domain", "description", "graph_description",
                 "version", "custom_metadata_map")

    def __init__(self, model: onnx.ModelProto):
        self.producer_name = model.producer_name
        self.graph_name = model.graph.name
        self.domain = model.domain
        self.description = model.doc_string
        self.graph_description = model.graph.doc_string
        self.version = model.model_version
        self.custom_metadata_map = {p.key: p.value for p in model.metadata_props}


def _resolve_providers(providers, provider_options, cpu_fallback=True):
    """[(canonical name, options)] that are available, warning once for each skipped one.

    The CPU provider is appended as the fallback unless ``cpu_fallback`` is off (the user's
    session.disable_cpu_ep_fallback); naming it in the list always keeps it.
    """
    if providers is None:  # every available provider, in default priority order (GPU first)
        providers = prov_mod.available_provider_names()
    if isinstance(providers, str):
        providers = [providers]
    if provider_options is not None and len(provider_options) != len(providers):
        raise ValueError(
            f"provider_options has {len(provider_options)} entries but providers has {len(providers)}; "
            "give one options dict per provider"
        )
    chosen = []
    for k, p in enumerate(providers):
        if isinstance(p, (tuple, list)):
            if len(p) != 2 or not isinstance(p[1], dict):
                raise ValueError(f"a provider entry must be a name or (name, options dict), got {p!r}")
            name, opts = p
        else:
            name, opts = p, {}
        if provider_options is not None:
            opts = {**opts, **(provider_options[k] or {})}
        name = prov_mod.canonical_name(name)
        ok, why = prov_mod.availability(name)
        if not ok:
            msg = f"{name} is not available here and is skipped: {why}"
            warnings.warn(msg, ProviderFallbackWarning, stacklevel=3)
            log.info(msg)
            continue
        if any(name == c[0] for c in chosen):
            continue
        chosen.append((name, opts))
    if not any(n == "CPUExecutionProvider" for n, _ in chosen) and cpu_fallback:
        chosen.append(("CPUExecutionProvider", {}))
    if not chosen:
        asked = ", ".join(str(p[0] if isinstance(p, (tuple, list)) else p) for p in providers)
        raise Fail(
            f"no execution provider is available from [{asked}] (see the warnings for why) and "
            "fallback to CPUExecutionProvider is disabled (session.disable_cpu_ep_fallback=1)"
        )
    return chosen


class InferenceSession:
    """Runs an ONNX model (onnxruntime.InferenceSession).

    Args:
        path_or_bytes: a file path, the model's bytes or an ``onnx.ModelProto``.
        sess_options: ``SessionOptions``.
        providers: provider names (or ``(name, options)`` tuples) in priority order.
        provider_options: one options dict per entry of ``providers``.
        disabled_optimizers: names of optimizer passes to skip.
    """

    @session_log_scope
    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs):
        t0 = time.perf_counter()
        t0_ns = time.perf_counter_ns()
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._disabled_optimizers = list(kwargs.pop("disabled_optimizers", None) or [])
        self._enable_fallback = bool(kwargs.pop("enable_fallback", True))  # onnxruntime's keyword: see disable_fallback
        if kwargs:
            raise TypeError(f"InferenceSession got unexpected keyword arguments {sorted(kwargs)}")
        model, model_dir, label = self._load(path_or_bytes)
        self._model_path = label
        self._disable_cpu_fallback = (
            self._sess_options._config.get("session.disable_cpu_ep_fallback", "0") == "1"
        )
        chosen = _resolve_providers(providers, provider_options, not self._disable_cpu_fallback)
        self._providers = [prov_mod.provider_class(n)(o) for n, o in chosen]
        try:
            graph = self._create(model, model_dir, label)
        except OrtliteError:
            raise
        except Exception as e:  # noqa: BLE001 - an internal failure: an ortlite error with the cause kept
            raise Fail(f"{label}: session creation failed: {type(e).__name__}: {e}") from e
        self._input_info = {v.name: v for v in graph.inputs}
        self._feedable = frozenset([a.name for a in self._inputs] + self._overridable_names)
        self._threads = max(0, int(self._sess_options.intra_op_num_threads or 0))
        self._thread_limiter = _thread_limiter(self._threads)  # the run's BLAS share (ortlite.blas)
        self._pool = None
        self._async_pool = None  # run_async / arun workers, made on first use
        inter = int(self._sess_options.inter_op_num_threads or 0)
        if self._sess_options.execution_mode == ExecutionMode.ORT_PARALLEL and inter != 1:
            import concurrent.futures
            import os

            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=inter if inter > 0 else (os.cpu_count() or 2), thread_name_prefix="ortlite-inter-op")
        self._profiling_start_ns = time.time_ns()
        self._profiler = None
        if self._sess_options.enable_profiling:
            from ortlite.profiling import Profiler

            self._profiler = Profiler(self._sess_options.profile_file_prefix)
            self._profiler.start_ns = t0_ns
            self._profiler.session_event("session_initialization", t0_ns, time.perf_counter_ns())
        self._init_fast_run()
        self.session_creation_s = time.perf_counter() - t0

    def _create(self, model, model_dir, label):
        """Check, infer shapes, build the IR and compile the plan; returns the graph. Errors are ortlite's."""
        light, weight_inputs = without_weights(model)  # checker and shape inference need no weight data
        declared = normalize_dims(light)  # a copy: the caller's ModelProto keeps its -1 dims
        check_model(light, label)  # sorts light's nodes where they are out of order
        self._model = model
        self._meta = ModelMetadata(model)
        registry.load_all_kernels()
        for p in self._providers:  # providers that share another's resources (TensorRT: the CUDA stream)
            if hasattr(p, "attach"):
                p.attach(self._providers)
        self._device_providers = [p for p in self._providers if p.device_type != "cpu"]
        self._copy_stats = CopyStats()
        self._copies = []
        self._last_copies = (0, 0)

        opsets = {("" if op.domain == "ai.onnx" else op.domain): op.version for op in model.opset_import}
        if "" not in opsets and model.ir_version < 3:
            opsets[""] = 1
        inferred = _infer_shapes(light)
        typed = {vi.name for vi in light.graph.value_info}
        check_types(inferred.graph, opsets, label, declared=typed)
        functions = {(f.domain, f.name): f for f in model.functions}
        try:
            graph = Graph.from_proto(inferred.graph, opsets, functions, model_dir, init_source=model.graph,
                                     drop_inputs=set(weight_inputs))
        except (ValueError, TypeError) as e:
            raise InvalidGraph(f"{label}: cannot build the graph: {e}") from e
        self._apply_overrides(graph)
        self._graph = graph
        self._describe_io(graph, model, declared)
        self._placements = []
        self._body_placements = []
        self._body_copies = []
        from ortlite.compiling import Builder

        self._builder = Builder(model_dir)
        self._plan = self._compile(graph, [a.name for a in self._inputs] + self._overridable_names,
                                   [v.name for v in graph.outputs], (), top=True)
        self._output_index = {n: k for k, n in enumerate(self._plan.output_names)}
        self._defaults = self._stage_defaults(graph)
        self._graph_runner = self._cuda_graph_runner()
        return graph

    def _init_fast_run(self):
        """The fixed-cost path of ``run`` (CPU only, no profiling, no inter-op pool): feeds that are numpy
        arrays of the expected dtype and of a shape checked before (per input name) skip the checks, and
        the indices of requested output names are kept per name list."""
        infos = [self._input_info.get(a.name) for a in self._inputs]
        dtypes = [None if i is None or i.kind != "tensor" else i.dtype for i in infos]
        more = (self._profiler is not None or self._pool is not None or self._graph_runner is not None
                or self._device_providers)  # runs needing more than the plan
        self._fast_dtypes = None if more or any(d is None or d == np.dtype(object) for d in dtypes) else tuple(
            zip([a.name for a in self._inputs], dtypes))
        self._fast_shapes = {a.name: set() for a in self._inputs}  # shapes that passed _check_value
        self._fast_tail = [self._defaults.get(n) for n in self._overridable_names]
        self._fetch_index = {}  # tuple of output names -> their indices in the plan's outputs
        so = self._sess_options  # the run's log severity when its RunOptions leave it at -1
        self._log_scope = log_scope_of(so.log_severity_level, so.log_verbosity_level)

    # ---- building -------------------------------------------------------------
    def _cuda_graph_runner(self):
        """A CudaGraphRunner when a provider was asked for enable_cuda_graph (refused with the
        reason when the plan cannot be captured), else None."""
        wants = [p for p in self._device_providers
                 if getattr(getattr(p, "cuda_options", None), "enable_cuda_graph", False)]
        if not wants:
            return None
        prov = wants[0]
        prov.check_graph_capture(self._placements)
        if self._host_read_feeds:
            raise Fail("CUDAExecutionProvider: enable_cuda_graph=1 needs every value of the run on the device, "
                       f"but inputs {sorted(self._host_read_feeds)} are read on the host")
        if self._sess_options.enable_profiling:
            raise Fail("CUDAExecutionProvider: enable_cuda_graph=1 and enable_profiling cannot be combined "
                       "(a replayed graph has no per-node timings)")
        from ortlite.providers.cuda import CudaGraphRunner

        return CudaGraphRunner(prov, self._plan.input_names, self._copy_stats)

    def _apply_overrides(self, graph):
        by_name = self._sess_options._free_dim_by_name
        if by_name:
            for v in graph.inputs:
                if v.shape:
                    v.shape = [by_name.get(d, d) if isinstance(d, str) else d for d in v.shape]
        for name, value in self._sess_options._initializers.items():
            if name not in graph.initializers:
                continue  # as onnxruntime: a name the model lacks is ignored
            old, new = graph.initializers[name], value.numpy() if isinstance(value, OrtValue) else np.asarray(value)
            if new.dtype != old.dtype or new.shape != old.shape:
                raise InvalidArgument(f"add_initializer: '{name}' is {new.dtype}{list(new.shape)} but the model's "
                                      f"initializer is {old.dtype}{list(old.shape)}; expected the same type and shape")
            graph.initializers[name] = new

    def _describe_io(self, graph, model, declared):
        """NodeArgs as onnxruntime reports them: a dim named by shape inference (``unk__N``, not one
        of the model's ``declared`` names) is unknown (None)."""
        inits = set(graph.initializers)

        def arg(v):
            shape = [None if isinstance(d, str) and d not in declared else d for d in _shape_of(v)]
            return NodeArg(v.name, shape, v.type_string)

        self._inputs = [arg(v) for v in graph.inputs if v.name not in inits]
        self._outputs = [arg(v) for v in graph.outputs]
        # Initializers listed as graph inputs (IR >= 4 allows it) may be fed to override them.
        over = [v for v in graph.inputs if v.name in inits] if model.ir_version >= 4 else []
        self._overridable = [arg(v) for v in over]
        self._overridable_names = [v.name for v in over]

    def _compile(self, graph: Graph, input_names, output_names, outer_names, top=False, outer_constants=None) -> Plan:
        level = int(self._sess_options.graph_optimization_level)
        constants = dict(graph.initializers)
        for n in input_names:  # fed values shadow initializers of the same name
            constants.pop(n, None)
        # A body's outer-scope reads of the parent's constants are constants here too: they fold, and a
        # device copy of them is made once at session start instead of per run.
        outer_consts = {n: outer_constants[n] for n in outer_names
                        if outer_constants is not None and n in outer_constants and n not in input_names}
        constants.update(outer_consts)
        from ortlite.optimizer import PassContext, optimize_basic, optimize_extended

        before = len(graph.nodes)
        ctx = PassContext(graph, constants, set(input_names) | (set(outer_names) - set(outer_consts)), output_names,
                          level, self._providers)
        optimize_basic(ctx, self._disabled_optimizers)
        if not top:
            log.info("subgraph '%s': %d node(s) after optimization (%d before)", graph.name, len(graph.nodes), before)
        graph.toposort()
        strict = self._disable_cpu_fallback
        memo = ClaimMemo(constants, self._builder.digests)  # compiling providers' claims
        placements = assign(graph, self._providers, strict, memo=memo)
        if optimize_extended(ctx, self._disabled_optimizers):
            graph.toposort()
            placements = assign(graph, self._providers, strict, memo=memo)  # fused nodes get their provider
        prefer_host_for_shape_math(placements, self._providers)
        if any(p.group is not None for p in placements):
            def reassign(excluded):
                pl = assign(graph, self._providers, strict, excluded, memo)
                prefer_host_for_shape_math(pl, self._providers)
                return pl

            placements = compile_groups(graph, placements, constants, output_names, self._builder, reassign)
            _drop_compiled_weights(graph, placements, constants, output_names)
        if top and self._sess_options.optimized_model_filepath:
            self._save_optimized(graph, constants, ctx.fed, placements)
        bound = []
        implicit_needs = {}  # id(node) -> {outer name: where its bodies read it (None: several places)}
        for pl in placements:
            node = pl.node
            attrs = dict(node.attrs)
            for an, sg in node.subgraphs.items():
                attrs[an] = self._compile_subgraph(sg, graph, constants)
            if node.subgraphs and self._device_providers:
                implicit_needs[id(node)] = _merge_needs([attrs[an] for an in node.subgraphs])
            kctx = KernelContext(
                node, node.opset, pl.provider.xp, pl.provider,
                [_info(graph, n, constants) for n in node.inputs],
                [_info(graph, n, constants) for n in node.outputs],
                constants, node.implicit_inputs,
            )
            try:
                with pl.provider.active():
                    fn = pl.kernel.bind(kctx, attrs)
            except (Fail, InvalidArgument, InvalidGraph, NotImplementedError) as e:
                if not isinstance(e, OrtliteError) or f"'{node.name}'" in str(e):
                    raise
                # an ortlite error that does not name its node (a shared helper's): the same class, named
                raise type(e)(f"{node.op_type} node '{node.name}': {e}") from e
            except Exception as e:  # noqa: BLE001
                raise Fail(
                    f"preparing {node.op_type} node '{node.name}' ({pl.kernel.where}) failed: "
                    f"{type(e).__name__}: {e}"
                ) from e
            bound.append((node, pl.provider.wrap_kernel(fn, node, pl.kernel), pl.provider.name))
        # Copies go in after binding: kernels prepared with the host values of their constants.
        output_names = list(output_names)
        body = None if top else (list(input_names), list(output_names), output_names)
        steps, copies, host_feeds, outer_needs = insert_copies(
            graph, placements, self._providers, constants, self._copy_stats, subgraph=body,
            implicit_needs=implicit_needs)
        self._last_outer_needs = outer_needs
        fn_of = {id(b[0]): b[1] for b in bound}
        bound = [
            (s.node, fn_of[id(s.original or s.node)], s.provider.name) if isinstance(s, Placement) else s
            for s in steps
        ]
        if top:
            self._placements = placements
            self._copies = copies
            self._host_read_feeds = host_feeds
        else:  # If/Loop/Scan bodies: in the placement report after the main graph's nodes
            self._body_placements.extend(placements)
            self._body_copies.extend(copies)
        self._report_placement(placements, top)
        return Plan(bound, list(input_names) + list(outer_names), output_names, constants, graph.name)

    def _save_optimized(self, graph, constants, fed, placements):
        from ortlite.compiling.epcontext import prepare_for_save
        from ortlite.optimizer.export import save_optimized

        path = self._sess_options.optimized_model_filepath
        if self._body_builds_compiled():
            raise Fail("optimized_model_filepath: groups compiled inside If/Loop/Scan bodies cannot be saved as "
                       "EPContext nodes yet; drop the option or the compiling provider")
        infos = prepare_for_save(graph, placements, path)  # compiled groups become EPContext nodes
        save_optimized(path, graph, constants, fed, self._model, value_info=infos)
        log.info("optimized model written to %s", self._sess_options.optimized_model_filepath)

    def _compile_subgraph(self, sg: Graph, parent: Graph, parent_constants=None) -> Subgraph:
        # Outer-scope values the body reads come through ``outer``; types known in the parent
        # (or its parents) are copied in so the body's kernels see them.
        outer = sg.free_names()
        p = parent
        while p is not None:
            for n in outer:
                if n not in sg.value_info and n in p.value_info:
                    sg.value_info[n] = p.value_info[n]
            p = p.parent
        ins = [v.name for v in sg.inputs]
        outs = [v.name for v in sg.outputs]
        plan = self._compile(sg, ins, outs, outer, outer_constants=parent_constants)
        return Subgraph(plan, ins, outs, outer, sg.inputs, sg.outputs, self._last_outer_needs)

    def _report_placement(self, placements, top):
        if not placements:
            return
        first = self._providers[0].name
        fell = [p for p in placements if p.provider.name != first]
        counts = {}
        for p in placements:
            counts[p.provider.name] = counts.get(p.provider.name, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
        # shape math kept on the host by design is reported, not warned about
        fell_back = [p for p in fell if not any(r == HOST_REASON for _, r in p.refused)]
        if fell_back:
            ops = sorted({p.node.op_type for p in fell_back})
            log.warning("placement: %s; %d node(s) not on %s (ops: %s)", summary, len(fell_back), first,
                        ", ".join(ops))
        elif fell:
            log.info("placement: %s; %d shape-math node(s) kept on the host", summary, len(fell))
        else:
            log.info("placement: all %d nodes on %s", len(placements), first)

    # ---- description ---------------------------------------------------------------
    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_overridable_initializers(self):
        return list(self._overridable)

    def get_modelmeta(self):
        return self._meta

    def get_providers(self):
        return [p.name for p in self._providers]

    def get_provider_options(self):
        return {p.name: p.get_provider_options() for p in self._providers}

    def get_session_options(self):
        return self._sess_options

    def get_profiling_start_time_ns(self):
        return self._profiling_start_ns

    def get_placement(self):
        """Where each node runs and why (an ``ortlite.PlacementReport``): the main graph's nodes,
        then the nodes of If/Loop/Scan bodies; copies of both. A node compiled in a group is
        listed itself, with its group's name."""
        nodes = []
        for p in self._placements + self._body_placements:
            for m in (getattr(p.kernel, "members", None) or [p]):
                nodes.append(NodePlacement(m.node.name, m.node.op_type, m.node.domain, p.provider.name,
                                           tuple(m.refused), p.group or ""))
        return PlacementReport(nodes, self._copies + self._body_copies, self.get_providers(), self,
                               self._builder.builds)

    @property
    def engine_builds(self):
        """The compiled groups of this session (``ortlite.compiling.EngineBuild``: group, provider,
        nodes, seconds, cache 'hit' / 'miss' / 'rebuilt' / 'off' / 'epcontext', entry path)."""
        return list(self._builder.builds)

    def _body_builds_compiled(self):
        return any(p.group is not None for p in self._body_placements)

    def end_profiling(self):
        """Write the profile (Chrome-trace JSON, onnxruntime's format) and return its file name.

        Returns None when profiling was not enabled (SessionOptions.enable_profiling).
        """
        if self._profiler is None:
            return None
        name = self._profiler.end()
        self._profiler = None
        return name

    def io_binding(self):
        return IOBinding(self)

    # ---- running -------------------------------------------------------------------------
    def run(self, output_names, input_feed, run_options=None):
        """Run the model; returns a list of numpy arrays (lists for sequences, dicts for maps), each the
        caller's own: an output that would share memory with a feed, a constant or another output is
        copied (onnxruntime's outputs are always fresh)."""
        if self._fast_dtypes is not None and type(input_feed) is dict:
            vals = self._checked_before(input_feed)
            if vals is not None:
                plan = self._plan
                if run_options is not None or self._log_scope is not None:
                    out = self._run_vals(vals, None, run_options)
                else:
                    budget = self._threads
                    run_begin(budget)
                    try:
                        out = plan.run(vals)
                    finally:
                        run_end(budget)
                    if plan.own_slots:
                        out = plan.own_outputs(out, plan.output_slots, vals)
                if output_names:
                    index = self._fetch_index.get(tuple(output_names))
                    if index is None:
                        index = self._output_indices(output_names)
                    out = [out[k] for k in index]
                return [v if type(v) is np.ndarray else as_output(v) for v in out]
        if not isinstance(input_feed, dict):
            raise InvalidArgument(
                f"input_feed must be a dict of input name -> numpy array, got {type(input_feed).__name__}"
            )
        feeds = self._check_feed(input_feed)
        fetch = self._fetch_slots(output_names)
        values = self._run_plan(feeds, fetch, run_options)
        if self._device_providers:
            stats = self._copy_stats
            values = [self._output_to_host(v) for v in values]
            self._last_copies = (stats.count, stats.bytes)
        return [as_output(v) for v in values]

    def run_async(self, output_names, input_feed, callback, user_data=None, run_options=None):
        """Run on a worker thread and call ``callback(results, user_data, err)`` there (onnxruntime's
        run_async): ``results`` is run()'s list and ``err`` "" on success; on failure ``results`` is []
        and ``err`` the error's message. Input names are checked here, before it returns (a missing or
        unknown input raises at once, as onnxruntime's does); everything else arrives through ``err``.
        Returns None. The workers are the session's own (as many as its intra-op budget, at least 2),
        so overlapping runs share the BLAS threads as concurrent run() calls do."""
        if not callable(callback):
            raise TypeError(f"run_async: callback must be callable, got {type(callback).__name__}")
        if not isinstance(input_feed, dict):
            raise InvalidArgument(
                f"input_feed must be a dict of input name -> numpy array, got {type(input_feed).__name__}")
        self._check_names(input_feed)

        def work():
            try:
                results, err = self.run(output_names, input_feed, run_options), ""
            except Exception as e:  # noqa: BLE001 - reported to the callback, as onnxruntime does
                results, err = [], str(e) or type(e).__name__
            try:
                callback(results, user_data, err)
            except Exception:  # noqa: BLE001 - the caller's callback: logged, the worker keeps going
                log.exception("run_async: the callback raised")

        self._async_workers().submit(work)

    async def arun(self, output_names, input_feed, run_options=None):
        """``await session.arun(output_names, input_feed)``: run() for asyncio code, on the session's
        worker threads (the event loop keeps serving meanwhile); returns run()'s list or raises its
        error. Cancelling the awaiting task stops the run at its next step (RunOptions.terminate on the
        run's own RunOptions; the caller's ``run_options`` are copied, never changed)."""
        import asyncio

        if not isinstance(input_feed, dict):
            raise InvalidArgument(
                f"input_feed must be a dict of input name -> numpy array, got {type(input_feed).__name__}")
        self._check_names(input_feed)
        ro = RunOptions()
        if run_options is not None:
            ro.__dict__.update({k: v for k, v in vars(run_options).items() if k != "_config"})
            ro._config = dict(run_options._config)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._async_workers(), self.run, output_names, input_feed, ro)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            ro.terminate = True  # the worker's run stops at its next step; its error is dropped
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

    def _check_names(self, input_feed):
        """A feed's names: each one the model's input (or overridable initializer), none missing."""
        unknown = [n for n in input_feed if n not in self._feedable or n not in self._input_info]
        if unknown:
            raise InvalidArgument(
                f"Invalid input name: '{unknown[0]}'. Valid inputs: {[a.name for a in self._inputs]}")
        missing = [a.name for a in self._inputs if a.name not in input_feed]
        if missing:
            raise InvalidArgument(
                f"Required inputs ({missing}) are missing from input feed ({list(input_feed)}).")

    def _async_workers(self):
        pool = self._async_pool
        if pool is None:
            import concurrent.futures

            with _async_lock:
                pool = self._async_pool
                if pool is None:
                    from ortlite.blas import cores

                    pool = self._async_pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=max(2, self._threads or cores()), thread_name_prefix="ortlite-async")
        return pool

    def _stage_defaults(self, graph):
        """The values of overridable initializers (graph inputs with an initializer) when not fed:
        one read only on a device is copied there once, here, not by its copy step every run."""
        defaults = dict(graph.initializers)
        providers = {p.device_type: p for p in self._device_providers}
        for c in self._copies:
            if (c.value in self._overridable_names and c.src == "cpu" and c.dst in providers
                    and c.value not in self._host_read_feeds and c.value in defaults):
                prov = providers[c.dst]
                with prov.active():
                    defaults[c.value] = prov.to_device(defaults[c.value])
        return defaults

    @contextlib.contextmanager
    def _device_context(self):
        """The session's device providers current on this thread (ORT_PARALLEL's worker threads)."""
        with contextlib.ExitStack() as stack:
            for p in self._device_providers:
                stack.enter_context(p.active())
            yield

    def _provider_on(self, device):
        """This session's provider for ``device`` (its stream orders the session's values), else the
        process-wide one of ortvalue.device_provider; None for the CPU."""
        if device.device_type() == "cpu":
            return None
        for p in self._device_providers:
            if p.device_type == device.device_type() and getattr(p, "device_id", 0) == device.device_id():
                return p
        return device_provider(device)

    def _output_to_host(self, v):
        if isinstance(v, list):  # a sequence: element by element, each copy counted
            return [self._output_to_host(x) for x in v]
        for p in self._device_providers:
            if p.is_on_device(v):
                self._copy_stats.add(v)
                return p.to_host(v)
        return v

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None):
        feeds = {k: (v._value if isinstance(v, OrtValue) else v) for k, v in input_dict_ort_values.items()}
        feeds = self._check_feed(feeds)
        values = self._run_plan(feeds, self._fetch_slots(output_names), run_options)
        return [OrtValue(as_output(v)) for v in values]

    def run_with_iobinding(self, iobinding, run_options=None):
        iobinding._run(run_options)

    def _fetch_slots(self, output_names):
        if output_names is None or len(output_names) == 0:
            return None
        return [self._plan.output_slots[k] for k in self._output_indices(output_names)]

    def _output_indices(self, output_names):
        """Indices of ``output_names`` in the plan's outputs (kept per name list, a few dozen at most)."""
        index = []
        for n in output_names:
            k = self._output_index.get(n)
            if k is None:
                raise InvalidArgument(
                    f"Invalid output name: '{n}'. Valid outputs: {list(self._plan.output_names)}"
                )
            index.append(k)
        if len(self._fetch_index) < 64:
            self._fetch_index[tuple(output_names)] = index
        return index

    def _checked_before(self, input_feed):
        """The plan's input values when the feed names exactly the model's inputs, each a numpy array
        of its input's dtype and of a shape that passed the checks before; else None (check it all)."""
        names = self._fast_dtypes
        if len(input_feed) != len(names):
            return None
        shapes = self._fast_shapes
        vals = []
        for n, dtype in names:
            v = input_feed.get(n)
            if type(v) is not np.ndarray or v.dtype is not dtype or v.shape not in shapes[n]:
                return None
            vals.append(v)
        vals += self._fast_tail
        return vals

    def _run_plan(self, feeds, fetch, run_options):
        defaults = self._defaults  # overridable initializers not fed keep their value
        vals = [feeds[n] if n in feeds else defaults.get(n) for n in self._plan.input_names]
        if self._device_providers and self._host_read_feeds:
            vals = [self._output_to_host(v) if n in self._host_read_feeds else v
                    for n, v in zip(self._plan.input_names, vals)]
        return self._run_vals(vals, fetch, run_options)

    def _run_vals(self, vals, fetch, run_options):
        """Run the plan on ``vals`` (its inputs, in order) at the run's log severity (RunOptions', else
        the session's), with ``run_options`` current for its terminate flag; outputs the caller owns."""
        check_terminate(run_options)
        scope = self._log_scope
        if run_options is not None:
            scope = log_scope_of(run_options.log_severity_level, run_options.log_verbosity_level) or scope
        with log_scope(scope), running_with(run_options):
            out = self._run_scoped(vals, fetch, run_options)
        plan = self._plan
        if plan.own_slots:
            out = plan.own_outputs(out, fetch or plan.output_slots, vals)
        return out

    def _run_scoped(self, vals, fetch, run_options):
        self._copy_stats.reset()
        if self._graph_runner is not None:
            plan, runner = self._plan, self._graph_runner

            def run():
                out = runner.run(vals, lambda v: plan.run(v, None))
                if fetch is None:
                    return out
                return [out[plan.output_slots.index(s)] for s in fetch]
        elif self._profiler is not None or verbose_trace():
            prof = self._profiler or VerboseTracer
            run = lambda: self._plan.run_profiled(vals, prof, fetch, run_options=run_options)  # noqa: E731
        elif self._pool is not None:
            ctx = self._device_context if self._device_providers else None
            run = lambda: self._plan.run_parallel(vals, self._pool, fetch, ctx, run_options)  # noqa: E731
        else:
            run = lambda: self._plan.run(vals, fetch, run_options)  # noqa: E731
        r0 = time.perf_counter_ns()
        if self._device_providers:  # device runs mostly wait on the device: never held for a slot
            with self._device_context(), _RunShare(self._threads, admit=False):
                out = run()
        else:
            with self._thread_limiter():
                out = run()
        # as onnxruntime: the run's device work is finished when run() returns, unless the caller
        # orders later work on the session's stream itself (then values carry that stream)
        if self._device_providers and (
                run_options is None or run_options._config.get("disable_synchronize_execution_providers") != "1"):
            for p in self._device_providers:
                p.synchronize()
        if self._profiler is not None:
            self._profiler.session_event("model_run", r0, time.perf_counter_ns())
        self._last_copies = (self._copy_stats.count, self._copy_stats.bytes)
        return out

    def _check_feed(self, input_feed):
        self._check_names(input_feed)  # unknown or missing names first, as onnxruntime's _validate_input
        feeds = {}
        for name, value in input_feed.items():
            checked = feeds[name] = _check_value(name, value, self._input_info[name])
            if checked is value and type(value) is np.ndarray and name in self._fast_shapes:
                shapes = self._fast_shapes[name]
                if len(shapes) >= 64:
                    shapes.clear()
                shapes.add(value.shape)
        return feeds


    # ---- onnxruntime's re-creation and fallback API -------------------------------------------------------
    _enable_fallback = True  # onnxruntime's default; see enable_fallback

    def _load(self, source):
        """load_model with this session's options. ``set_providers`` hands over the model this session
        loaded (``_preloaded``); names given to ``SessionOptions.add_external_initializers`` take their data
        from memory, so their external files need not exist."""
        preloaded = self.__dict__.pop("_preloaded", None)
        if preloaded is not None:
            return preloaded
        external_dir = self._sess_options._config.get(EXTERNAL_DIR_KEY)
        supplied = self._sess_options._external_initializers
        if not supplied:
            return load_model(source, external_dir)
        import os

        model, model_dir, label = onnx.ModelProto(), None, "<ModelProto>"
        try:
            if isinstance(source, onnx.ModelProto):
                model.CopyFrom(source)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                model.ParseFromString(bytes(source))
                label = "<bytes>"
            else:
                with open(source, "rb") as f:
                    model.ParseFromString(f.read())
                label, model_dir = os.fspath(source), os.path.dirname(os.path.abspath(source))
        except Exception:  # noqa: BLE001 - unreadable: load_model raises onnxruntime's error for it
            return load_model(source, external_dir)
        if not model.HasField("graph"):
            return load_model(source, external_dir)
        _supply_initializers(model, supplied, label)
        return load_model(model, model_dir or external_dir)[0], model_dir, label

    def set_providers(self, providers=None, provider_options=None) -> None:
        """Re-create the session with another provider list (onnxruntime's set_providers): the model already
        loaded is partitioned, optimized and planned again for ``providers`` (names or (name, options)
        tuples; None: every available one) with the same SessionOptions. If that fails the session is
        left as it was."""
        fresh = object.__new__(type(self))
        fresh._preloaded = (self._model, self._builder.model_dir, self._model_path)
        type(self).__init__(fresh, self._model, self._sess_options, providers, provider_options,
                            disabled_optimizers=self._disabled_optimizers)
        if "_enable_fallback" in self.__dict__:
            fresh._enable_fallback = self._enable_fallback
        for pool in (self._pool, self._async_pool):
            if pool is not None:
                pool.shutdown(wait=False)
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)

    def disable_fallback(self) -> None:
        """onnxruntime: no retry on CPU when a run fails with EPFail. ortlite's runs never fail that way (a
        failing kernel raises RuntimeException naming its node), so this only records the choice; the
        fallback ortlite does make, at session creation (an unavailable provider is skipped, a group that
        does not compile goes to the next providers, nodes nobody takes go to the CPU), is always on, and
        the CPU part is turned off with the session config entry session.disable_cpu_ep_fallback=1."""
        self._enable_fallback = False

    def enable_fallback(self) -> None:
        """The default: see ``disable_fallback``."""
        self._enable_fallback = True


def _supply_initializers(model, supplied, label):
    """Put the values given to SessionOptions.add_external_initializers into ``model``'s initializers."""
    from onnx import numpy_helper

    by_name = {t.name: t for t in model.graph.initializer}
    missing = sorted(set(supplied) - set(by_name))
    if missing:
        raise Fail(f"add_external_initializers: {missing} are not initializers of {label}; expected names among "
                   f"{sorted(by_name)[:20]}")
    for name, value in supplied.items():
        t = by_name[name]
        arr = value.numpy() if isinstance(value, OrtValue) else np.asarray(value)
        want = ot.np_dtype(t.data_type)
        if arr.dtype != want or list(arr.shape) != list(t.dims):
            raise InvalidArgument(f"add_external_initializers: '{name}' is {arr.dtype}{list(arr.shape)} but the "
                                  f"model declares {want}{list(t.dims)}; expected the same type and shape")
        t.CopyFrom(numpy_helper.from_array(arr, name))


def _drop_compiled_weights(graph, placements, constants, output_names):
    """Weights that only compiled groups read live in their engines: the plan does not keep them."""
    used = set(output_names)
    for n in graph.nodes:
        used.update(x for x in list(n.inputs) + list(n.implicit_inputs) if x)
    for p in placements:
        spec = getattr(p.kernel, "spec", None)
        for name in getattr(spec, "weight_names", ()):
            if name not in used:
                constants.pop(name, None)


def _merge_needs(subgraphs) -> dict:
    """{outer name: where every reader in ``subgraphs`` needs it, or None where they differ}."""
    merged = {}
    for sg in subgraphs:
        for n, need in getattr(sg, "outer_needs", {}).items():
            merged[n] = need if merged.get(n, need) == need else None
    return merged


def _check_value(name, value, info: ValueInfo):
    if isinstance(value, OrtValue):
        value = value._value
    kind = info.kind
    if kind in ("sequence", "map") or (kind == "optional"):
        if kind == "sequence" and not isinstance(value, (list, tuple)):
            raise InvalidArgument(f"input '{name}' is {info.type_string}: expected a list of arrays, got {type(value).__name__}")
        if kind == "sequence":
            return [np.asarray(v) for v in value]
        return value
    expected = info.dtype
    if not hasattr(value, "dtype") or not hasattr(value, "shape"):
        if isinstance(value, (list, tuple, int, float, bool, str, np.generic)):
            try:
                value = np.asarray(value, dtype=expected if expected is not None and expected != object else None)
            except (ValueError, TypeError, OverflowError) as e:  # "abc" as float, a ragged list...
                raise InvalidArgument(
                    f"input '{name}' ({type(value).__name__}) cannot be read as {info.type_string}: {e}"
                ) from e
        else:
            raise InvalidArgument(
                f"input '{name}' must be a numpy array (expected {info.type_string}), got {type(value).__name__}"
            )
    if value.dtype.kind in "US" and expected == np.dtype(object):
        value = value.astype(str).astype(object)
    if expected is not None and value.dtype != expected:
        raise InvalidArgument(
            f"Unexpected input data type for input '{name}'. Actual: ({ot.dtype_type_string(value.dtype) if _known(value.dtype) else value.dtype}), "
            f"expected: ({info.type_string})"
        )
    shape = info.shape
    if shape is not None:
        if value.ndim != len(shape):
            raise InvalidArgument(
                f"Invalid rank for input: {name} Got: {value.ndim} Expected: {len(shape)} "
                f"(expected shape {_shape_str(shape)}, got {list(value.shape)}). "
                "Please fix either the inputs or the model."
            )
        bad = [(k, g, e) for k, (g, e) in enumerate(zip(value.shape, shape)) if isinstance(e, int) and g != e]
        if bad:
            idx = "; ".join(f"index: {k} Got: {g} Expected: {e}" for k, g, e in bad)
            raise InvalidArgument(
                f"Got invalid dimensions for input: {name} for the following indices: {idx} "
                f"(expected shape {_shape_str(shape)}, got {list(value.shape)}). "
                "Please fix either the inputs or the model."
            )
    return value


def _known(dtype):
    try:
        ot.onnx_elem_type(dtype)
        return True
    except TypeError:
        return False


def _shape_str(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _shape_of(v: ValueInfo):
    return [] if v.shape is None else list(v.shape)


def _info(graph, name, constants):
    if not name:
        return None
    vi = graph.info(name)
    if vi is None and name in constants:
        c = constants[name]
        if hasattr(c, "dtype"):
            try:
                return ValueInfo(name, ot.onnx_elem_type(c.dtype), list(c.shape), "tensor")
            except TypeError:
                return None
    return vi


def _to_host(v):
    if isinstance(v, np.ndarray) or v is None:
        return v
    if isinstance(v, list):
        return [_to_host(x) for x in v]
    if hasattr(v, "get") and not isinstance(v, dict):
        return v.get()
    return v


def _infer_shapes(model):
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - types stay unknown; kernels cope
        log.info("shape inference failed, continuing without it: %s", e)
        return model


class _RunShare:
    """``with`` block of one run's share of the BLAS threads (ortlite.blas.run_begin / run_end): the
    session's intra_op_num_threads (0: every core) when it runs alone, split with the runs in flight;
    ``admit``: a CPU session's run waits for a slot when as many runs as cores are running."""

    __slots__ = ("budget", "admit")

    def __init__(self, budget, admit=True):
        self.budget, self.admit = budget, admit

    def __call__(self):
        return self

    def __enter__(self):
        run_begin(self.budget, self.admit)
        return self

    def __exit__(self, *exc):
        run_end(self.budget)
        return False


def _thread_limiter(n):
    """The context manager factory of a run's BLAS share (ortlite.blas); looks the BLAS libraries up
    again (one may have been loaded since the last session)."""
    from ortlite import blas

    if not blas.refresh() and n > 0:
        log.info("intra_op_num_threads=%d does not reach BLAS: threadpoolctl is not installed or sees no "
                 "BLAS library", n)
    return _RunShare(n)
