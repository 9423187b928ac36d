"""The ``ortlite`` command: run, bench (against onnxruntime), compare layer by layer, info, profile."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import warnings

import numpy as np

from ortlite.errors import InvalidArgument, OrtliteError, RuntimeException
from ortlite.hints import install_hint

# What a run on unsuitable shapes raises (a kernel failing, a feed refused): bench and compare create
# their sessions inside, and these tell a failed run from a failed session creation.
_RUN_ERRORS = (RuntimeException, InvalidArgument)


# One "name:dims" of a --shape list: ortlite's and trtexec's 1x3x64x64, or Polygraphy's [1,3,64,64].
_SHAPE_ITEM = re.compile(r"\s*(?P<name>'[^']*'|\"[^\"]*\"|[^,]+?):(?P<dims>\[[^\]]*\]|\d+(?:[xX]\d+)*)\s*(?:,|$)")
_RANGE_ITEM = re.compile(r"\s*(?:(?P<name>'[^']*'|\"[^\"]*\"|[^,\[]+?):)?\[(?P<lo>[^,\]]+),(?P<hi>[^\]]+)\]\s*(?:,|$)")


def _items(pattern, text, what, example):
    """The matches of ``pattern`` covering ``text`` (a comma-separated list), or a one-line error."""
    out, pos = [], 0
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"{what} expects {example}, got '{text}'")
        out.append(m)
        pos = m.end()
    if not out:
        raise ValueError(f"{what} expects {example}, got '{text}'")
    return out


def _name(m):
    return m["name"].strip().strip("'\"") if m["name"] else ""


def _parse_shapes(items, what="--shape"):
    """Shapes as ortlite (name:1x3x64x64), trtexec (name:1x3x64x64,other:1x16) or Polygraphy
    (name:[1,3,64,64]) write them: {name: [dims]}."""
    shapes = {}
    for item in items or []:
        for m in _items(_SHAPE_ITEM, item, what, "name:1x3x224x224, name:[1,3,224,224] or a comma-separated list"):
            dims = m["dims"]
            text = dims[1:-1].replace(" ", "") if dims.startswith("[") else dims.lower().replace("x", ",")
            try:
                shapes[_name(m)] = [int(d) for d in text.split(",")] if text else []
            except ValueError:
                raise ValueError(f"{what} sizes must be integers, got '{item}'") from None
    return shapes


def _parse_val_ranges(items):
    """--val-range name:[lo,hi] (Polygraphy's spelling) or [lo,hi] for every input: {name or "": (lo, hi)}."""
    ranges = {}
    for item in items or []:
        for m in _items(_RANGE_ITEM, item, "--val-range", "name:[lo,hi] or [lo,hi] (every input)"):
            try:
                lo, hi = float(m["lo"]), float(m["hi"])
            except ValueError:
                raise ValueError(f"--val-range bounds must be numbers, got '{item}'") from None
            if not lo <= hi:
                raise ValueError(f"--val-range needs lo <= hi, got '{item}'")
            ranges[_name(m)] = (lo, hi)
    return ranges


def _load_model(path):
    from ortlite.loader import load_model

    if path is None:
        from ortlite import zoo

        return zoo.demo(), "built-in demo model (ortlite.zoo.demo)"
    model, _, label = load_model(path)
    return model, label


def _feeds(model, given, shapes, batch=None, args=None):
    """Random feeds for the model's inputs (arrays from --input kept; --shape / --batch / a given
    array fill symbolic dims, defaults the rest; values from --seed and --val-range in ``args``), and
    the inputs whose symbolic dims were set by default (name -> ortlite.zoo.InputShape). The shapes
    are printed first when defaults were chosen."""
    from ortlite import zoo

    shapes = {**shapes, **{k: np.shape(v) for k, v in given.items()}}
    picked = zoo.input_shapes(model, shapes=shapes, batch=batch)
    seed = getattr(args, "seed", 0)
    ranges = _parse_val_ranges(getattr(args, "val_range", None))
    feeds = {**zoo.example_inputs(model, seed=seed, shapes={k: s.shape for k, s in picked.items()},
                                  val_range=ranges), **given}
    chosen = {k: s for k, s in picked.items() if s.chosen}
    if chosen:
        print("inputs (defaults chosen for symbolic dims; --shape to override): "
              + ", ".join(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in feeds.items()))
    return feeds, chosen


@contextlib.contextmanager
def _hint_on(chosen, *errors):
    """When one of ``errors`` ends a run whose inputs had dims set by default, a note says which --shape to pass."""
    try:
        yield
    except errors as e:
        if chosen:
            s = "s" if len(chosen) > 1 else ""
            note = (f"hint: input{s} {', '.join(repr(k) for k in chosen)} had symbolic dims set by default to "
                    f"{', '.join(str(list(c.shape)) for c in chosen.values())}; pass "
                    + " ".join(f"--shape {k}:{c.pattern}" for k, c in chosen.items())
                    + f" with the size{s} the model expects")
            e.__notes__ = [*getattr(e, "__notes__", ()), note]  # add_note, also on Python 3.10
        raise


def _given_inputs(items):
    """--input name=file.npy arguments as {name: array}."""
    given = {}
    for item in items or []:
        name, _, path = item.partition("=")
        if not path:
            raise ValueError(f"--input expects name=file.npy, got '{item}'")
        given[name] = np.load(path, allow_pickle=False)
    return given


def _warning_lines(caught):
    """Caught warnings as one clean line each (no file, line or source)."""
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def cmd_run(args):
    import ortlite

    providers = _provider_list(args.providers)
    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, _given_inputs(args.input), _parse_shapes(args.shape), args=args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = ortlite.InferenceSession(model.SerializeToString(), providers=providers)
    _warning_lines(caught)
    with _hint_on(chosen, OrtliteError):
        outs = sess.run(None, feeds)
    print(f"model: {label}")
    print(f"providers: {sess.get_providers()}")
    for a in sess.get_inputs():
        v = feeds[a.name]
        print(f"input  {a.name}: {a.type} {list(np.shape(v))}")
    for o, v in zip(sess.get_outputs(), outs):
        if isinstance(v, np.ndarray):
            summary = ""
            if v.size and v.dtype.kind in "fiub":
                f = v.astype(np.float64)
                summary = f" min {f.min():.6g} max {f.max():.6g} mean {f.mean():.6g}"
            print(f"output {o.name}: {o.type} {list(v.shape)}{summary}")
        else:
            print(f"output {o.name}: {o.type} {type(v).__name__} of {len(v) if hasattr(v, '__len__') else '?'}")
        if args.save:
            np.save(f"{args.save}{o.name}.npy", v)
    return 0


def _provider(s):
    from ortlite.bench import provider_name

    return provider_name(s.strip())


def _profile(args):
    """--shape-min/--shape-opt/--shape-max (or trtexec's --minShapes/--optShapes/--maxShapes): None, or
    {input: (min, opt, max)} checked as TensorRT checks a profile (same inputs, one rank, min <= opt <= max)."""
    sets = [_parse_shapes(getattr(args, k), f"--shape-{k.split('_')[1]}") for k in ("shape_min", "shape_opt",
                                                                                    "shape_max")]
    if not any(sets):
        return None
    if not all(sets) or not sets[0].keys() == sets[1].keys() == sets[2].keys():
        raise ValueError("--shape-min, --shape-opt and --shape-max (--minShapes/--optShapes/--maxShapes) must be "
                         "given together, for the same inputs")
    profile = {}
    for name in sets[1]:
        lo, mid, hi = (s[name] for s in sets)
        if not len(lo) == len(mid) == len(hi) or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise ValueError(f"the shapes of '{name}' must have one rank and min <= opt <= max in every dim; got "
                             f"{lo}, {mid}, {hi}")
        profile[name] = (lo, mid, hi)
    return profile


def cmd_bench(args):
    from ortlite.bench import benchmark

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError(f"--plot needs matplotlib ({install_hint('bench')})") from None
    if args.warmup < 0 or args.iterations < 1 or (args.duration is not None and args.duration <= 0):
        raise ValueError("--warmup must be >= 0, --iterations >= 1 and --duration > 0")
    model, label = _load_model(args.model)
    profile = _profile(args)
    shapes = _parse_shapes(args.shape)
    for name, (_, opt, _) in (profile or {}).items():
        if shapes.setdefault(name, opt) != opt:
            raise ValueError(f"--shape {name} {shapes[name]} differs from its --shape-opt {opt} (the runs use opt)")
    feeds, chosen = _feeds(model, {}, shapes, batch=args.batch, args=args)
    providers = _provider_list(args.providers)
    src = args.model if args.model is not None else model
    with _hint_on(chosen, *_RUN_ERRORS):
        report = benchmark(src, feeds, providers=providers, onnxruntime=args.onnxruntime, warmup=args.warmup,
                           iterations=args.iterations, duration=args.duration, threads=args.threads,
                           iobinding=args.iobinding, level=args.level, atol=args.atol, rtol=args.rtol,
                           label=label, batch=args.batch, profile=profile)
    print(report.text())
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(report.to_markdown())
        print(f"wrote {args.markdown}")
    if args.plot:
        report.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_compare(args):
    from ortlite.compare import compare

    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, _given_inputs(args.input), _parse_shapes(args.shape), batch=args.batch, args=args)
    with _hint_on(chosen, *_RUN_ERRORS):
        result = compare(model, _provider_list(args.providers), onnxruntime=args.onnxruntime, feeds=feeds,
                         atol=args.atol, rtol=args.rtol, level=args.level, label=label, stat=args.check_error_stat)
    print(result.format(top=args.top))
    if args.json:
        import json

        from ortlite.bench import _json_safe

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_json_safe(result.to_dict()), f, indent=1)
    return 0 if result.ok else 1


