"""The ``attn-export`` command line.

Usage errors print one line and exit 2; verification failures exit 1; a missing runtime
(TensorRT, CUDA) exits 3. Only bugs produce tracebacks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from . import tolerances
from .errors import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFICATION_FAILED,
    AttnExportError,
    UsageError,
    first_line,
)
from .options import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    DEFAULT_OUT_DIR,
    DEFAULT_SEED,
    EXPORTERS,
    MAX_OPSET,
    MIN_OPSET,
    ExportOptions,
)
from .parsing import (
    PROFILE_BOUNDS,
    parse_assignment,
    parse_axes,
    parse_scales,
    parse_shape,
    shapes_text,
)

Number = TypeVar("Number", int, float)
NAME_HELP = "registry name (see `attn-export list`) or package.module:attribute"

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  passed
  {EXIT_VERIFICATION_FAILED}  verification failed (a mismatch, NaN/Inf, a graph TensorRT would \
not parse)
  {EXIT_USAGE}  usage or input error (unknown module, bad --shape/--set/--weights/--out, ...)
  {EXIT_ENVIRONMENT}  environment missing (TensorRT or CUDA absent for --trt; out of memory)
"""

COMMANDS_HELP = """commands:
  attn-export NAME [options]        export NAME (a registry name or package.module:factory) \
and verify it
  attn-export list [PATTERN] [--json]
  attn-export info NAME
  attn-export check FILE.onnx [--json]   predict TensorRT's ONNX parser verdict, node by node
  attn-export all [--out DIR] [--trt] [--fp16]   export and verify every registered module
  attn-export bench [NAME...|--all] [--json F] [--plot F.png] [--sweep] [--profile]   \
eager vs ONNX Runtime
                    (one NAME may take --shape/--set/--weights, as for export)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line through :class:`UsageError`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _typed(convert: Callable[[str], Number], expected: str) -> Callable[[str], Number]:
    """An argparse ``type`` that says what it expected when ``convert`` refuses the text."""

    def parse(text: str) -> Number:
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return parse


_float = _typed(float, "a number")
_int = _typed(int, "an integer")


def _as_pattern(text: str) -> str:
    """A shell-style pattern as given; plain text ('self') matches anywhere in a name."""
    return text if any(c in text for c in "*?[") else f"*{text}*"


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _exponent_text(value: float) -> str:
    """``1e-4`` as a reader writes it (Python prints ``0.0001``)."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.0e}")


# ----------------------------------------------------------------------------- arguments
# Each group is declared once and added to every command that takes it.


def add_model_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """--shape, --set and --weights: what to build and what it takes (export, bench).

    ``scope`` ends each help line, e.g. " (one NAME only)"."""
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="1,512,7,7",
        help="input shape; once per forward input (once for a multi-input module = the same"
        " for each)" + scope,
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="assignments",
        help="constructor keyword; VALUE is JSON or a Python literal (kernels=[1,3],"
        " reconstruct=true)" + scope,
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="state dict to load with strict=True (.safetensors, .pt, .pth)" + scope,
    )


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options --shape, --set and --weights give (ExportOptions' and BenchOptions' names)."""
    return {
        "shapes": [parse_shape(s) for s in args.shape],
        "kwargs": _parse_assignments(args.assignments),
        "weights": args.weights,
    }


def add_artifact_arguments(parser: argparse.ArgumentParser, dynamic_help: str) -> None:
    """--out, --trt, --fp16 and --dynamic: what is written and checked (export, all)."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"output folder (default: ./{DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--trt",
        action="store_true",
        help="also build a TensorRT engine and verify it (needs tensorrt + CUDA)",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write NAME.fp16.onnx (float16 inside, float32 at the edges)",
    )
    parser.add_argument("--dynamic", metavar="AXES", help=dynamic_help)


def _dynamic_axes(args: argparse.Namespace) -> tuple[str, ...]:
    return parse_axes(args.dynamic) if args.dynamic else ()


def _add_verification_arguments(parser: argparse.ArgumentParser) -> None:
    """How the graph is exported and judged: opset, exporter, tolerances, seed, inputs."""
    parser.add_argument(
        "--opset",
        type=_int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset (default {DEFAULT_OPSET}; supported {MIN_OPSET}-{MAX_OPSET})",
    )
    default_tolerance = f"default {_exponent_text(tolerances.FP32.atol)} or the module's"
    parser.add_argument(
        "--atol", type=_float, default=None, help=f"absolute tolerance ({default_tolerance})"
    )
    default_tolerance = f"default {_exponent_text(tolerances.FP32.rtol)} or the module's"
    parser.add_argument(
        "--rtol", type=_float, default=None, help=f"relative tolerance ({default_tolerance})"
    )
    parser.add_argument(
        "--seed",
        type=_int,
        default=DEFAULT_SEED,
        help=f"seed of the random inputs and initial weights (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default=DEFAULT_EXPORTER,
        help=f"torch.onnx exporter (default {DEFAULT_EXPORTER}: TorchScript, then dynamo if it"
        " fails; the manifest says which)",
    )
    parser.add_argument(
        "--inputs",
        action="append",
        default=[],
        type=Path,
        metavar="FILE.npz",
        help="your own inputs (arrays by input name, forward parameter name or position); verified"
        " and used by --fp16; once per file",
    )
    parser.add_argument(
        "--fp16-scales",
        metavar="1,10,100",
        help="input scales the fp16 check multiplies random draws by (default 1,10,100;"
        " 1 with --inputs)",
    )


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """--min-shape, --opt-shape, --max-shape: the dynamic profile, once per forward input."""
    for bound in PROFILE_BOUNDS:
        parser.add_argument(
            f"--{bound}-shape",
            action="append",
            default=[],
            metavar="1,512,7,7",
            dest=f"{bound}_shape",
            help=f"{bound} shape of the dynamic profile; once per forward input",
        )


def _add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nhwc",
        action="store_true",
        help="channel-last graph inputs/outputs; --shape is then given as B,H,W,C",
    )
    parser.add_argument(
        "--name",
        dest="artifact_name",
        help="base name of the written files (default: the registry name or the model's class)",
    )


