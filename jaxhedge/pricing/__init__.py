"""Pricing references (METHODS §3): Black-Scholes/Black-76 with greeks, implied vol,
Merton jump-diffusion and Heston. Pure jnp: jittable, vmappable, dtype follows the inputs."""
from .black_scholes import (
    bs_delta,
    bs_gamma,
    bs_price,
    bs_theta,
    bs_vega,
    black76_delta,
    black76_price,
    black76_vega,
    d1_d2,
)
from .heston import heston_cf, heston_price, heston_price_black76
from .implied_vol import ImpliedVol, implied_vol_black76, implied_vol_bs
from .merton import merton_price, merton_price_black76

__all__ = [
    "d1_d2", "bs_price", "bs_delta", "bs_gamma", "bs_vega", "bs_theta",
    "black76_price", "black76_delta", "black76_vega",
    "ImpliedVol", "implied_vol_black76", "implied_vol_bs",
    "merton_price_black76", "merton_price",
    "heston_cf", "heston_price_black76", "heston_price",
]