def _provider_list(text):
    if not text:
        return None
    return list(dict.fromkeys(_provider(p) for p in text.split(",") if p.strip()))


def cmd_info(args):
    import collections

    import ortlite

    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, {}, _parse_shapes(args.shape), args=args) if args.run else (None, {})
    print(f"model: {label}")
    print(f"ir_version: {model.ir_version}; producer: {model.producer_name} {model.producer_version}".rstrip())
    print("opsets: " + ", ".join(f"{op.domain or 'ai.onnx'} {op.version}" for op in model.opset_import))
    hist = collections.Counter((n.domain or "", n.op_type) for n in model.graph.node)
    print(f"nodes: {len(model.graph.node)} (main graph); initializers: {len(model.graph.initializer)}")
    for (dom, op), n in hist.most_common():
        print(f"  {n:5d}  {op}" + (f" ({dom})" if dom else ""))
    so = ortlite.SessionOptions()
    so.graph_optimization_level = _LEVELS[args.level]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = ortlite.InferenceSession(model.SerializeToString(), so, providers=_provider_list(args.providers))
    for w in caught:
        print(f"warning: {w.message}")
    for a in sess.get_inputs():
        print(f"input  {a.name}: {a.type} {a.shape}")
    for a in sess.get_outputs():
        print(f"output {a.name}: {a.type} {a.shape}")
    groups = sum(1 for n in sess._graph.nodes if (n.domain, n.op_type) == ("com.microsoft", "EPContext"))
    print(f"after optimization ({args.level}): {len(sess._graph.nodes)} nodes"
          + (f" ({groups} of them compiled groups, each one EPContext node)" if groups else ""))
    rep = sess.get_placement()
    if args.run:
        with _hint_on(chosen, OrtliteError):
            sess.run(None, feeds)
        print(f"last run on {', '.join(f'{k} {list(np.shape(v))}' for k, v in feeds.items())}: "
              f"{rep.last_run_copies} copies, {rep.last_run_copy_bytes} bytes")
    print(rep.summary())
    if args.nodes:
        for n in rep:
            print(f"  {n.provider:32s} {n.op_type:24s} {n.name}")
    return 0