def _export_parser() -> _Parser:
    parser = _Parser(
        prog="attn-export",
        description="Export an attention module to a simplified ONNX graph (and a TensorRT"
        " engine) and verify it against PyTorch.",
        epilog=COMMANDS_HELP + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help=NAME_HELP)
    add_model_arguments(parser)
    add_artifact_arguments(
        parser, "symbolic axes: batch, height, width, tokens (e.g. batch,height,width)"
    )
    _add_verification_arguments(parser)
    _add_layout_arguments(parser)
    _add_profile_arguments(parser)
    return parser


def _parse_assignments(texts: Sequence[str]) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    for text in texts:
        key, value = parse_assignment(text)
        if key in kwargs:
            raise UsageError(f"--set {key} given twice ({kwargs[key]!r} and {value!r})")
        kwargs[key] = value
    return kwargs


def _options(args: argparse.Namespace) -> ExportOptions:
    # Parse before importing the pipeline (torch, onnxsim): a typo fails in a blink.
    return ExportOptions(
        **model_options(args),
        dynamic=_dynamic_axes(args),
        min_shapes=[parse_shape(s) for s in args.min_shape],
        opt_shapes=[parse_shape(s) for s in args.opt_shape],
        max_shapes=[parse_shape(s) for s in args.max_shape],
        out_dir=args.out,
        opset=args.opset,
        atol=args.atol,
        rtol=args.rtol,
        trt=args.trt,
        fp16=args.fp16,
        seed=args.seed,
        nhwc=args.nhwc,
        exporter=args.exporter,
        name=args.artifact_name,
        inputs=args.inputs,
        fp16_scales=parse_scales(args.fp16_scales) if args.fp16_scales else None,
    )


def cmd_export(argv: Sequence[str]) -> int:
    from .pipeline import run_export

    args = _export_parser().parse_args(argv)
    options = _options(args)
    print(f"attn-export {args.name}")
    try:
        result = run_export(args.name, options)
    except AttnExportError as error:
        if error.exit_code != EXIT_USAGE:
            print(f"FAILED {args.name}: {error}")
            raise _Reported(error.exit_code) from None
        raise
    print(f"PASSED {result.name}: wrote {', '.join(map(str, result.written))}")
    return EXIT_OK


