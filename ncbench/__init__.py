"""ncbench: a benchmark suite for neural collapse in timm backbones."""
__version__ = "0.1.0"
