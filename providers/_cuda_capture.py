"""CUDA kernels that cannot run inside a CUDA graph capture, and why. Generated: do not edit.

Written by `python tests/cuda_provider/strict_report.py --capture-table` from what the strict
CuPy stand-in recorded while the ONNX node suite ran on the CUDA provider (cuBLAS / cuSOLVER /
cuRAND calls, host syncs, host->device copies inside a kernel);
tests/cuda_provider/test_strict_node_suite.py checks that it matches a fresh run.
"""

UNCAPTURABLE = {
    ('', 'AffineGrid'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/vision.py)',
    ('', 'Attention'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/attention.py)',
    ('', 'AveragePool'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/pool.py)',
    ('', 'Bernoulli'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/random.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/random.py)',
    ('', 'Compress'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/indexing.py)',
    ('', 'Conv'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py)',
    ('', 'ConvInteger'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/conv.py)',
    ('', 'ConvTranspose'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py)',
    ('', 'DeformConv'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py)',
    ('', 'Det'): 'calls cuSOLVER / cuBLAS, which CuPy refuses during stream capture (kernels/math.py)',
    ('', 'Einsum'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/math.py)',
    ('', 'GRU'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/rnn.py)',
    ('', 'GatherND'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/indexing.py)',
    ('', 'Gemm'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/math.py)',
    ('', 'LSTM'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/rnn.py)',
    ('', 'LinearAttention'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/linear_attention.py); calls cuSOLVER / cuBLAS, which CuPy refuses during stream capture (kernels/linear_attention.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/linear_attention.py)',
    ('', 'MatMul'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/math.py)',
    ('', 'MatMulInteger'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/math.py)',
    ('', 'MaxPool'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/pool.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/pool.py)',
    ('', 'MelWeightMatrix'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/signal.py)',
    ('', 'NonMaxSuppression'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/detection.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/detection.py)',
    ('', 'NonZero'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/indexing.py)',
    ('', 'Pad'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/tensor.py)',
    ('', 'Pow'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/elementwise.py)',
    ('', 'QLinearConv'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/conv.py)',
    ('', 'QLinearMatMul'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/quant.py)',
    ('', 'RNN'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/rnn.py)',
    ('', 'RandomUniformLike'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/random.py)',
    ('', 'Range'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/tensor.py)',
    ('', 'Resize'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/resize.py)',
    ('', 'ScatterND'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/indexing.py)',
    ('', 'Shape'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/tensor.py)',
    ('', 'Unique'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/indexing.py); waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/indexing.py)',
    ('', 'Upsample'): 'copies host data to the device on every run (a capture would replay a freed host buffer) (kernels/resize.py)',
    ('ai.onnx.ml', 'Binarizer'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/ml.py)',
    ('ai.onnx.preview.training', 'Adam'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/training.py)',
    ('ai.onnx.preview.training', 'Momentum'): 'waits for the device mid-kernel (a value read on the host or a data-dependent shape) (kernels/training.py)',
    ('com.microsoft', 'Attention'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/contrib_transformer.py)',
    ('com.microsoft', 'FusedConv'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/conv.py)',
    ('com.microsoft', 'FusedGemm'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/math.py)',
    ('com.microsoft', 'FusedMatMul'): 'calls cuBLAS, which CuPy refuses during stream capture (cupy/cupy#6290) (kernels/contrib.py)',
}
