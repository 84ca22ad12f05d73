"""Building the model under test: sources, GGUF conversion, builders (model builder, Olive in its own
environment), the content-addressed cache, and the fp32-compute twin."""