def cmd_profile(args):
    from ortlite.profiling import summarize

    print(summarize(args.trace, top=args.top))
    return 0


def cmd_serve(args):
    """`ortlite serve`: the model over HTTP (Open Inference Protocol) on Ray Serve until Ctrl-C."""
    import signal
    import threading

    try:
        import ortlite.serve as oserve

        oserve._require_ray()
    except ImportError as e:
        raise ValueError(str(e)) from None
    model = None if args.model in (None, "default") else args.model
    providers = _provider_list(args.providers)
    print(f"starting {args.replicas} replica(s) of {args.model or 'the built-in demo model'} on Ray Serve "
          f"({'RAY_ADDRESS=' + os.environ['RAY_ADDRESS'] if os.environ.get('RAY_ADDRESS') else 'a local Ray instance'})",
          flush=True)
    try:
        server = oserve.start(model, name=args.name, replicas=args.replicas, providers=providers,
                              num_cpus=args.num_cpus, num_gpus=args.num_gpus, max_batch_size=args.max_batch_size,
                              batch_wait_ms=args.batch_wait_ms, host=args.host, port=args.port)
    except RuntimeError as e:  # too few CPUs / GPUs for the replicas, a replica that failed to start: the message
        raise ValueError(str(e)) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"serving model '{server.name}' at {server.url} (Open Inference Protocol: {server.url}/v2/models/"
              f"{server.name}/infer; tritonclient.http.InferenceServerClient('{server.triton_url}')); Ctrl-C stops",
              flush=True)
        while not stop.wait(0.5):
            pass
        print("shutting down", flush=True)
    finally:
        server.shutdown()
        for sig, h in previous.items():
            signal.signal(sig, h)
    print("stopped", flush=True)
    return 0


