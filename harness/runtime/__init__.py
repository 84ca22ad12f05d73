"""The runtime a suite drives: its protocol (``protocol``), the onnxruntime-genai engine (``genai``) and the
hook that plugs in another (``factory``)."""
