"""Option-chain data: loading, cleaning, European conversion, buckets, realized paths."""
from jaxhedge.data.slices import SliceBatch, pad_slices

__all__ = ["SliceBatch", "pad_slices"]
