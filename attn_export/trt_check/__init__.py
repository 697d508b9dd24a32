"""Static prediction of the TensorRT ONNX parser's verdict, node by node, without TensorRT.

``attn-export check FILE.onnx`` runs here. The facts come from the TensorRT 10.16 operator
table shipped in ``attn_export/data/trt_onnx_ops.json`` (``data/NOTES.md`` gives its
provenance): which ops the parser imports, for which element types, and the restrictions that
the graph alone decides (attributes, constant inputs, ranks, types from ONNX shape inference).
What only a real build can tell (kernels, runtime shape values, registered plugins) is out of
reach, so PASS is a prediction, not a guarantee. Graphs with symbolic input dims are also
checked for sizes the exporter baked in (they would run only at their export shapes).

Files: ``check`` (:func:`check_model`, the order of the passes), ``load`` (reading the
model), ``table`` (the operator table and its type names), ``node`` (a node as a rule sees
it), ``parser_rules`` (the opset and the per-node pass), ``dtypes``, ``op_limits`` and
``op_rules`` (the rules), ``shapes`` (shape inference without the weights),
``export_shapes`` (the sizes a graph was exported at, in its metadata), ``dynamic`` and
``probe`` (the dynamic-dim rules), ``report`` (findings, the report and its text).
"""

from .check import check_model
from .export_shapes import EXPORT_SHAPES_KEY, record_export_shapes
from .report import DYNAMIC_RULES, CheckReport, DynamicDim, Finding, format_report
from .shapes import graph_input_dims
from .table import load_op_table

__all__ = [
    "DYNAMIC_RULES",
    "EXPORT_SHAPES_KEY",
    "CheckReport",
    "DynamicDim",
    "Finding",
    "check_model",
    "format_report",
    "graph_input_dims",
    "load_op_table",
    "record_export_shapes",
]
