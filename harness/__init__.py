"""pytest plugin that builds, quantizes and validates small language models shipped as ONNX."""

__version__ = "0.1.0"
