"""attn-export: export attention modules to ONNX and TensorRT, and verify them against PyTorch."""
__version__ = "0.1.0"
