"""Calibration of BS / Merton / Heston and RL price surfaces to option-chain slices, and
the static implied-vol fit study (METHODS §5.4–5.5). See docs/calibration.md."""
from .bs import BS_BOUNDS, BSFit, fit_bs
from .heston import HESTON_BOUNDS, HestonFit, fit_heston
from .iv import market_iv, model_iv
from .least_squares import LSQResult, solve_box
from .merton import MERTON_BOUNDS, MertonFit, fit_merton
from .models import model_delta, model_price, slice_prices

__all__ = [
    "BS_BOUNDS", "MERTON_BOUNDS", "HESTON_BOUNDS",
    "BSFit", "MertonFit", "HestonFit", "fit_bs", "fit_merton", "fit_heston",
    "model_price", "model_delta", "slice_prices", "market_iv", "model_iv",
    "LSQResult", "solve_box",
]
