"""Model compression: structured pruning (torch-pruning) and ONNX precisions (onnxruntime)."""
