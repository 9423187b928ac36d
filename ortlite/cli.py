"""The ``ortlite`` command: run, bench (against onnxruntime), compare layer by layer, info, profile."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys

import numpy as np

from ortlite.errors import InvalidArgument, OrtliteError, RuntimeException

# What a run on unsuitable shapes raises (a kernel failing, a feed refused): bench and compare create
# their sessions inside, and these tell a failed run from a failed session creation.
_RUN_ERRORS = (RuntimeException, InvalidArgument)


def _parse_shapes(items):
    shapes = {}
    for item in items or []:
        name, _, dims = item.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            name = ""
        if not name:
            raise SystemExit(f"--shape expects name:1x3x224x224 (integer sizes), got '{item}'")
    return shapes


def _load_model(path):
    from ortlite.loader import load_model

    if path is None:
        from ortlite import zoo

        return zoo.demo(), "built-in demo model (ortlite.zoo.demo)"
    model, _, label = load_model(path)
    return model, label


def _feeds(model, given, shapes, batch=None):
    """Random feeds for the model's inputs (arrays from --input kept; --shape / --batch / a given
    array fill symbolic dims, defaults the rest), and the inputs whose symbolic dims were set by
    default (name -> ortlite.zoo.InputShape). The shapes are printed first when defaults were chosen."""
    from ortlite import zoo

    shapes = {**shapes, **{k: np.shape(v) for k, v in given.items()}}
    picked = zoo.input_shapes(model, shapes=shapes, batch=batch)
    feeds = {**zoo.example_inputs(model, shapes={k: s.shape for k, s in picked.items()}), **given}
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
            raise SystemExit(f"--input expects name=file.npy, got '{item}'")
        given[name] = np.load(path, allow_pickle=False)
    return given


def cmd_run(args):
    import ortlite

    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, _given_inputs(args.input), _parse_shapes(args.shape))
    providers = [_provider(p) for p in args.providers.split(",")] if args.providers else None
    sess = ortlite.InferenceSession(model.SerializeToString(), providers=providers)
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


def cmd_bench(args):
    from ortlite.bench import benchmark

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("ortlite: error: --plot needs matplotlib (pip install 'ortlite[bench]')") from None
    if args.warmup < 0 or args.iterations < 1 or (args.duration is not None and args.duration <= 0):
        raise SystemExit("ortlite: error: --warmup must be >= 0, --iterations >= 1 and --duration > 0")
    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, {}, _parse_shapes(args.shape), batch=args.batch)
    providers = _provider_list(args.providers)
    src = args.model if args.model is not None else model
    with _hint_on(chosen, *_RUN_ERRORS):
        report = benchmark(src, feeds, providers=providers, onnxruntime=args.onnxruntime, warmup=args.warmup,
                           iterations=args.iterations, duration=args.duration, threads=args.threads,
                           iobinding=args.iobinding, level=args.level, atol=args.atol, rtol=args.rtol,
                           label=label, batch=args.batch)
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
    feeds, chosen = _feeds(model, _given_inputs(args.input), _parse_shapes(args.shape), batch=args.batch)
    providers = _provider_list(args.providers) or ["CPUExecutionProvider"]
    with _hint_on(chosen, *_RUN_ERRORS):
        result = compare(model, providers, onnxruntime=args.onnxruntime, feeds=feeds, atol=args.atol,
                         rtol=args.rtol, level=args.level, label=label)
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
    import warnings

    import ortlite

    model, label = _load_model(args.model)
    feeds, chosen = _feeds(model, {}, {}) if args.run else (None, {})
    print(f"model: {label}")
    print(f"ir_version: {model.ir_version}; producer: {model.producer_name} {model.producer_version}".rstrip())
    print("opsets: " + ", ".join(f"{op.domain or 'ai.onnx'} {op.version}" for op in model.opset_import))
    hist = collections.Counter((n.domain or "", n.op_type) for n in model.graph.node)
    print(f"nodes: {len(model.graph.node)} (main graph); initializers: {len(model.graph.initializer)}")
    for (dom, op), n in hist.most_common():
        print(f"  {n:5d}  {op}" + (f" ({dom})" if dom else ""))
    providers = [_provider(p) for p in args.providers.split(",")] if args.providers else None
    so = ortlite.SessionOptions()
    so.graph_optimization_level = _LEVELS[args.level]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = ortlite.InferenceSession(model.SerializeToString(), so, providers=providers)
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
        print(f"last run: {rep.last_run_copies} copies, {rep.last_run_copy_bytes} bytes")
    print(rep.summary())
    if args.nodes:
        for n in rep:
            print(f"  {n.provider:32s} {n.op_type:24s} {n.name}")
    return 0


def cmd_profile(args):
    from ortlite.profiling import summarize

    print(summarize(args.trace, top=args.top))
    return 0


_LEVELS = {
    "disable": 0, "basic": 1, "extended": 2, "all": 99,
}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ortlite", description="ortlite: ONNX inference with onnxruntime's API")
    ap.add_argument("-v", "--verbose", action="store_true", help="log placement and fallbacks at INFO")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run a model once and print its outputs' names, shapes and a summary")
    r.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file; others are random")
    r.add_argument("--shape", action="append", metavar="NAME:1x3x224x224", help="a shape for an input with symbolic dims")
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
    n.add_argument("--iterations", type=int, default=50, metavar="N", help="timed runs per session (default 50)")
    n.add_argument("--duration", type=float, default=None, metavar="S", help="time runs for S seconds instead")
    b.add_argument("--shape", action="append", metavar="NAME:1x3x224x224", help="a shape for an input with symbolic dims")
    b.add_argument("--batch", type=int, default=None, metavar="N", help="value for a symbolic batch dimension")
    b.add_argument("--threads", type=int, default=0, metavar="N", help="intra-op threads for both runtimes (0: default)")
    b.add_argument("--iobinding", action="store_true",
                   help="run through IOBinding with inputs and outputs on the provider's device (CPU when it has none)")
    b.add_argument("--level", choices=list(_LEVELS), default="all", help="graph optimization level (default all)")
    b.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance for agreement (default 1e-4)")
    b.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance for agreement (default 1e-3)")
    b.add_argument("--json", metavar="FILE", help="write every figure, the latencies and the machine as JSON")
    b.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    b.add_argument("--plot", metavar="FILE.png", help="box plot of the latency distributions (matplotlib)")
    b.set_defaults(fn=cmd_bench)

    c = sub.add_parser("compare", help="layer-wise comparison of providers (every intermediate output); exit 1 on mismatch")
    c.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    c.add_argument("--providers", help="comma-separated, e.g. cuda,cpu: each is compared with the last "
                                       "(a single one is compared with cpu)")
    c.add_argument("--onnxruntime", action="store_true", help="compare with onnxruntime's CPU provider (the reference)")
    c.add_argument("--level", choices=list(_LEVELS), default="disable",
                   help="graph optimization level (default disable: every intermediate survives)")
    c.add_argument("--atol", type=float, default=1e-4)
    c.add_argument("--rtol", type=float, default=1e-3)
    c.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file; others are random")
    c.add_argument("--shape", action="append", metavar="NAME:1x3x224x224")
    c.add_argument("--batch", type=int, default=None)
    c.add_argument("--top", type=int, default=10, help="mismatching nodes to list (default 10)")
    c.add_argument("--json", metavar="FILE", help="write the node-by-node comparison as JSON")
    c.set_defaults(fn=cmd_compare)

    i = sub.add_parser("info", help="op histogram, opsets, and where each node runs (with copies)")
    i.add_argument("model", nargs="?", help="an .onnx file (default: the built-in demo model)")
    i.add_argument("--providers", help="comma-separated priority list, e.g. tensorrt,cuda,cpu")
    i.add_argument("--level", choices=list(_LEVELS), default="all", help="graph optimization level")
    i.add_argument("--nodes", action="store_true", help="list every node with its provider")
    i.add_argument("--run", action="store_true", help="run once on random inputs and count the copies")
    i.set_defaults(fn=cmd_info)

    pr = sub.add_parser("profile", help="top ops and nodes by time in a profile (ortlite's or onnxruntime's)")
    pr.add_argument("trace", help="a Chrome-trace JSON written by end_profiling()")
    pr.add_argument("--top", type=int, default=15)
    pr.set_defaults(fn=cmd_profile)

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001 - the CLI prints the error (and a hint), not a traceback
        if isinstance(e, (OrtliteError, ValueError, FileNotFoundError)):
            print(f"ortlite: error: {e}", file=sys.stderr)
            for note in getattr(e, "__notes__", ()):
                print(note, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