_LEVELS = {
    "disable": 0, "basic": 1, "extended": 2, "all": 99,
}

_SHAPE_HELP = "a shape for an input with symbolic dims: name:1x3x224x224, name:[1,3,224,224] or a comma-separated list"


def _add_feed_args(p, shapes=True):
    """--shape, --seed and --val-range: how random inputs are made."""
    if shapes:
        p.add_argument("--shape", action="append", metavar="NAME:1x3x224x224", help=_SHAPE_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--val-range", action="append", metavar="[NAME:][LO,HI]",
                   help="values of an input (name:[lo,hi]) or of every input ([lo,hi]), integers inclusive; "
                        "default: floats standard normal, *mask* inputs ones, position_ids 0..n-1, other integers "
                        "in [0, min(rows of the table they index, 100))")


def main(argv=None):
    import ortlite

    ap = argparse.ArgumentParser(prog="ortlite", description="ortlite: ONNX inference with onnxruntime's API")
    ap.add_argument("--version", action="version", version=f"ortlite {ortlite.__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log placement and fallbacks at INFO")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a model once and print its outputs' names, shapes and a summary")
    r.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file; others are random")
    _add_feed_args(r)
    r.add_argument("--providers", help="comma-separated, e.g. cuda,cpu (default: cpu)")
    r.add_argument("--save", metavar="PREFIX", help="save each output as PREFIX<name>.npy")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("bench", help="latency, memory, placement and agreement on each provider, beside onnxruntime")
    b.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    b.add_argument("--providers", help="comma-separated, e.g. tensorrt,cuda,cpu (default: every provider; "
                                       "unavailable ones are reported with the reason)")
    b.add_argument("--onnxruntime", action=argparse.BooleanOptionalAction, default=True,
                   help="also run onnxruntime (CPU, and CUDA/TensorRT when it has them); default on when installed")
    b.add_argument("--warmup", type=int, default=5, metavar="N", help="warm-up runs per session (default 5)")
    n = b.add_mutually_exclusive_group()
    n.add_argument("--iterations", "--runs", type=int, default=50, metavar="N", help="timed runs per session (default 50)")
    n.add_argument("--duration", type=float, default=None, metavar="S", help="time runs for S seconds instead")
    _add_feed_args(b)
    for k, alias in (("min", "minShapes"), ("opt", "optShapes"), ("max", "maxShapes")):
        b.add_argument(f"--shape-{k}", f"--{alias}", action="append", metavar="NAME:1x3x224x224",
                       help=f"the {k} shapes of a shape profile (give min, opt and max together)"
                            + (": the runs use opt; TensorRT (ortlite's and onnxruntime's) gets all three as its "
                               "trt_profile_min/opt/max_shapes; OpenVINO compiles for the shapes it runs (ortlite "
                               "ignores onnxruntime's reshape_input), so it gets none" if k == "opt" else ""))
    b.add_argument("--batch", type=int, default=None, metavar="N", help="value for a symbolic batch dimension")
    b.add_argument("--threads", type=int, default=0, metavar="N", help="intra-op threads for both runtimes (0: default)")
    b.add_argument("--iobinding", action="store_true",
                   help="run through IOBinding with inputs and outputs on the provider's device (CPU when it has none)")
    b.add_argument("--level", choices=list(_LEVELS), default="all", help="graph optimization level (default all)")
    b.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance for agreement (default 1e-4)")
    b.add_argument("--rtol", type=float, default=1e-3,
                   help="tolerance relative to each output's magnitude (max |ref|) for agreement (default 1e-3)")
    b.add_argument("--json", metavar="FILE", help="write every figure, the latencies and the machine as JSON")
    b.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    b.add_argument("--plot", metavar="FILE.png", help="box plot of the latency distributions (matplotlib)")
    b.set_defaults(fn=cmd_bench)

    c = sub.add_parser("compare", help="layer-wise comparison of providers (every intermediate output); exit 1 on mismatch")
    c.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    c.add_argument("--providers", help="comma-separated, e.g. cuda,cpu: each is compared with the last; a single one "
                                       "other than cpu is compared with cpu; cpu alone (the default) with onnxruntime")
    c.add_argument("--onnxruntime", action=argparse.BooleanOptionalAction, default=None,
                   help="compare with onnxruntime's CPU provider (the reference); default: when cpu runs alone")
    c.add_argument("--level", choices=list(_LEVELS), default="disable",
                   help="graph optimization level (default disable: every intermediate survives)")
    c.add_argument("--check-error-stat", choices=["elemwise", "max", "mean", "median"], default="elemwise",
                   help="the error statistic judged per tensor (default elemwise, Polygraphy's default): elemwise: "
                        "each element's error within atol or rtol x max|ref| (the tensor's magnitude; Polygraphy "
                        "takes rtol per element); max/mean/median: that statistic of the abs error within atol, or "
                        "of the per-element rel error |a-b|/|ref| within rtol (Polygraphy's)")
    c.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    c.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    c.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file; others are random")
    _add_feed_args(c)
    c.add_argument("--batch", type=int, default=None)
    c.add_argument("--top", type=int, default=10, help="nodes to list, worst first (default 10)")
    c.add_argument("--json", metavar="FILE", help="write the node-by-node comparison as JSON")
    c.set_defaults(fn=cmd_compare)

    i = sub.add_parser("info", help="op histogram, opsets, and where each node runs (with copies)")
    i.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    i.add_argument("--providers", help="comma-separated priority list, e.g. tensorrt,cuda,cpu")
    i.add_argument("--level", choices=list(_LEVELS), default="all", help="graph optimization level")
    i.add_argument("--nodes", action="store_true", help="list every node with its provider")
    i.add_argument("--run", action="store_true", help="run once on random inputs and count the copies")
    _add_feed_args(i)
    i.set_defaults(fn=cmd_info)

    pr = sub.add_parser("profile", help="top ops and nodes by time in a profile (ortlite's or onnxruntime's)")
    pr.add_argument("trace", help="a Chrome-trace JSON written by end_profiling()")
    pr.add_argument("--top", type=int, default=15)
    pr.set_defaults(fn=cmd_profile)

    sv = sub.add_parser("serve", help="serve a model over HTTP (Open Inference Protocol / KServe v2) on Ray Serve")
    sv.add_argument("model", nargs="?", help="an .onnx file ('default' or none: the built-in demo model)")
    sv.add_argument("--replicas", type=int, default=1, metavar="N", help="replicas, each one session (default 1)")
    sv.add_argument("--providers", help="comma-separated, e.g. cuda,cpu (default: cpu)")
    sv.add_argument("--num-cpus", type=float, default=1.0, metavar="C",
                    help="CPUs per replica; its session's intra-op threads (default 1)")
    sv.add_argument("--num-gpus", type=float, default=0.0, metavar="F",
                    help="GPUs per replica: a fraction (0.5) shares one GPU, gpu_mem_limit set to match (default 0)")
    sv.add_argument("--max-batch-size", type=int, default=8, metavar="B",
                    help="requests merged along the batch dim (default 8; 1: no batching)")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="T",
                    help="how long a batch waits to fill (default 5)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    sv.add_argument("--name", help="the model's name in /v2/models/NAME (default: the file's stem, or 'demo')")
    sv.set_defaults(fn=cmd_serve)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001 - the CLI prints the error (and a hint), not a traceback
        if isinstance(e, (OrtliteError, ValueError, OSError)):
            print(f"ortlite: error: {e}", file=sys.stderr)
            for note in getattr(e, "__notes__", ()):
                print(note, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
