"""jaxhedge: train and stress-test option-hedging agents in one compiled JAX world."""

__version__ = "0.1.0"