def cmd_list(argv: Sequence[str]) -> int:
    from . import modules

    parser = _Parser(prog="attn-export list", description="List the registered modules.")
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style pattern, e.g. 'self*'; plain text matches anywhere in the name",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {name, class, shapes, kwargs, paper, url, dynamic}",
    )
    parser.add_argument("--markdown", action="store_true", help="print the README's zoo table")
    args = parser.parse_args(argv)
    specs = [modules.get_spec(n) for n in modules.list_modules(_as_pattern(args.pattern))]
    if args.json:
        rows = [
            {
                "name": s.name,
                "class": s.class_name,
                "shapes": [list(x) for x in s.shapes],
                "kwargs": s.kwargs,
                "paper": s.paper,
                "url": s.url,
                "dynamic": list(s.dynamic),
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if args.markdown:
        print(zoo_table(specs))
        return EXIT_OK
    for spec in specs:
        shapes = shapes_text(spec.shapes)
        print(f"{spec.name:<28} {spec.class_name:<36} {shapes}")
    print(f"{len(specs)} module{'' if len(specs) == 1 else 's'}")
    return EXIT_OK


def zoo_table(specs: Sequence) -> str:
    """One row per module: name, class, paper, default input shapes, dynamic axes (and why not
    more)."""
    lines = [
        "| name | class | paper | default input | dynamic axes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in specs:
        shapes = shapes_text(spec.shapes)
        fixed = f" (fixed: {spec.fixed_because})" if spec.fixed_because else ""
        lines.append(
            f"| `{spec.name}` | `{spec.class_name}` | [{spec.paper}]({spec.url}) | {shapes} |"
            f" {', '.join(spec.dynamic)}{fixed} |"
        )
    return "\n".join(lines)


def cmd_info(argv: Sequence[str]) -> int:
    import inspect

    from .target import resolve_target

    parser = _Parser(
        prog="attn-export info", description="Show one module's defaults, paper and constructor."
    )
    parser.add_argument("name", help=NAME_HELP)
    args = parser.parse_args(argv)
    target = resolve_target(args.name)
    print(f"name:      {target.name}")
    print(f"class:     {target.factory.__name__}  ({target.factory.__module__})")
    if target.paper:
        print(f"paper:     {target.paper}")
    print(f"kwargs:    {json.dumps(target.default_kwargs)}")
    if target.default_shapes:
        print(f"shapes:    {shapes_text(target.default_shapes)}")
    print(f"signature: {target.factory.__name__}{inspect.signature(target.factory)}")
    if target.spec is not None:
        fixed = f" (fixed: {target.spec.fixed_because})" if target.spec.fixed_because else ""
        print(f"dynamic:   {', '.join(target.spec.dynamic)}{fixed}")
    if target.atol is not None or target.rtol is not None:
        print(f"tolerance: atol {target.atol}, rtol {target.rtol}")
    return EXIT_OK


def cmd_check(argv: Sequence[str]) -> int:
    from .trt_check import check_model, format_report

    parser = _Parser(
        prog="attn-export check",
        description="Predict TensorRT's ONNX parser verdict, node by node.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = check_model(args.file)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return EXIT_OK if report.passed else EXIT_VERIFICATION_FAILED


def cmd_all(argv: Sequence[str]) -> int:
    from . import modules
    from .options import prepare_out_dir
    from .report import run_all

    parser = _Parser(
        prog="attn-export all",
        description="Export and verify every registered module; write report.{json,md,png}.",
    )
    add_artifact_arguments(
        parser, "symbolic axes for every module, as far as its math allows (e.g. batch)"
    )
    parser.add_argument(
        "--pattern",
        default="*",
        help="only modules matching this shell-style pattern (plain text: anywhere in the name)",
    )
    args = parser.parse_args(argv)
    dynamic = _dynamic_axes(args)
    pattern = _as_pattern(args.pattern)
    if not modules.list_modules(pattern):
        raise UsageError(
            f"no registered module matches --pattern {args.pattern!r} (see `attn-export list`)"
        )
    prepare_out_dir(args.out)
    return run_all(
        args.out,
        trt=args.trt,
        fp16=args.fp16,
        pattern=pattern,
        progress=sys.stderr.isatty(),
        dynamic=dynamic,
    )


def _bench_parser() -> _Parser:
    import os

    parser = _Parser(
        prog="attn-export bench",
        description="Time PyTorch eager vs ONNX Runtime side by side; print ratios.",
    )
    parser.add_argument(
        "names", nargs="*", help="registry names, or one package.module:attribute (with --shape)"
    )
    parser.add_argument("--all", action="store_true", help="every registered module")
    add_model_arguments(parser, " (one NAME only)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="threads for both runtimes (default: all cores)",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--plot", type=Path, help="write a PNG chart")
    parser.add_argument(
        "--sweep", action="store_true", help="also measure cost growth with input size"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile ONNX Runtime: kernel time per op type (where the time goes)",
    )
    return parser


def cmd_bench(argv: Sequence[str]) -> int:
    from .bench import BenchOptions, bench_command

    args = _bench_parser().parse_args(argv)
    options = BenchOptions(
        names=args.names,
        all_modules=args.all,
        **model_options(args),
        threads=args.threads,
        json_path=args.json,
        plot_path=args.plot,
        sweep=args.sweep,
        profile=args.profile,
        progress=sys.stderr.isatty(),
    )
    bench_command(options)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "bench": cmd_bench,
    "list": cmd_list,
    "info": cmd_info,
    "check": cmd_check,
    "all": cmd_all,
}


class _Reported(Exception):
    """The failure was already printed; exit with this code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    from .atomic import sigterm_as_interrupt

    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        with sigterm_as_interrupt():
            if command is not None:
                return command(argv[1:])
            return cmd_export(argv)
    except _Reported as reported:
        return reported.code
    except AttnExportError as error:
        print(f"attn-export: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("attn-export: interrupted; previous artifacts left as they were", file=sys.stderr)
        return 130
    except MemoryError as error:  # the module's activations outgrew the machine
        print(
            f"attn-export: error: out of memory ({first_line(error)}); give a smaller --shape",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # `attn-export list | head`: the reader left; not an error of ours
        import os

        os.dup2(
            os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno()
        )  # silence the exit-time flush
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
